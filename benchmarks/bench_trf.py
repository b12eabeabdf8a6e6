"""ntk_ner against spaCy's built-in ner on the same transformer, on the CPU, on WikiSER.

Usage: python benchmarks/bench_trf.py WIKISER_DEV_TXT ENCODER_DIR --workdir DIR
       [--steps 150] [--learn-rate 0.0002] [--k 1]

ENCODER_DIR is a real pretrained encoder: `../shared/tools/get-minilm.sh DIR` lays
all-MiniLM-L6-v2 there. Splits WikiSER's dev file 90/10 with the converter (seed 0),
then trains configs/trf.cfg (ntk_ner) and configs/trf-ner.cfg (spaCy's ner) for the
same number of steps with the same overrides, one after the other: the encoder, mixed
precision off (there is no GPU), a learning-rate schedule sized to the run (10%
warm-up, then linear decay to 0; the peak rate is higher than the config's 5e-5,
which needs thousands of steps), a final evaluation only. ntk_ner's k (passes per
batch) is a flag: each pass costs a forward and backward pass of the transformer.
Reports `ents_f` on the 10% split, training words per second (steps x the mean words
of a batch / wall time of `spacy train`, start-up and the final evaluation included)
and inference words per second (`spacy benchmark speed`, the models taking turns).
Writes DIR/results.json.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List

from _common import score, speed_in_turns, split_corpus, train


def words_per_batch(train: Path) -> float:
    """Mean words in a batch of configs/trf.cfg's batcher (2,000 padded words)."""
    from spacy.tokens import DocBin
    from spacy.training.batchers import minibatch_by_padded_size
    from spacy.vocab import Vocab

    vocab = Vocab()
    docs = [d for f in sorted(train.glob("*.spacy")) for d in DocBin().from_disk(f).get_docs(vocab)]
    sizes = [
        sum(len(d) for d in batch)
        for batch in minibatch_by_padded_size(docs, size=2000, buffer=256, discard_oversize=True)
    ]
    return sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dev", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--learn-rate", type=float, default=0.0002)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--head-lr-scale", type=float, default=10.0)
    parser.add_argument(
        "--models", default="ntk_ner,spacy_ner", help="which of ntk_ner,spacy_ner to train"
    )
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    corpus = work / "corpus"
    split_corpus(args.dev, corpus, log)
    batch_words = words_per_batch(corpus / "train")
    steps = args.steps
    warmup = max(1, steps // 10)
    common = [
        "--training.max_epochs",
        "0",
        "--training.max_steps",
        str(steps),
        "--training.eval_frequency",
        "1000000",
        "--training.optimizer.learn_rate.warmup_steps",
        str(warmup),
        "--training.optimizer.learn_rate.total_steps",
        str(steps),
        "--training.optimizer.learn_rate.initial_rate",
        str(args.learn_rate),
    ]
    runs: Dict[str, List[str]] = {
        "ntk_ner": [
            "configs/trf.cfg",
            "--components.ntk_ner.model.tok2vec.name",
            str(args.encoder),
            "--components.ntk_ner.model.tok2vec.mixed_precision",
            "false",
            "--components.ntk_ner.k",
            str(args.k),
            "--components.ntk_ner.alpha_warmup_steps",
            str(warmup),
            "--components.ntk_ner.model.head_lr_scale",
            str(args.head_lr_scale),
        ],
        "spacy_ner": [
            "configs/trf-ner.cfg",
            "--components.ner.model.tok2vec.name",
            str(args.encoder),
            "--components.ner.model.tok2vec.mixed_precision",
            "false",
        ],
    }
    wanted = args.models.split(",")
    unknown = set(wanted) - set(runs)
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; known: {', '.join(runs)}")
    runs = {name: cfg for name, cfg in runs.items() if name in wanted}
    results: Dict[str, Any] = {
        "steps": steps,
        "learn_rate": args.learn_rate,
        "k": args.k,
        "head_lr_scale": args.head_lr_scale,
        "words_per_batch": batch_words,
        "encoder": str(args.encoder),
        "models": {},
    }
    for name, cfg in runs.items():
        out = work / "training" / name
        start = time.perf_counter()
        train(cfg[0], out, corpus, [*common, *cfg[1:]], log)
        train_s = time.perf_counter() - start
        found = score(out / "model-last", corpus / "dev", work / f"{name}.json", log)
        found["train_seconds"] = train_s
        found["train_words_per_s"] = steps * batch_words / train_s
        results["models"][name] = found
        # Written as it goes: a failure later keeps what was measured.
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    models = {name: work / "training" / name / "model-last" for name in runs}
    speeds = speed_in_turns(models, corpus / "dev", log, extra=["--batches", "30", "--warmup", "1"])
    for name, wps in speeds.items():
        results["models"][name]["words_per_s"] = wps
    print(json.dumps(results, indent=2))
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
