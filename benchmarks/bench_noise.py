"""Noise robustness, measured: plain training against self-regularization (k = 2 with
the agreement loss) and partial-label training (`o_unknown_weight`), on WikiSER with
controlled label noise in the training part only.

Usage: python benchmarks/bench_noise.py WIKISER_DEV_TXT --workdir DIR
           [--steps 500] [--seeds 3] [--jobs 2] [--rate 0.3]

1. Splits WikiSER's dev file with the converter (seed 0, by document, stable):
   train 80% / select 10% / report 10%.
2. Corrupts the train part only, with one fixed seed (`CORRUPTION_SEED`): each gold
   entity with probability `--rate` is (a) "missed": turned to O; (b) "type": given
   another label, uniformly; (c) "boundary": its start or its end moved by one token
   (a move that would empty it, leave the doc or touch a neighbour is not made: the
   counts made are reported). Plus the clean train part.
3. For each of the 4 train sets, trains configs/cpu.cfg for `--steps` steps of 1,000
   words (`spacy train`, select part as its dev set, one BLAS thread per job, `--jobs`
   jobs side by side):
   - plain: k = 1;
   - selfreg: k = 2, agreement weight chosen on the select part among `ALPHAS` (seed 0,
     warm-up 10% of the steps);
   - partial: k = 1, `o_unknown_weight` chosen on the select part among `WEIGHTS`;
   each with the training seeds 0..`--seeds`-1 (the chosen value's seed-0 run is reused).
4. Scores every best model on the report part (`python -m spacy_ntk_ner evaluate`).
Writes DIR/results.json (every run, then a summary per set and mode: mean and range of
F over the seeds, mean training seconds) and prints the summary as a markdown table.
A rerun reuses the runs whose results are in DIR/runs/.
"""

import argparse
import json
import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from _common import PY, REPO, score, sh, split_corpus

