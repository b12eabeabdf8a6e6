"""Converter benchmark: tokens per second and peak memory, ours against `spacy convert`.

Usage: python benchmarks/bench_convert.py WIKISER_DEV_TXT [--repeat 10] [--workdir DIR]

Builds, from WikiSER's dev file, a corpus repeated to at least 3M tokens (10 copies
of 298k tokens), and the same content in the blank-line form `spacy convert -c ner`
needs (its columns are split on whitespace, so tokens with spaces get their spaces
replaced by "_" in that copy). Then it runs, each in its own process and one after
the other in this one run:
  - `python -m spacy_ntk_ner convert` on 1x and on the repeated input,
  - `python -m spacy convert -c ner` on the repeated input (blank-line copy),
and reports wall time, tokens per second (without the start-up, which is timed
separately on a one-token run) and peak resident memory (wait4's ru_maxrss). The
input files are written by a child process: Linux carries a process's peak memory
across fork and exec, so this parent stays small.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List


def run(cmd: List[str]) -> Dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024}


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dev", type=Path)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ntk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        prepare(args.dev, args.repeat, work)
        return
    run(
        [
            sys.executable,
            __file__,
            str(args.dev),
            "--repeat",
            str(args.repeat),
            "--workdir",
            str(work),
            "--prepare-only",
        ]
    )
    n_tokens = int((work / "n_tokens").read_text())
    one = work / "x1.txt"
    big = work / f"x{args.repeat}.txt"
    big_iob = work / f"x{args.repeat}.iob"
    py = sys.executable
    results: Dict[str, Dict[str, float]] = {}
    empty = work / "empty.txt"
    empty.write_text("<s>\na\tO\n</s>\n", "utf8")
    results["ours_startup"] = run(
        [py, "-m", "spacy_ntk_ner", "convert", str(empty), str(work / "o0"), "--quiet"]
    )
    results["ours_1x"] = run(
        [py, "-m", "spacy_ntk_ner", "convert", str(one), str(work / "o1"), "--quiet"]
    )
    results[f"ours_{args.repeat}x"] = run(
        [py, "-m", "spacy_ntk_ner", "convert", str(big), str(work / "o10"), "--quiet"]
    )
    (work / "s0").mkdir(exist_ok=True)
    small_iob = work / "empty.iob"
    small_iob.write_text("a\tO\n\n", "utf8")
    results["spacy_startup"] = run(
        [py, "-m", "spacy", "convert", "-c", "ner", str(small_iob), str(work / "s0")]
    )
    (work / "s1").mkdir(exist_ok=True)
    results["spacy_1x"] = run(
        [
            py,
            "-m",
            "spacy",
            "convert",
            "-c",
            "ner",
            "-n",
            "1",
            str(work / "x1.iob"),
            str(work / "s1"),
        ]
    )
    (work / "s10").mkdir(exist_ok=True)
    results[f"spacy_{args.repeat}x"] = run(
        [py, "-m", "spacy", "convert", "-c", "ner", "-n", "1", str(big_iob), str(work / "s10")]
    )
    for name, r in results.items():
        if name.endswith("startup"):
            continue
        n = n_tokens * (1 if name.endswith("_1x") else args.repeat)
        base = results["ours_startup" if name.startswith("ours") else "spacy_startup"]["wall_s"]
        r["tokens"] = n
        r["tokens_per_s"] = n / max(r["wall_s"] - base, 1e-9)
    ours = results[f"ours_{args.repeat}x"]
    theirs = results[f"spacy_{args.repeat}x"]
    summary = {
        "tokens_1x": n_tokens,
        "results": results,
        "speedup_vs_spacy_convert": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "memory_10x_over_1x": ours["peak_mb"] / results["ours_1x"]["peak_mb"],
        "memory_ours_over_spacy_10x": ours["peak_mb"] / theirs["peak_mb"],
        "memory_spacy_10x_over_1x": theirs["peak_mb"] / results["spacy_1x"]["peak_mb"],
    }
    print(json.dumps(summary, indent=2))
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
