"""`annotate` benchmark: words per second and peak memory, one machine and Ray.

Usage: python benchmarks/bench_annotate.py MODEL WIKISER_DEV_TXT [--repeat 10]
           [--workdir DIR] [--limit N] [--growth-words N]

MODEL is a trained pipeline (the CPU one `bench_ner.py` trains:
`.bench/ner/training/ntk_k1/model-best`). WikiSER's dev file is detokenized by the
converter (one sentence per line, the text `annotate --input-format bio` sees) and
repeated `--repeat` times. Then, each in its own process and one after the other in
this one run, every process pinned to one BLAS/OpenMP thread:
  - `annotate` with 1 process on 1x and on the repeated text (the memory ratio),
  - 2 processes (`--n-process 2`), Ray with 1 actor and with 2 actors
    (`--engine ray --n-workers N`) on the repeated text,
  - Ray's start-up apart: `ray.init(num_cpus=2)` alone, and an `annotate --engine ray`
    of two documents, one per batch (start-up, the actors loading the model),
  - documents of 100, 1,000 and 10,000 tokens (sentences joined, `--growth-words`
    words of each) with 1 process.
Words per second leave out start-up: each figure is the run's `report.json` words
over the run's wall time less that of a two-document run (one document a batch, so
that every worker starts) of the same engine and worker count. Peak memory is each
process's VmHWM, sampled from /proc while it runs: the driver's, and the largest
worker's (the pool's processes, Ray's actors).
`--limit N` keeps the first N sentences (a smoke run takes seconds).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from _common import ONE_THREAD

PY = sys.executable


def _vm_hwm_kb(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def run(cmd: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run a command, sampling the peak memory of it, its children and Ray's actors.

    RETURNS (Dict[str, Any]): Wall seconds, the driver's and the largest worker's peak MB.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **ONE_THREAD, **(env or {})},
    )
    peaks: Dict[int, int] = {}
    while proc.poll() is None:
        pids = set(_descendants(proc.pid))
        pids.update(
            p
            for p in map(int, filter(str.isdigit, os.listdir("/proc")))
            if "ray::MapWorker" in _cmdline(p)
        )
        for pid in pids:
            kb = _vm_hwm_kb(pid)
            if kb is not None:
                peaks[pid] = max(peaks.get(pid, 0), kb)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    driver = peaks.pop(proc.pid, 0)
    return {
        "wall_s": wall,
        "driver_peak_mb": driver / 1024,
        "worker_peak_mb": max(peaks.values(), default=0) / 1024,
    }


def prepare(dev: Path, work: Path, repeat: int, limit: int, growth_words: int) -> None:
    """Write the detokenized texts (run in a child, so this parent's memory stays small)."""
    from spacy_ntk_ner.annotate.inputs import InputOptions, iter_documents, list_inputs

    files = list_inputs([dev], InputOptions(input_format="bio"))
    texts = [d.text for d in iter_documents(files, InputOptions(input_format="bio"))]
    if limit:
        texts = texts[:limit]
    body = "".join(t + "\n" for t in texts)
    (work / "x1.txt").write_text(body, "utf8")
    (work / f"x{repeat}.txt").write_text(body * repeat, "utf8")
    # Two documents, run one per batch: every worker of a two-worker run starts.
    (work / "startup.txt").write_text(texts[0] + "\n" + texts[1] + "\n", "utf8")
    words = [t.split() for t in texts]
    for length in (100, 1000, 10000):
        docs, cur = [], []
        total = 0
        i = 0
        while total < growth_words:
            cur.extend(words[i % len(words)])
            i += 1
            if len(cur) >= length:
                docs.append(" ".join(cur[:length]))
                total += length
                cur = []
        (work / f"len{length}.txt").write_text("".join(d + "\n" for d in docs), "utf8")


def annotate(model: str, inp: Path, out: Path, *extra: str) -> Dict[str, Any]:
    cmd = [
        PY,
        "-m",
        "spacy_ntk_ner",
        "annotate",
        model,
        str(inp),
        str(out),
        "--quiet",
        "--overwrite",
        *extra,
    ]
    res = run(cmd)
    res["words"] = json.loads((out / "report.json").read_text())["words"]
    return res


def ray_init_seconds() -> float:
    code = (
        "import time, ray; t = time.perf_counter(); ray.init(num_cpus=2, include_dashboard=False); "
        "print(time.perf_counter() - t); ray.shutdown()"
    )
    res = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, env={**os.environ, **ONE_THREAD}
    )
    if res.returncode != 0:
        raise SystemExit(f"ray.init failed:\n{res.stderr[-3000:]}")
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model")
    ap.add_argument("dev", type=Path)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=Path(".bench/annotate"))
    ap.add_argument("--limit", type=int, default=0, help="keep the first N sentences")
    ap.add_argument("--growth-words", type=int, default=300_000)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        prepare(args.dev, work, args.repeat, args.limit, args.growth_words)
        return
    sh = [
        PY,
        __file__,
        args.model,
        str(args.dev),
        "--repeat",
        str(args.repeat),
        "--workdir",
        str(work),
    ]
    sh += ["--limit", str(args.limit), "--growth-words", str(args.growth_words), "--prepare"]
    subprocess.run(sh, check=True)
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    big = work / f"x{args.repeat}.txt"
    runs = {
        "1 process": ("local", []),
        "2 processes": ("local", ["--n-process", "2"]),
        "Ray, 1 actor": ("ray", ["--engine", "ray", "--n-workers", "1", "--ray-num-cpus", "2"]),
        "Ray, 2 actors": ("ray", ["--engine", "ray", "--n-workers", "2", "--ray-num-cpus", "2"]),
    }
    results: Dict[str, Any] = {"model": model, "repeat": args.repeat, "runs": {}}
    results["ray_init_s"] = ray_init_seconds()
    for name, (_, extra) in runs.items():
        startup = annotate(
            model, work / "startup.txt", work / "out-one", *extra, "--batch-size", "1"
        )
        res = annotate(model, big, work / "out", *extra)
        res["startup_s"] = startup["wall_s"]
        res["words_per_s"] = res["words"] / max(res["wall_s"] - startup["wall_s"], 1e-9)
        results["runs"][name] = res
        print(
            f"{name}: {res['words_per_s']:,.0f} words/s, start-up {startup['wall_s']:.1f} s, "
            f"driver {res['driver_peak_mb']:.0f} MB, worker {res['worker_peak_mb']:.0f} MB",
            flush=True,
        )
    one = results["runs"]["1 process"]
    x1 = annotate(model, work / "x1.txt", work / "out")
    results["memory_ratio_10x"] = one["driver_peak_mb"] / x1["driver_peak_mb"]
    results["x1"] = x1
    base = results["runs"]["1 process"]["startup_s"]
    results["growth"] = {}
    for length in (100, 1000, 10000):
        res = annotate(model, work / f"len{length}.txt", work / "out")
        res["words_per_s"] = res["words"] / max(res["wall_s"] - base, 1e-9)
        results["growth"][length] = res
        print(f"{length}-token documents: {res['words_per_s']:,.0f} words/s", flush=True)
    speed = {k: v["words_per_s"] for k, v in results["runs"].items()}
    results["ratios"] = {
        "2 processes / 1": speed["2 processes"] / speed["1 process"],
        "Ray 1 actor / 1 process": speed["Ray, 1 actor"] / speed["1 process"],
        "Ray 2 actors / 2 processes": speed["Ray, 2 actors"] / speed["2 processes"],
        "1000 / 100 tokens": results["growth"][1000]["words_per_s"]
        / results["growth"][100]["words_per_s"],
        "10000 / 100 tokens": results["growth"][10000]["words_per_s"]
        / results["growth"][100]["words_per_s"],
    }
    print(
        f"ray.init(num_cpus=2): {results['ray_init_s']:.1f} s; peak memory 10x / 1x: "
        f"{results['memory_ratio_10x']:.2f}"
    )
    print(json.dumps(results["ratios"], indent=2))
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
