"""What the benchmark scripts share: running commands with a log, the 90/10 split of
WikiSER's dev file, scoring, and inference speed measured with the models taking turns."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
# Every thread pool a benchmark's processes may use, pinned to one thread.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "TORCH_NUM_THREADS": "1",
}


def sh(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None) -> str:
    """Run a command (offline for Hugging Face), append its output to `log`, stop on failure.

    env (Optional[Dict[str, str]]): Variables to set for it besides this process's.
    RETURNS (str): Its standard output.
    """
    with log.open("a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        fh.write(res.stdout + res.stderr)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return res.stdout


def split_corpus(
    dev: Path, corpus: Path, log: Path, spec: str = "train=0.9,dev=0.1"
) -> Dict[str, Any]:
    """Split WikiSER's dev file by document with the converter (seed 0): by default
    90/10 into `corpus/train` and `corpus/dev`.

    spec (str): The converter's `--split`.
    RETURNS (Dict[str, Any]): The converter's report.
    """
    sh(
        [
            PY,
            "-m",
            "spacy_ntk_ner",
            "convert",
            str(dev),
            str(corpus),
            "--split",
            spec,
            "--seed",
            "0",
            "--quiet",
        ],
        log,
    )
    return json.loads((corpus / "stats.json").read_text())


def read_docs(folder: Path) -> List[Any]:
    """Every Doc of the DocBin files in `folder`, in file-name order.

    RETURNS (List[Doc]): The docs, over one fresh vocab.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    vocab = Vocab()
    return [
        d for f in sorted(folder.glob("*.spacy")) for d in DocBin().from_disk(f).get_docs(vocab)
    ]


def train(
    config: str,
    out: Optional[Path],
    corpus: Path,
    overrides: Sequence[str],
    log: Path,
    dev: Optional[Path] = None,
) -> None:
    """`spacy train` a config of this repository on `corpus/train`, with `dev` (default
    `corpus/dev`) as its dev set, into `out` (None: nothing is saved)."""
    output = [] if out is None else ["--output", str(out)]
    sh(
        [
            PY,
            "-m",
            "spacy",
            "train",
            str(REPO / config),
            *output,
            "--paths.train",
            str(corpus / "train"),
            "--paths.dev",
            str(dev or corpus / "dev"),
            *overrides,
        ],
        log,
    )


def score(model: Path, data: Path, out: Path, log: Path) -> Dict[str, Any]:
    """Entity P/R/F of a pipeline and, for ntk_ner, the calibration error of its scores.

    RETURNS (Dict[str, Any]): "ents_p", "ents_r", "ents_f", "ece".
    """
    sh([PY, "-m", "spacy_ntk_ner", "evaluate", str(model), str(data), "--output", str(out)], log)
    m = json.loads(out.read_text())
    ece = (m.get("calibration") or {}).get("ntk_ner", {}).get("ece")
    return {"ents_p": m["ents_p"], "ents_r": m["ents_r"], "ents_f": m["ents_f"], "ece": ece}


def speed_in_turns(
    models: Dict[str, Path],
    data: Path,
    log: Path,
    rounds: int = 2,
    extra: Sequence[str] = (),
    code: Optional[Dict[str, Path]] = None,
) -> Dict[str, List[float]]:
    """Inference words per second from `spacy benchmark speed`, the models taking turns
    so that a change in the machine's load falls on all of them.

    code (Optional[Dict[str, Path]]): For some models, a folder holding another
        version's `spacy_ntk_ner` package, which their runs import (`PYTHONPATH`).
    RETURNS (Dict[str, List[float]]): One mean per round for each model.
    """
    found: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            cmd = [PY, "-m", "spacy", "benchmark", "speed", str(model), str(data), *extra]
            folder = (code or {}).get(name)
            out = sh(cmd, log, {"PYTHONPATH": str(folder)} if folder else None)
            mean = re.search(r"Mean: ([0-9.]+) words/s", re.sub(r"\x1b\[[0-9;]*m", "", out))
            if mean is None:
                raise SystemExit(f"no speed in the output of spacy benchmark speed for {model}")
            found[name].append(float(mean.group(1)))
    return found
