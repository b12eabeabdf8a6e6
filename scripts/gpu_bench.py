"""The measuring stages of scripts/gpu_check.sh: train configs/trf.cfg for a fixed number
of steps and report steady-state words per second, peak GPU memory and the CRF's share
of a step; inference words per second with `nlp.pipe` at a few batch sizes; the final
table. Each stage merges its part into one JSON file at once, so a cut-off run still
reports what it measured.

Usage: python scripts/gpu_bench.py train RESULT.json CORPUS ENCODER --n-passes 2 [--gpu-id 0]
       python scripts/gpu_bench.py infer RESULT.json CORPUS MODEL_DIR [--batch-sizes 32 128]
       python scripts/gpu_bench.py record RESULT.json KEY JSON_VALUE
       python scripts/gpu_bench.py table RESULT.json
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO = Path(__file__).resolve().parent.parent
# Steps before the steady state: the first ones allocate and compile kernels.
WARMUP_STEPS = 5


def record(path: Path, key: str, value: Any) -> None:
    """Merge `key: value` into the JSON object in `path` (written to a temporary name,
    then renamed)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _sync(gpu: bool) -> Callable[[], None]:
    if not gpu:
        return lambda: None
    import cupy

    return lambda: cupy.cuda.Device().synchronize()


def _read(corpus: Path, vocab: Any) -> List[Any]:
    from spacy.tokens import DocBin

    docs: List[Any] = []
    for f in sorted(corpus.rglob("*.spacy")):
        docs.extend(DocBin().from_disk(f).get_docs(vocab))
    return docs


def train(args: argparse.Namespace) -> None:
    """Train trf.cfg for `--steps` steps on CORPUS/train; save the model to --save."""
    import spacy
    from spacy.training import Example
    from spacy.training.batchers import minibatch_by_padded_size
    from spacy.util import load_model_from_config
    from thinc.api import Config, fix_random_seed, set_gpu_allocator

    gpu = args.gpu_id >= 0
    if gpu:
        set_gpu_allocator("pytorch")
        spacy.require_gpu(args.gpu_id)
    config = Config().from_disk(REPO / "configs" / "trf.cfg")
    ner = config["components"]["ntk_ner"]
    ner["n_passes"] = args.n_passes
    ner["agreement_warmup_steps"] = 0
    # thinc's gradient scaler takes CUDA tensors only.
    ner["model"]["tok2vec"]["mixed_precision"] = gpu
    ner["model"]["tok2vec"]["name"] = str(args.encoder)
    config["training"]["optimizer"]["learn_rate"]["total_steps"] = args.steps
    config["training"]["optimizer"]["learn_rate"]["warmup_steps"] = max(args.steps // 10, 1)
    fix_random_seed(0)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(nlp.make_doc(d.text), d) for d in _read(args.corpus / "train", nlp.vocab)]
    optimizer = nlp.initialize(lambda: examples)
    batcher = config["training"]["batcher"]
    batches = list(minibatch_by_padded_size(examples, size=batcher["size"], buffer=256))
    sync = _sync(gpu)
    component: Any = nlp.get_pipe("ntk_ner")
    crf_time = [0.0]
    loss_fn = component._loss

    def timed_loss(*a: Any, **kw: Any) -> Any:
        sync()
        start = time.perf_counter()
        out = loss_fn(*a, **kw)
        sync()
        crf_time[0] += time.perf_counter() - start
        return out

    component._loss = timed_loss
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    losses, words, seconds = [], 0, 0.0
    for step in range(args.steps):
        batch = batches[step % len(batches)]
        if step == WARMUP_STEPS:
            crf_time[0] = 0.0
        sync()
        start = time.perf_counter()
        losses.append(nlp.update(batch, sgd=optimizer, drop=0.1)["ntk_ner"])
        sync()
        if step >= WARMUP_STEPS:
            seconds += time.perf_counter() - start
            words += sum(len(eg.predicted) for eg in batch)
    result: Dict[str, Any] = {
        "n_passes": args.n_passes,
        "steps": args.steps,
        "mixed_precision": gpu,
        "first_losses": [round(x, 3) for x in losses[:3]],
        "last_losses": [round(x, 3) for x in losses[-3:]],
        "train_words_per_s": round(words / seconds, 1) if seconds else None,
        "crf_share": round(crf_time[0] / seconds, 3) if seconds else None,
    }
    if gpu:
        import torch

        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    record(args.result, f"train_n{args.n_passes}", result)
    if args.save:
        component._loss = loss_fn
        nlp.to_disk(args.save)


def infer(args: argparse.Namespace) -> None:
    """Words per second of `nlp.pipe` over the corpus's docs at each batch size."""
    import spacy
    from thinc.api import set_gpu_allocator

    gpu = args.gpu_id >= 0
    if gpu:
        set_gpu_allocator("pytorch")
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.load(args.model)
    docs = _read(args.corpus, nlp.vocab)
    kept, n_words = [], 0
    for doc in docs:
        if n_words >= args.max_words:
            break
        kept.append(doc.text)
        n_words += len(doc)
    sync = _sync(gpu)
    found = {}
    for size in args.batch_sizes:
        for _ in nlp.pipe(kept[:size], batch_size=size):  # warm-up
            pass
        sync()
        start = time.perf_counter()
        words = sum(len(doc) for doc in nlp.pipe(kept, batch_size=size))
        sync()
        found[str(size)] = round(words / (time.perf_counter() - start), 1)
        record(args.result, "infer_words_per_s", found)


def table(args: argparse.Namespace) -> None:
    data = json.loads(args.result.read_text())
    print(f"device: {data.get('device', '?')}  encoder: {data.get('encoder', '?')}")
    print("| n_passes | train words/s | CRF share of a step | peak GPU MiB | loss first -> last |")
    print("| --- | --- | --- | --- | --- |")
    for key in sorted(k for k in data if k.startswith("train_n")):
        r = data[key]
        print(
            f"| {r['n_passes']} | {r['train_words_per_s']} | {r['crf_share']} "
            f"| {r.get('peak_gpu_mib', '-')} | {r['first_losses'][0]} -> {r['last_losses'][-1]} |"
        )
    for size, wps in data.get("infer_words_per_s", {}).items():
        print(f"inference, batch_size {size}: {wps} words/s")
    for key in ("install", "smoke"):
        if key in data:
            print(f"{key}: {data[key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("train")
    p.add_argument("result", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("encoder", type=Path)
    p.add_argument("--n-passes", type=int, default=1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--save", type=Path, default=None)
    p = sub.add_parser("infer")
    p.add_argument("result", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--max-words", type=int, default=100_000)
    p.add_argument("--gpu-id", type=int, default=0)
    p = sub.add_parser("record")
    p.add_argument("result", type=Path)
    p.add_argument("key")
    p.add_argument("value")
    p = sub.add_parser("table")
    p.add_argument("result", type=Path)
    args = parser.parse_args()
    if args.stage == "record":
        record(args.result, args.key, json.loads(args.value))
    else:
        {"train": train, "infer": infer, "table": table}[args.stage](args)


if __name__ == "__main__":
    main()
