"""Converter benchmark: tokens per second and peak memory, ours against `spacy convert`.

Usage: python benchmarks/bench_convert.py WIKISER_DEV_TXT [--repeat 10] [--rounds 2]
       [--before SITE_DIR] [--workdir DIR]

Builds, from WikiSER's dev file, a corpus repeated to at least 3M tokens (10 copies
of 298k tokens), and the same content in the blank-line form `spacy convert -c ner`
needs (its columns are split on whitespace, so tokens with spaces get their spaces
replaced by "_" in that copy). Then it runs, each in its own process, taking turns
within each round:
  - `python -m spacy_ntk_ner convert` on a one-token file, on 1x and on the repeated input,
  - the same with the package found first in SITE_DIR (`--before`: a
    `pip install --no-deps --target SITE_DIR` of an earlier version), if given,
  - `python -m spacy convert -c ner` on the same three (blank-line copies),
and reports, for each, the best wall time and CPU time (user + system) of the rounds
and the largest peak resident memory (wait4's ru_maxrss); tokens per second with the
start-up included (the wall time) and excluded (less the one-token run's wall time);
and the ratios of ours to `spacy convert` both ways, and by CPU time. One untimed
start-up run of each tool comes first, so that no timed run reads the tools' files from
a cold disk. The input files are written by
a child process: Linux carries a process's peak memory across fork and exec, so this
parent stays small.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


def run(cmd: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    start = time.perf_counter()
    # Run outside the checkout: `-m` would import the package from the current folder
    # before the installed one (or the one `--before` puts first).
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tempfile.gettempdir()
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": usage.ru_maxrss / 1024}


def prepare(dev: Path, repeat: int, work: Path) -> None:
    text = dev.read_text("utf8")
    (work / "n_tokens").write_text(str(sum(1 for ln in text.splitlines() if "\t" in ln)))
    one = work / "x1.txt"
    one.write_text(text, "utf8")
    big = work / f"x{repeat}.txt"
    big.write_text(text * repeat, "utf8")
    # spaCy's converter: blank-line sentences, and no spaces inside tokens.
    blank = []
    for ln in text.splitlines():
        if ln == "<s>":
            continue
        if ln == "</s>":
            blank.append("")
            continue
        tok, _, tag = ln.rpartition("\t")
        blank.append(f"{tok.replace(' ', '_')}\t{tag}")
    iob = "\n".join(blank) + "\n"
    (work / "x1.iob").write_text(iob, "utf8")
    (work / f"x{repeat}.iob").write_text(iob * repeat, "utf8")


def tool_runs(work: Path, repeat: int, before: Optional[Path]) -> Dict[str, Callable[[], Any]]:
    """Each timed run, by name (`TOOL_SIZE`), as a function that makes it and returns
    its wall time and peak memory."""
    py = sys.executable
    empty = work / "empty.txt"
    empty.write_text("<s>\na\tO\n</s>\n", "utf8")
    (work / "empty.iob").write_text("a\tO\n\n", "utf8")
    sizes = {"startup": "empty", "1x": "x1", f"{repeat}x": f"x{repeat}"}
    tools: Dict[str, Optional[Dict[str, str]]] = {"ours": None}
    if before is not None:
        tools["before"] = {**os.environ, "PYTHONPATH": str(before.resolve())}
    runs: Dict[str, Callable[[], Any]] = {}
    for tool, env in tools.items():
        for size, stem in sizes.items():
            out = work / f"out-{tool}-{size}"
            cmd = [py, "-m", "spacy_ntk_ner", "convert", str(work / f"{stem}.txt"), str(out)]
            runs[f"{tool}_{size}"] = partial(run, [*cmd, "--quiet", "--overwrite"], env)
    for size, stem in sizes.items():
        out = work / f"out-spacy-{size}"
        out.mkdir(exist_ok=True)
        cmd = [py, "-m", "spacy", "convert", "-c", "ner", "-n", "1"]
        runs[f"spacy_{size}"] = partial(run, [*cmd, str(work / f"{stem}.iob"), str(out)])
    return runs


def summarize(results: Dict[str, Dict[str, float]], n_tokens: int, repeat: int) -> Dict[str, Any]:
    """Tokens per second with the start-up included and excluded, and the ratios."""
    big = f"{repeat}x"
    for name, r in results.items():
        tool, size = name.split("_")
        if size == "startup":
            continue
        n = n_tokens * (1 if size == "1x" else repeat)
        r["tokens"] = n
        r["tokens_per_s_with_startup"] = n / r["wall_s"]
        r["tokens_per_s_without_startup"] = n / max(
            r["wall_s"] - results[f"{tool}_startup"]["wall_s"], 1e-9
        )
    summary: Dict[str, Any] = {"tokens_1x": n_tokens, "results": results}
    theirs = results[f"spacy_{big}"]
    for tool in ("ours", "before"):
        if f"{tool}_{big}" not in results:
            continue
        r = results[f"{tool}_{big}"]
        summary[tool] = {
            "speedup_with_startup": theirs["wall_s"] / r["wall_s"],
            # CPU seconds (user + system) with the start-up: what a busy machine
            # disturbs least; both tools run on one core.
            "speedup_cpu_with_startup": theirs["cpu_s"] / r["cpu_s"],
            "speedup_without_startup": r["tokens_per_s_without_startup"]
            / theirs["tokens_per_s_without_startup"],
            "memory_10x_over_1x": r["peak_mb"] / results[f"{tool}_1x"]["peak_mb"],
            "memory_over_spacy_10x": r["peak_mb"] / theirs["peak_mb"],
        }
    summary["memory_spacy_10x_over_1x"] = theirs["peak_mb"] / results["spacy_1x"]["peak_mb"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dev", type=Path)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ntk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    if args.prepare_only:
        prepare(args.dev, args.repeat, work)
        return
    run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            str(args.dev.resolve()),
            "--repeat",
            str(args.repeat),
            "--workdir",
            str(work),
            "--prepare-only",
        ]
    )
    n_tokens = int((work / "n_tokens").read_text())
    runs = tool_runs(work, args.repeat, args.before)
    for name, make in runs.items():
        if name.endswith("_startup"):
            make()  # warm the disk cache
    best: Dict[str, Dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, make in runs.items():
            r = make()
            if name in best:
                r = {
                    "wall_s": min(r["wall_s"], best[name]["wall_s"]),
                    "cpu_s": min(r["cpu_s"], best[name]["cpu_s"]),
                    "peak_mb": max(r["peak_mb"], best[name]["peak_mb"]),
                }
            best[name] = r
    print(json.dumps(summarize(best, n_tokens, args.repeat), indent=2))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
