"""ntk_ner against spaCy's built-in ner on the same transformer, on the CPU, on WikiSER.

Usage: python benchmarks/bench_trf.py WIKISER_DEV_TXT ENCODER_DIR --workdir DIR
       [--epochs 1]

ENCODER_DIR is a real pretrained encoder: `../shared/tools/get-minilm.sh DIR` lays
all-MiniLM-L6-v2 there. Splits WikiSER's dev file 90/10 with the converter (seed 0),
then trains configs/trf.cfg (ntk_ner, k=2, alpha=10 after a 10% warm-up) and
configs/trf-ner.cfg (spaCy's ner) for the same number of epochs with the same overrides
(the encoder, no mixed precision as there is no GPU, a learning-rate schedule sized to
the run, a final evaluation only), one after the other. Reports `ents_f` on the 10%
split, training words per second (epochs x training words / wall time of `spacy
train`, start-up and the final evaluation included) and inference words per second
(`spacy benchmark speed`, the models taking turns).
Writes DIR/results.json.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List

from _common import PY, REPO, score, sh, speed_in_turns, split_corpus


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dev", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    corpus = work / "corpus"
    n_words = split_corpus(args.dev, corpus, log)["splits"]["train"]["tokens"]
    # About 1,500 words per batch of 2,000 padded words: size the schedule to the run.
    steps = max(10, args.epochs * n_words // 1500)
    warmup = max(1, steps // 10)
    common = [
        "--paths.train",
        str(corpus / "train"),
        "--paths.dev",
        str(corpus / "dev"),
        "--training.max_epochs",
        str(args.epochs),
        "--training.max_steps",
        "0",
        "--training.eval_frequency",
        "1000000",
        "--training.optimizer.learn_rate.warmup_steps",
        str(warmup),
        "--training.optimizer.learn_rate.total_steps",
        str(steps),
    ]
    runs: Dict[str, List[str]] = {
        "ntk_ner": [
            "configs/trf.cfg",
            "--components.ntk_ner.model.tok2vec.name",
            str(args.encoder),
            "--components.ntk_ner.model.tok2vec.mixed_precision",
            "false",
            "--components.ntk_ner.alpha_warmup_steps",
            str(warmup),
        ],
        "spacy_ner": [
            "configs/trf-ner.cfg",
            "--components.ner.model.tok2vec.name",
            str(args.encoder),
            "--components.ner.model.tok2vec.mixed_precision",
            "false",
        ],
    }
    results: Dict[str, Any] = {
        "epochs": args.epochs,
        "train_words": n_words * args.epochs,
        "encoder": str(args.encoder),
        "models": {},
    }
    for name, cfg in runs.items():
        out = work / "training" / name
        start = time.perf_counter()
        sh(
            [
                PY,
                "-m",
                "spacy",
                "train",
                str(REPO / cfg[0]),
                "--output",
                str(out),
                *common,
                *cfg[1:],
            ],
            log,
        )
        train_s = time.perf_counter() - start
        found = score(out / "model-last", corpus / "dev", work / f"{name}.json", log)
        found["train_seconds"] = train_s
        found["train_words_per_s"] = n_words * args.epochs / train_s
        results["models"][name] = found
    models = {name: work / "training" / name / "model-last" for name in runs}
    speeds = speed_in_turns(models, corpus / "dev", log, extra=["--batches", "30", "--warmup", "1"])
    for name, wps in speeds.items():
        results["models"][name]["words_per_s"] = wps
    print(json.dumps(results, indent=2))
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
