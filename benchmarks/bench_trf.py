"""ntk_ner against spaCy's built-in ner on the same transformer, on the CPU, on WikiSER.

Usage: python benchmarks/bench_trf.py WIKISER_DEV_TXT ENCODER_DIR --workdir DIR
       [--steps 150] [--learn-rate 0.0002] [--n-passes 1]

ENCODER_DIR is a real pretrained encoder: `../shared/tools/get-minilm.sh DIR` lays
all-MiniLM-L6-v2 there. Splits WikiSER's dev file 90/10 with the converter (seed 0),
then trains configs/trf.cfg (ntk_ner) and configs/trf-ner.cfg (spaCy's ner) for the
same number of steps with the same overrides, one after the other: the encoder, mixed
precision off (there is no GPU), a learning-rate schedule sized to the run (10%
warm-up, then linear decay to 0; the peak rate is higher than the config's 5e-5,
which needs thousands of steps), a final evaluation only. ntk_ner's n_passes (passes per
batch) is a flag: each pass costs a forward and backward pass of the transformer.
Reports `ents_f` on the 10% split, training words per second and inference words per
second. Training speed is measured in turns (stage `train-speed`): each model runs
`spacy train` for --speed-steps steps, saving nothing and evaluating on 16 docs only,
the models alternating, twice; words/s = steps x the mean words of a batch / wall time
(start-up included, the same for both). The `train` stage's wall time (one model after
the other, start-up, evaluations and ntk_ner's calibration included) is recorded too.
Inference: `spacy benchmark speed`, the models taking turns (stage `speed`).
Writes DIR/results.json after each stage; `--stages` reruns some stages on the models
and results already in DIR.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from _common import read_docs, score, speed_in_turns, split_corpus, train


def words_per_batch(train: Path) -> float:
    """Mean words in a batch of configs/trf.cfg's batcher (2,000 padded words)."""
    from spacy.training.batchers import minibatch_by_padded_size

    batches = minibatch_by_padded_size(
        read_docs(train), size=2000, buffer=256, discard_oversize=True
    )
    sizes = [sum(len(d) for d in batch) for batch in batches]
    return sum(sizes) / len(sizes)


def small_dev(dev: Path, out: Path, n: int = 16) -> Path:
    """The first `n` docs of the DocBins in `dev`, as `out/dev.spacy`.

    RETURNS (Path): `out`.
    """
    from spacy.tokens import DocBin

    out.mkdir(parents=True, exist_ok=True)
    DocBin(docs=read_docs(dev)[:n], store_user_data=True).to_disk(out / "dev.spacy")
    return out


def train_speed_in_turns(
    runs: Dict[str, List[str]],
    corpus: Path,
    dev: Path,
    steps: int,
    batch_words: float,
    overrides: Sequence[str],
    log: Path,
    rounds: int = 2,
) -> Dict[str, List[float]]:
    """Training words per second of each run, the runs taking turns.

    RETURNS (Dict[str, List[float]]): One figure per round for each run.
    """
    found: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, cfg in runs.items():
            start = time.perf_counter()
            train(cfg[0], None, corpus, [*overrides, *cfg[1:]], log, dev=dev)
            found[name].append(round(steps * batch_words / (time.perf_counter() - start), 1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dev", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--learn-rate", type=float, default=0.0002)
    parser.add_argument("--n-passes", type=int, default=1)
    parser.add_argument("--head-lr-scale", type=float, default=10.0)
    parser.add_argument(
        "--models",
        default="ntk_ner,spacy_ner",
        help="which of ntk_ner,ntk_ner_k2,spacy_ner to train",
    )
    parser.add_argument("--speed-steps", type=int, default=40)
    parser.add_argument(
        "--stages", default="train,train-speed,speed", help="of train,train-speed,speed"
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
    # Each stage adds its own --training.max_steps; the schedule is the train stage's.
    common = [
        "--training.max_epochs",
        "0",
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
            "--components.ntk_ner.n_passes",
            str(args.n_passes),
            "--components.ntk_ner.agreement_warmup_steps",
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
    # The same as ntk_ner with two passes per batch (trf.cfg's agreement_weight),
    # whatever --n-passes says.
    at = runs["ntk_ner"].index("--components.ntk_ner.n_passes") + 1
    runs["ntk_ner_k2"] = [*runs["ntk_ner"][:at], "2", *runs["ntk_ner"][at + 1 :]]
    wanted = args.models.split(",")
    unknown = set(wanted) - set(runs)
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; known: {', '.join(runs)}")
    runs = {name: cfg for name, cfg in runs.items() if name in wanted}
    stages = args.stages.split(",")
    if set(stages) - {"train", "train-speed", "speed"}:
        parser.error(f"--stages: known are train, train-speed, speed; got {args.stages}")
    results: Dict[str, Any] = {
        "steps": steps,
        "learn_rate": args.learn_rate,
        "n_passes": args.n_passes,
        "head_lr_scale": args.head_lr_scale,
        "words_per_batch": batch_words,
        "encoder": str(args.encoder),
        "models": {},
    }
    if "train" not in stages:
        # Later stages only: keep what the train stage measured.
        results = json.loads((work / "results.json").read_text())

    def save() -> None:
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    if "train" in stages:
        for name, cfg in runs.items():
            out = work / "training" / name
            start = time.perf_counter()
            train(cfg[0], out, corpus, [*common, "--training.max_steps", str(steps), *cfg[1:]], log)
            train_s = time.perf_counter() - start
            found = score(out / "model-last", corpus / "dev", work / f"{name}.json", log)
            found["train_seconds"] = train_s
            found["train_words_per_s"] = steps * batch_words / train_s
            results["models"][name] = found
            # Written as it goes: a failure later keeps what was measured.
            save()
    if "train-speed" in stages:
        speed_common = [*common, "--training.max_steps", str(args.speed_steps)]
        dev = small_dev(corpus / "dev", work / "speed-dev")
        train_speeds = train_speed_in_turns(
            runs, corpus, dev, args.speed_steps, batch_words, speed_common, log
        )
        results["train_speed_steps"] = args.speed_steps
        for name, wps in train_speeds.items():
            results["models"].setdefault(name, {})["train_words_per_s_in_turns"] = wps
        save()
    if "speed" in stages:
        models = {name: work / "training" / name / "model-last" for name in runs}
        extra = ["--batches", "30", "--warmup", "1"]
        for name, wps in speed_in_turns(models, corpus / "dev", log, extra=extra).items():
            results["models"].setdefault(name, {})["words_per_s"] = wps
        save()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
