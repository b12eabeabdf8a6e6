"""scripts/gpu_check.sh and scripts/gpu_bench.py, run on the CPU: the check that gets one
call on a GPU must train for real, keep every stage's log and its JSON, and print its
table whatever failed."""

import json
import os
import random
import subprocess
import sys
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List

import numpy
import pytest
from util import REPO, load_script

SCRIPT = REPO / "scripts" / "gpu_check.sh"
STAGE_LOGS = ["setup.log", "gpu_tests.log", "train_n1.log", "train_n2.log", "infer.log"]
TOOLS = ["pip", "conda", "spaCy", "PyTorch", "Ray", "Docker"]
SYSTEMS = ["Linux", "Windows", "macOS", "Android"]
WORDS = "the a runs on uses with and for is of new old fast tool".split()


def fixture_corpus(path: Path, n: int = 120) -> Path:
    """A small WikiSER-style corpus (`<s>`, TOKEN<TAB>TAG lines, `</s>`) with two labels."""
    rng = random.Random(0)
    lines: List[str] = []
    for _ in range(n):
        rows = [(w, "O") for w in rng.sample(WORDS, 3)]
        rows.append((rng.choice(TOOLS), "B-Application"))
        rows += [("runs", "O"), ("on", "O")]
        rows += [("Microsoft", "B-Operating_System")] if rng.random() < 0.3 else []
        rows.append(
            (
                rng.choice(SYSTEMS),
                "I-Operating_System" if rows[-1][0] == "Microsoft" else "B-Operating_System",
            )
        )
        rows.append((".", "O"))
        lines += ["<s>", *(f"{w}\t{t}" for w, t in rows), "</s>"]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def run_check(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "OUT", "RESULT", "FAIL_STAGE")}
    env.update(PYTHON=sys.executable, SKIP_INSTALL="1", **settings)
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_gpu_check_trains_and_keeps_its_table_when_a_stage_fails(tmp_path: Path) -> None:
    """GPU_ID=-1, a tiny encoder, the loss scaler emulated on the CPU from a scale that
    overflows, and the n_passes = 2 training made to fail: n_passes = 1 trains (a CRF
    score moves, the held-out loss falls), overflows are counted, inference is timed at
    each batch size, every stage leaves its log, and the table still prints."""
    out = tmp_path / "out"
    res = run_check(
        tmp_path,
        GPU_ID="-1",
        DATA=str(fixture_corpus(tmp_path / "dev.txt")),
        ENCODER_SIZE="tiny",
        STEPS="9",
        N_PASSES="1 2",
        BATCH_SIZES="4 8 16",
        INFER_WORDS="400",
        CPU_GRAD_SCALER="1",
        LOSS_SCALE="1e38",
        FAIL_STAGE="train_n2",
        OUT=str(out),
    )
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    for log in STAGE_LOGS:
        assert (out / log).read_text().strip(), log
    # What a device call brings back: at most 8 files, gpu_check.log (the tee) among them.
    assert len(list(out.iterdir())) <= 7, sorted(p.name for p in out.iterdir())

    assert data["versions"]["spacy_ntk_ner_from"] == str(REPO / "spacy_ntk_ner")
    assert data["device"] == "cpu" and data["gpu_tests"] == "skipped: GPU_ID=-1"
    train = data["train_n1"]
    assert train["steps"] == 9 and train["n_passes"] == 1
    assert train["train_words_per_s"] > 0 and 0 < train["crf_share"] < 1
    assert 0 <= train["gold_tags_share"] < 1
    assert train["crf_params_max_change"] > 0
    held = train["heldout_loss_per_word"]
    assert held["after"] < held["before"]
    assert len(train["losses"]) == 9 and train["loss_first"] == train["losses"][0]
    assert train["loss_last"] == train["losses"][-1]
    scale = train["loss_scale"]
    assert scale["enabled"] and scale["overflow_skipped_steps"] >= 1
    assert scale["final"] < scale["init"] == 1e38
    assert train["batcher"]["discard_oversize"] is True
    assert set(data["infer_words_per_s"]) == {"4", "8", "16"}
    assert all(v > 0 for v in data["infer_words_per_s"].values())

    failed = data["train_n2"]
    assert failed["status"] == "FAILED" and failed["log"] == "train_n2.log"
    assert "FAIL_STAGE=train_n2" in failed["log_tail"]
    assert data["failed_stages"] == ["train_n2"]
    lines = res.stdout.splitlines()
    assert any(line.startswith("| 1 | ") and "FAILED" not in line for line in lines)
    assert any(line.startswith("| 2 | FAILED") for line in lines)
    assert "inference, batch_size 16:" in res.stdout
    assert lines[-1].startswith("failed stages: train_n2")


def test_gpu_check_stops_without_data_on_a_gpu(tmp_path: Path) -> None:
    """GPU_ID >= 0 with no prepared data stops before installing anything, and says why."""
    out = tmp_path / "out"
    res = run_check(tmp_path, GPU_ID="0", GPU_DATA_DIR=str(tmp_path / "none"), OUT=str(out))
    assert res.returncode == 2
    assert "gpu_prepare.sh" in res.stderr
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["data"].startswith("FAILED: no ")
    assert "versions" not in data


def table_of(tmp_path: Path, data: Dict[str, Any], capsys: pytest.CaptureFixture) -> str:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(data))
    load_script("gpu_bench").table(Namespace(result=path))
    return str(capsys.readouterr().out)


def test_table_prints_failed_and_missing_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    failed = {"status": "FAILED", "exit": 124, "reason": "timed out after 110s", "log": "x"}
    out = table_of(
        tmp_path,
        {
            "device": "FAILED: no GPU through cupy and torch",
            "train_n1": "FAILED",
            "train_n2": failed,
            "infer_words_per_s": {"32": 100.0},
            "infer": failed,
            "gpu_tests": {"result": "1 failed, 2 passed", "exit": 1, "log": "..."},
            "failed_stages": ["train_n1", "train_n2", "infer"],
        },
        capsys,
    )
    assert "| 1 | FAILED |" in out
    assert "| 2 | FAILED (timed out after 110s) |" in out
    assert "inference, batch_size 32: 100.0 words/s" in out
    assert "failed: infer: FAILED (timed out after 110s)" in out
    assert "gpu tests: 1 failed, 2 passed (exit 1)" in out
    # A run cut off before anything was written, and one with half a training record.
    assert "inference: no figures" in table_of(tmp_path, {}, capsys)
    assert "| 1 | 5.0 | - |" in table_of(
        tmp_path, {"train_n1": {"n_passes": 1, "train_words_per_s": 5.0}}, capsys
    )


def test_the_cupy_dlpack_deprecation_alone_is_not_an_error() -> None:
    """pyproject.toml ignores the warning cupy >= 13.4 gives at each `toDlpack` (thinc
    8.3's xp2torch calls it at every transformer call on a GPU), and no other."""
    dlpack = (
        "This function is deprecated and will be removed in a future release. "
        "Use the cupy.from_dlpack() array constructor instead."
    )
    warnings.warn(dlpack, numpy.exceptions.VisibleDeprecationWarning, stacklevel=1)
    with pytest.raises(numpy.exceptions.VisibleDeprecationWarning):
        warnings.warn("other", numpy.exceptions.VisibleDeprecationWarning, stacklevel=1)
    with pytest.raises(DeprecationWarning):
        warnings.warn(dlpack, DeprecationWarning, stacklevel=1)