CORRUPTION_SEED = 1234
ALPHAS = [1.0, 10.0]
WEIGHTS = [0.1, 0.5]
NOISES = ["clean", "missed", "type", "boundary"]
MODES = ["plain", "selfreg", "partial"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def split(dev: Path, corpus: Path, log: Path) -> Dict[str, Any]:
    """Split WikiSER's dev file into train / select / report (converter, seed 0), once."""
    if not (corpus / "stats.json").exists():
        return split_corpus(dev, corpus, log, "train=0.8,select=0.1,report=0.1")
    return json.loads((corpus / "stats.json").read_text())


def _shift(
    start: int, end: int, low: int, high: int, rng: random.Random
) -> Optional[Tuple[int, int]]:
    """Move the start or the end of [start, end) by one token, within [low, high)."""
    moves = [(start - 1, end), (start + 1, end), (start, end - 1), (start, end + 1)]
    ok = [(s, e) for s, e in moves if low <= s < e <= high]
    return rng.choice(ok) if ok else None


def corrupt_doc(doc: Any, kind: str, rate: float, labels: List[str], rng: random.Random) -> int:
    """Corrupt the entities of one doc in place.

    RETURNS (int): The entities changed.
    """
    from spacy.tokens import Span

    ents = list(doc.ents)
    out: List[Span] = []
    changed = 0
    for i, ent in enumerate(ents):
        if rng.random() >= rate:
            out.append(ent)
            continue
        if kind == "missed":
            changed += 1
        elif kind == "type":
            label = rng.choice([x for x in labels if x != ent.label_])
            out.append(Span(doc, ent.start, ent.end, label=label))
            changed += 1
        else:
            # Neighbours keep a token of O between them, so boundaries stay readable.
            low = out[-1].end + 1 if out else 0
            high = ents[i + 1].start - 1 if i + 1 < len(ents) else len(doc)
            moved = _shift(ent.start, ent.end, low, high, rng)
            if moved is None:
                out.append(ent)
            else:
                out.append(Span(doc, moved[0], moved[1], label=ent.label_))
                changed += 1
    doc.set_ents(out, default="outside")
    return changed


def make_train_sets(corpus: Path, data: Path, rate: float) -> Dict[str, Any]:
    """Write the clean and the three corrupted train sets as DocBin files.

    RETURNS (Dict[str, Any]): Per set, the entities and how many were changed.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    stats_path = data / "corruption.json"
    if stats_path.exists():
        return json.loads(stats_path.read_text())
    stats: Dict[str, Any] = {}
    for kind in NOISES:
        vocab = Vocab()
        docs = [
            d
            for f in sorted((corpus / "train").glob("*.spacy"))
            for d in DocBin().from_disk(f).get_docs(vocab)
        ]
        labels = sorted({e.label_ for d in docs for e in d.ents})
        rng = random.Random(CORRUPTION_SEED)
        n_ents = sum(len(d.ents) for d in docs)
        changed = 0
        if kind != "clean":
            changed = sum(corrupt_doc(d, kind, rate, labels, rng) for d in docs)
        out = data / kind / "train"
        out.mkdir(parents=True, exist_ok=True)
        DocBin(docs=docs, store_user_data=False).to_disk(out / "train.spacy")
        stats[kind] = {"docs": len(docs), "entities": n_ents, "changed": changed}
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _settings(mode: str, value: Optional[float], steps: int) -> List[Tuple[str, Any]]:
    """The config settings of a mode: self-regularization warms up over 10% of the steps."""
    if mode == "selfreg":
        return [
            ("components.ntk_ner.n_passes", 2),
            ("components.ntk_ner.agreement_weight", value),
            ("components.ntk_ner.agreement_warmup_steps", max(1, steps // 10)),
        ]
    if mode == "partial":
        return [("components.ntk_ner.o_unknown_weight", value)]
    return []


class Runner:
    """Trains and scores one run, or reads its result from an earlier run."""

    def __init__(self, work: Path, corpus: Path, steps: int) -> None:
        self.work = work
        self.corpus = corpus
        self.steps = steps

    def overrides(self, mode: str, value: Optional[float]) -> List[str]:
        return [x for key, v in _settings(mode, value, self.steps) for x in (f"--{key}", str(v))]

    def __call__(self, noise: str, mode: str, value: Optional[float], seed: int) -> Dict[str, Any]:
        name = f"{noise}-{mode}-{value}-s{seed}"
        result_path = self.work / "runs" / f"{name}.json"
        if result_path.exists():
            return json.loads(result_path.read_text())
        out = self.work / "training" / name
        log = self.work / "logs" / f"{name}.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [PY, "-m", "spacy", "train", str(REPO / "configs" / "cpu.cfg"), "--output", str(out)]
        cmd += ["--paths.train", str(self.work / "data" / noise / "train")]
        cmd += ["--paths.dev", str(self.corpus / "select")]
        cmd += ["--system.seed", str(seed), "--training.max_steps", str(self.steps)]
        cmd += ["--training.eval_frequency", str(max(1, self.steps // 5))]
        cmd += ["--training.batcher.size.start", "1000", "--training.batcher.size.stop", "1000"]
        cmd += self.overrides(mode, value)
        began = time.perf_counter()
        sh(cmd, log)
        seconds = time.perf_counter() - began
        meta = json.loads((out / "model-best" / "meta.json").read_text())
        found = score(out / "model-best", self.corpus / "report", out / "report.json", log)
        result = {
            "noise": noise,
            "mode": mode,
            "value": value,
            "seed": seed,
            "train_seconds": round(seconds, 1),
            "select_f": meta["performance"]["ents_f"],
            **found,
        }
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result, indent=2) + "\n")
        return result


def run_all(runner: Runner, seeds: int, jobs: int) -> List[Dict[str, Any]]:
    """Seed 0 of every candidate first, then the other seeds of each mode's choice.

    RETURNS (List[Dict[str, Any]]): Every run's result.
    """
    candidates: Dict[str, List[Optional[float]]] = {
        "plain": [None],
        "selfreg": list(ALPHAS),
        "partial": list(WEIGHTS),
    }
    first = [(n, m, v, 0) for n in NOISES for m in MODES for v in candidates[m]]
    # The two-pass runs take longest: start them first so the two jobs end together.
    first.sort(key=lambda job: job[1] != "selfreg")
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda job: runner(*job), first))
        chosen = {
            (r["noise"], r["mode"]): r["value"]
            for r in sorted(results, key=lambda r: r["select_f"])
        }
        rest = [(n, m, chosen[(n, m)], s) for n in NOISES for m in MODES for s in range(1, seeds)]
        rest.sort(key=lambda job: job[1] != "selfreg")
        results += list(pool.map(lambda job: runner(*job), rest))
    return [r for r in results if r["value"] == chosen[(r["noise"], r["mode"])]] + [
        dict(r, candidate_only=True)
        for r in results
        if r["value"] != chosen[(r["noise"], r["mode"])]
    ]


def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Mean and range of report F over the seeds, mean training time, per set and mode."""
    summary: Dict[str, Dict[str, Any]] = {}
    for noise in NOISES:
        summary[noise] = {}
        for mode in MODES:
            mine = [r for r in runs if (r["noise"], r["mode"]) == (noise, mode)]
            mine = [r for r in mine if not r.get("candidate_only")]
            f = [100 * r["ents_f"] for r in mine]
            summary[noise][mode] = {
                "value": mine[0]["value"],
                "f_mean": round(statistics.mean(f), 2),
                "f_min": round(min(f), 2),
                "f_max": round(max(f), 2),
                "f_range": round(max(f) - min(f), 2),
                "ece_mean": round(statistics.mean(r["ece"] for r in mine), 3),
                "train_seconds_mean": round(statistics.mean(r["train_seconds"] for r in mine), 1),
                "seeds": len(f),
            }
        plain = summary[noise]["plain"]
        for mode in ("selfreg", "partial"):
            mine = summary[noise][mode]
            mine["gain"] = round(mine["f_mean"] - plain["f_mean"], 2)
            # A gain counts only if it is larger than the seed spread of both modes.
            mine["gain_beats_spread"] = mine["gain"] > max(mine["f_range"], plain["f_range"])
    return summary


def table(summary: Dict[str, Dict[str, Any]]) -> str:
    lines = [
        "| train set | mode | setting | F mean | F min–max | gain | > spread | ECE | train s |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for noise, modes in summary.items():
        for mode, s in modes.items():
            gain = "" if mode == "plain" else f"{s['gain']:+.2f}"
            beats = "" if mode == "plain" else ("yes" if s["gain_beats_spread"] else "no")
            lines.append(
                f"| {noise} | {mode} | {s['value']} | {s['f_mean']:.2f} | "
                f"{s['f_min']:.2f}–{s['f_max']:.2f} | {gain} | {beats} | "
                f"{s['ece_mean']:.3f} | {s['train_seconds_mean']:.0f} |"
            )
    return "\n".join(lines)


def time_modes(
    train: Path, chosen: Dict[str, Optional[float]], steps: int, rounds: int
) -> Dict[str, Any]:
    """Training words per second of each mode, in this process, the modes taking turns
    so that a change in the machine's load falls on all of them: `steps` updates of
    1,000 words from a fresh configs/cpu.cfg pipeline per mode and round (no
    evaluation, no saving).

    RETURNS (Dict[str, Any]): Per mode, the words/s of each round and the ratio of
        their mean to plain training's.
    """
    import spacy
    from spacy.training import Corpus
    from spacy.training.batchers import minibatch_by_words
    from spacy.util import load_config
    from thinc.api import fix_random_seed

    found: Dict[str, List[float]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            overrides = dict(_settings(mode, chosen[mode], steps))
            config = load_config(REPO / "configs" / "cpu.cfg", overrides=overrides)
            fix_random_seed(0)
            nlp = spacy.util.load_model_from_config(config, auto_fill=True)
            examples = list(Corpus(train)(nlp))
            sgd = nlp.initialize(lambda: examples)
            batches = minibatch_by_words(examples * 4, size=1000, discard_oversize=False)
            words = 0
            began = time.perf_counter()
            for batch in islice(batches, steps):
                nlp.update(batch, drop=0.1, sgd=sgd)
                words += sum(len(eg.predicted) for eg in batch)
            found[mode].append(words / (time.perf_counter() - began))
    plain = statistics.mean(found["plain"])
    return {
        mode: {
            "words_per_s": [round(x) for x in wps],
            "ratio_to_plain": round(statistics.mean(wps) / plain, 3),
        }
        for mode, wps in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dev", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument(
        "--timing-steps",
        type=int,
        default=0,
        help="also time each mode's training for this many steps, in turns (0: no)",
    )
    parser.add_argument("--timing-rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.update(ONE_THREAD)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    began = time.perf_counter()
    stats = split(args.dev, corpus, work / "log.txt")
    corruption = make_train_sets(corpus, work / "data", args.rate)
    runs = run_all(Runner(work, corpus, args.steps), args.seeds, args.jobs)
    summary = summarize(runs)
    results = {
        "steps": args.steps,
        "words_per_step": 1000,
        "seeds": args.seeds,
        "rate": args.rate,
        "alphas": ALPHAS,
        "weights": WEIGHTS,
        "splits": {k: (v["docs"], v["tokens"]) for k, v in stats["splits"].items()},
        "corruption": corruption,
        "wall_seconds": round(time.perf_counter() - began),
        "summary": summary,
        "runs": runs,
    }
    if args.timing_steps:
        chosen = {mode: summary["clean"][mode]["value"] for mode in MODES}
        results["timing"] = time_modes(
            work / "data" / "clean" / "train", chosen, args.timing_steps, args.timing_rounds
        )
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(summary))
    if "timing" in results:
        print(json.dumps(results["timing"], indent=2))


if __name__ == "__main__":
    main()
