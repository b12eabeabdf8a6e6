"""Cost growth with document length in `ntk_ner`, and what decoding long documents in
windows changes.

usage: bench_longdocs.py DEV.txt [--workdir DIR] [--steps N] [--words N] [--rounds N]
           [--code NAME=PATH ...] [--stages prepare,speed,approx,profile]

- prepare: WikiSER's dev file split 90/10 by the converter, `configs/cpu.cfg` trained on
  the 90% for `--steps` steps (a small, real pipeline: speed does not depend on how well
  it is trained), and texts of documents of 100, 1,000 and 10,000 tokens (the dev
  file's detokenized sentences joined with spaces, as `bench_annotate.py` makes them;
  `--words` words of each).
- speed: words/s of `nlp.pipe` (tokenizer and `ntk_ner`, batch size 128) over each
  length, in a fresh process per case, pinned to one BLAS/OpenMP thread, after a
  warm-up over the first document. The cases take turns (`--rounds` rounds of: each
  code, each length), so a change in the machine's load falls on all of them. Each
  `--code NAME=PATH` puts PATH first on `PYTHONPATH`: a folder holding another copy of
  the `spacy_ntk_ner` package (e.g. the code before this change, from `git archive`).
  `this` is the repository itself.
- approx: the windowed decoding against exact decoding (windows switched off) on the
  10% split's sentences joined into 1,000- and 10,000-token documents: entities that
  differ, and the largest difference of the scores of the entities both found.
- profile: cProfile of `nlp.pipe` over each length with this code, top functions.

Figures: `benchmarks/README.md`.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PY, REPO, read_docs, split_corpus, train  # noqa: E402

LENGTHS = (100, 1000, 10000)
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def prepare(dev: Path, work: Path, steps: int, words: int) -> None:
    """Split the dev file, train the small pipeline, write the texts of each length."""
    log = work / "log.txt"
    corpus = work / "corpus"
    if not (corpus / "stats.json").exists():
        split_corpus(dev, corpus, log)
    if not (work / "model" / "meta.json").exists():
        overrides = [
            "--training.max_steps",
            str(steps),
            "--training.eval_frequency",
            str(steps),
            "--nlp.batch_size",
            "128",
        ]
        train("configs/cpu.cfg", work / "training", corpus, overrides, log)
        (work / "training" / "model-last").rename(work / "model")
    sentences = [[t.text for t in d] for d in read_docs(corpus / "train")]
    for length in LENGTHS:
        docs = _join(sentences, length, words)
        (work / f"len{length}.txt").write_text("".join(d + "\n" for d in docs), "utf8")


def _join(sentences: List[List[str]], length: int, words: int) -> List[str]:
    """Documents of `length` words made of consecutive sentences, `words` words in all."""
    docs: List[str] = []
    cur: List[str] = []
    i = 0
    while len(docs) * length < words:
        cur.extend(sentences[i % len(sentences)])
        i += 1
        if len(cur) >= length:
            docs.append(" ".join(cur[:length]))
            cur = []
    return docs


def child(model: str, text_file: str) -> None:
    """Measure words/s of `nlp.pipe` over the texts; print one JSON line."""
    import spacy

    nlp = spacy.load(model)
    texts = Path(text_file).read_text("utf8").splitlines()
    list(nlp.pipe(texts[:1]))
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=128))
    wall = time.perf_counter() - start
    n_words = sum(len(doc) for doc in docs)
    # The CRF alone (what windows change): decoding the encoder's output, batch by batch.
    pipe: Any = nlp.get_pipe("ntk_ner")
    batches = [docs[i : i + 128] for i in range(0, len(docs), 128)]
    emissions = [pipe.model.predict(batch) for batch in batches]
    start = time.perf_counter()
    for scores in emissions:
        pipe._decode(scores)
    decode = time.perf_counter() - start
    import spacy_ntk_ner.ner.component as ner

    out = {"words": n_words, "wall_s": wall, "decode_s": decode, "module": ner.__file__}
    print(json.dumps(out))


def speed(work: Path, codes: List[Tuple[str, str]], rounds: int) -> Dict[str, Any]:
    """Words/s per code and length, the cases taking turns."""
    found: Dict[str, Dict[int, List[float]]] = {n: {k: [] for k in LENGTHS} for n, _ in codes}
    crf_only: Dict[str, Dict[int, List[float]]] = {n: {k: [] for k in LENGTHS} for n, _ in codes}
    for _ in range(rounds):
        for name, path in codes:
            env = {**os.environ, **ONE_THREAD, "PYTHONPATH": path}
            for length in LENGTHS:
                cmd = [PY, __file__, "_child", str(work / "model"), str(work / f"len{length}.txt")]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
                out = json.loads(res.stdout.strip().splitlines()[-1])
                found[name][length].append(out["words"] / out["wall_s"])
                crf_only[name][length].append(out["words"] / out["decode_s"])
                print(
                    name,
                    length,
                    round(found[name][length][-1]),
                    round(crf_only[name][length][-1]),
                    out["module"],
                    flush=True,
                )
    summary: Dict[str, Any] = {}
    for name, by_len in found.items():
        best = {k: max(v) for k, v in by_len.items()}
        summary[name] = {
            "words_per_s": by_len,
            "decode_words_per_s": crf_only[name],
            "best": best,
            "1000 / 100": best[1000] / best[100],
            "10000 / 100": best[10000] / best[100],
        }
    return summary


def approx(work: Path) -> Dict[str, Any]:
    """Windowed against exact decoding on long documents of the held-out split."""
    import spacy

    nlp = spacy.load(work / "model")
    pipe: Any = nlp.get_pipe("ntk_ner")
    sentences = [[t.text for t in d] for d in read_docs(work / "corpus" / "dev")]
    result: Dict[str, Any] = {}
    for length in (1000, 10000):
        docs = [nlp.make_doc(t) for t in _join(sentences, length, 100_000)]
        emissions = pipe.model.predict(docs)
        windowed = pipe._decode(emissions)
        exact = _exact(pipe, emissions)
        # float64 exact decoding: the reference both float32 results are held against.
        params = {n: pipe.model.get_param(n) for n in ("transitions", "start", "end")}
        for name, value in params.items():
            pipe.model.set_param(name, value.astype("float64"))
        try:
            emissions64 = [e.astype("float64") for e in emissions]
            reference = _exact(pipe, emissions64)
            windowed64 = pipe._decode(emissions64)
        finally:
            for name, value in params.items():
                pipe.model.set_param(name, value)
        result[str(length)] = {
            "windowed vs exact (float64: the windows' own error)": _compare(windowed64, reference),
            "windowed vs exact (float32)": _compare(windowed, exact),
            "windowed (float32) vs exact float64": _compare(windowed, reference),
            "exact (float32) vs exact float64": _compare(exact, reference),
        }
    return result


def _exact(pipe: Any, emissions: List[Any]) -> List[Any]:
    import spacy_ntk_ner.ner._crf.windows as windows

    saved = windows.WINDOW
    windows.WINDOW = 10**9
    try:
        return pipe._decode(emissions)
    finally:
        windows.WINDOW = saved


def _compare(windowed: List[Any], exact: List[Any]) -> Dict[str, Any]:
    n_ents = n_diff = 0
    max_diff = 0.0
    for w_ents, e_ents in zip(windowed, exact):
        w = {(s, e, lab): p for s, e, lab, p in w_ents}
        x = {(s, e, lab): p for s, e, lab, p in e_ents}
        n_ents += len(x)
        n_diff += len(set(w) ^ set(x))
        for key in set(w) & set(x):
            max_diff = max(max_diff, abs(w[key] - x[key]))
    return {
        "docs": len(exact),
        "entities_exact": n_ents,
        "entities_differing": n_diff,
        "max_abs_score_diff": max_diff,
    }


def profile(work: Path) -> Dict[str, str]:
    """cProfile of `nlp.pipe` over each length: the top functions by total time."""
    import spacy

    nlp = spacy.load(work / "model")
    out: Dict[str, str] = {}
    for length in LENGTHS:
        texts = (work / f"len{length}.txt").read_text("utf8").splitlines()
        prof = cProfile.Profile()
        prof.enable()
        list(nlp.pipe(texts, batch_size=128))
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
        out[str(length)] = buf.getvalue()
        print(f"== {length} tokens\n{out[str(length)]}", flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dev", type=Path)
    ap.add_argument("--workdir", type=Path, default=REPO / ".bench" / "longdocs")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--words", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--code", action="append", default=[], help="NAME=PATH")
    ap.add_argument("--stages", default="prepare,speed,approx")
    args = ap.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    codes = [tuple(c.split("=", 1)) for c in args.code] or [("this", str(REPO))]
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "prepare" in stages:
        prepare(args.dev.resolve(), work, args.steps, args.words)
    if "profile" in stages:
        results["profile"] = profile(work)
    if "speed" in stages:
        results["speed"] = speed(work, [(n, str(Path(p).resolve())) for n, p in codes], args.rounds)
    if "approx" in stages:
        results["approx"] = approx(work)
    results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "profile"}, indent=2))


if __name__ == "__main__":
    main()
