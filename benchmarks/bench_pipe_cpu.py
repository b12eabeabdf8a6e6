"""Inference words per second of a pipeline in process CPU time: `nlp.pipe` over the
docs of a DocBin folder (made beforehand, as `spacy benchmark speed` does), the best
of `--reps` passes after one warm-up pass. CPU time rather than wall time, because on
a shared machine the wall clock also counts the time the process waits for a core.

Usage: python benchmarks/bench_pipe_cpu.py MODEL DOCBIN_DIR [--reps 5]
Run it with one BLAS/OpenMP thread (`OMP_NUM_THREADS=1` ...), and with `PYTHONPATH`
naming another version's package to measure that version.
"""

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.load(args.model)
    files = sorted(args.data.glob("*.spacy"))
    texts = [d.text for f in files for d in DocBin().from_disk(f).get_docs(nlp.vocab)]
    docs = [nlp.make_doc(t) for t in texts]
    words = sum(len(d) for d in docs)
    for _ in nlp.pipe([d.copy() for d in docs]):
        pass
    best = float("inf")
    for _ in range(args.reps):
        batch = [d.copy() for d in docs]
        start = time.process_time()
        for _ in nlp.pipe(batch):
            pass
        best = min(best, time.process_time() - start)
    print(f"{words / best:.0f} words/s (CPU time, best of {args.reps})")


if __name__ == "__main__":
    main()
