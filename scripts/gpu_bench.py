"""The Python stages of scripts/gpu_check.sh. Each merges its part into one JSON file at
once, so a run cut off still reports what it measured.

- `env`: versions, where `spacy_ntk_ner` is imported from (it must be the source tree),
  the device, and a DLPack round trip through thinc's `xp2torch`/`torch2xp` on it.
- `train`: configs/trf.cfg trained for a fixed number of steps as spaCy's training loop
  does it (the batcher of the config, `discard_oversize` included, and
  `optimizer.step_schedules()` after each update). It reports steady-state words per
  second (a window timed between two syncs, none inside it), the loss at each step, peak
  GPU memory, steps skipped for a loss-scale overflow and the final loss scale, and, over
  the last steps apart from that window, the CRF's share of a step not counting the
  building of the gold tags on the host (counted on its own).
- `infer`: words per second of `nlp.pipe` at a few batch sizes.
- `table`: the figures as a table; any stage recorded as failed shows as such.

Usage: python scripts/gpu_bench.py env RESULT.json [--gpu-id 0]
       python scripts/gpu_bench.py train RESULT.json CORPUS ENCODER --n-passes 2 [--gpu-id 0]
       python scripts/gpu_bench.py infer RESULT.json CORPUS MODEL_DIR [--batch-sizes 32 128]
       python scripts/gpu_bench.py record RESULT.json KEY JSON_VALUE
       python scripts/gpu_bench.py table RESULT.json
"""

import argparse
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
# At most this many steps before the timed window (the first ones allocate memory and
# compile kernels), and as many after it for the CRF probe, which syncs around the loss.
WARMUP_STEPS = 5
PROBE_STEPS = 5
# thinc's default initial loss scale (torch's too); gpu_check.sh starts lower.
DEFAULT_INIT_SCALE = 2.0**16
# How many characters of a log the JSON keeps.
LOG_CHARS = 20_000


def record(path: Path, key: str, value: Any) -> None:
    """Merge `key: value` into the JSON object in `path` (written to a temporary name,
    then renamed). A dotted key (`stage_seconds.install`) sets a value inside an object."""
    data = json.loads(path.read_text()) if path.exists() else {}
    *outer, last = key.split(".")
    node = data
    for part in outer:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _sync(gpu: bool) -> Callable[[], None]:
    """A function that waits for the GPU to finish what it was given (a no-op on the CPU).
    Called at measurement boundaries only: a sync inside a timed stretch stops the host
    from queueing the next kernels while the GPU runs the last ones."""
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


def _use_gpu(gpu_id: int) -> bool:
    if gpu_id < 0:
        return False
    import spacy
    from thinc.api import set_gpu_allocator

    # cupy allocates through torch's allocator: torch's peak-memory counter sees both.
    set_gpu_allocator("pytorch")
    spacy.require_gpu(gpu_id)
    return True


# ---- env


def env(args: argparse.Namespace) -> int:
    """Record versions and the device; check a DLPack round trip on the device. Exit
    status 4 when the packages do not import, 3 when a GPU was asked for and there is
    none, 1 when the package is not imported from this source tree or DLPack fails."""
    from importlib.metadata import version

    try:
        import spacy  # noqa: F401
        import spacy_transformers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        import spacy_ntk_ner
    except Exception as err:  # recorded: the JSON says what does not import
        record(args.result, "versions", f"FAILED: the packages do not import: {err!r}")
        raise SystemExit(4) from err

    where = Path(spacy_ntk_ner.__file__).resolve().parent
    names = ["spacy", "thinc", "spacy-transformers", "transformers", "tokenizers", "torch"]
    names += ["numpy", "cupy-cuda13x", "cupy-cuda12x", "spacy-ntk-ner"]
    versions: Dict[str, Any] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = version(name)
        except Exception:  # not installed (cupy on the CPU)
            pass
    versions["spacy_ntk_ner_from"] = str(where)
    record(args.result, "versions", versions)
    status = 0
    if where.parent != REPO:
        print(f"error: spacy_ntk_ner is imported from {where}, not {REPO}", file=sys.stderr)
        status = 1
    if args.gpu_id < 0:
        record(args.result, "device", "cpu")
        return status
    try:
        import cupy

        device: Dict[str, Any] = {
            "name": torch.cuda.get_device_name(args.gpu_id),
            "torch_cuda": torch.version.cuda,
            "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
            "memory_gib": round(torch.cuda.get_device_properties(args.gpu_id).total_memory / 2**30),
        }
    except Exception as err:  # recorded: the JSON says why there is no device
        record(args.result, "device", f"FAILED: no GPU through cupy and torch: {err!r}")
        return 3
    device["dlpack"] = _dlpack_check(args.gpu_id)
    record(args.result, "device", device)
    print(json.dumps(device, indent=2))
    return status if device["dlpack"]["ok"] else 1


def _dlpack_check(gpu_id: int) -> Dict[str, Any]:
    """`xp2torch(cupy.ones(2))` and back with `torch2xp`, as thinc does at every
    transformer call, with the warnings it raises (cupy >= 13.4 deprecates the
    `toDlpack` that thinc 8.3 calls)."""
    import cupy
    from thinc.util import torch2xp, xp2torch

    with cupy.cuda.Device(gpu_id), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tensor: Any = xp2torch(cupy.ones(2, dtype="float32"))
            back: Any = torch2xp(tensor * 2)
            ok = bool(tensor.is_cuda) and float(back.sum()) == 4.0
            result: Dict[str, Any] = {"ok": ok}
        except Exception as err:
            result = {"ok": False, "error": repr(err)}
    result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return result


# ---- train


def _let_scaler_take_cpu_tensors() -> None:
    """For tests on the CPU: let thinc's gradient scaler scale CPU tensors (it takes CUDA
    tensors only); the arithmetic, overflow checks and scale updates are the GPU's."""
    from thinc.shims.pytorch_grad_scaler import PyTorchGradScaler

    def scale_tensor(self: Any, tensor: Any, per_device: Dict[Any, Any], inplace: bool) -> Any:
        scale = self._scale.to(device=tensor.device)
        return tensor.mul_(scale) if inplace else tensor * scale

    setattr(PyTorchGradScaler, "_scale_tensor", scale_tensor)  # noqa: B010


class _OverflowCounter:
    """Counts the optimizer steps whose transformer update thinc skipped because the
    scaled gradients overflowed: wraps each gradient scaler's `update`, which the
    PyTorch shim calls once per step and which clears the overflow flag."""

    def __init__(self, model: Any) -> None:
        self.scalers = [
            shim._grad_scaler
            for node in model.walk()
            for shim in node.shims
            if getattr(shim, "_grad_scaler", None) is not None
        ]
        self.enabled = any(s._enabled for s in self.scalers)
        self.step = 0
        self.skipped: List[int] = []
        for scaler in self.scalers:
            scaler.update = self._wrap(scaler, scaler.update)

    def _wrap(self, scaler: Any, update: Callable[[], None]) -> Callable[[], None]:
        def counted() -> None:
            if scaler._enabled and scaler.found_inf and self.step not in self.skipped:
                self.skipped.append(self.step)
            update()

        return counted

    def report(self, init_scale: float) -> Dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        return {
            "enabled": True,
            "init": init_scale,
            "final": float(self.scalers[0]._scale.item()),
            "overflow_skipped_steps": len(self.skipped),
            "skipped_at": self.skipped,
        }


def _batches(config: Any, examples: List[Any]) -> List[List[Any]]:
    """The batches of the config's own batcher over the shuffled examples."""
    from spacy.util import registry

    random.Random(0).shuffle(examples)
    batcher = registry.resolve({"batcher": config["training"]["batcher"]})["batcher"]
    return [list(b) for b in batcher(examples)]


def train(args: argparse.Namespace) -> None:
    """Train trf.cfg for `--steps` steps on CORPUS/train; save the model to --save."""
    from spacy.training import Example
    from spacy.util import load_model_from_config
    from thinc.api import Config, fix_random_seed

    started = time.perf_counter()
    gpu = _use_gpu(args.gpu_id)
    config = Config().from_disk(REPO / "configs" / "trf.cfg")
    ner = config["components"]["ntk_ner"]
    ner["n_passes"] = args.n_passes
    ner["agreement_warmup_steps"] = 0
    tok2vec = ner["model"]["tok2vec"]
    # thinc's gradient scaler takes CUDA tensors only.
    tok2vec["mixed_precision"] = gpu
    tok2vec["name"] = str(args.encoder)
    scaler_config: Dict[str, Any] = {"init_scale": args.init_scale}
    if args.cpu_grad_scaler and not gpu:
        _let_scaler_take_cpu_tensors()
        scaler_config["enabled"] = True
    tok2vec["grad_scaler_config"] = scaler_config
    learn_rate = config["training"]["optimizer"]["learn_rate"]
    learn_rate["total_steps"] = args.steps
    learn_rate["warmup_steps"] = max(args.steps // 10, 1)
    fix_random_seed(0)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(nlp.make_doc(d.text), d) for d in _read(args.corpus / "train", nlp.vocab)]
    optimizer = nlp.initialize(lambda: examples)
    batches = _batches(config, examples)
    dev = [Example(nlp.make_doc(d.text), d) for d in _read(args.corpus / "dev", nlp.vocab)]
    heldout = _batches(config, dev)[0] if dev else batches[-1]
    component: Any = nlp.get_pipe("ntk_ner")
    overflow = _OverflowCounter(component.model)
    # The CRF's own parameters (transitions, start, end) are the component model's.
    crf_before = {
        n: component.model.ops.to_numpy(component.model.get_param(n)).copy()
        for n in component.model.param_names
    }
    sync = _sync(gpu)
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    heldout_before = _heldout_loss(component, heldout)
    setup_s = time.perf_counter() - started

    losses: List[float] = []

    def step(batch: List[Any]) -> None:
        overflow.step = len(losses)
        losses.append(nlp.update(batch, sgd=optimizer, drop=0.1)["ntk_ner"])
        optimizer.step_schedules()  # as spaCy's training loop: the learn rate moves

    n_warm = min(WARMUP_STEPS, args.steps // 3)
    n_probe = min(PROBE_STEPS, args.steps // 3)
    n_window = args.steps - n_warm - n_probe
    if n_window < 1:
        raise SystemExit(f"--steps {args.steps}: too few (at least 3)")
    batch_at = lambda i: batches[i % len(batches)]  # noqa: E731
    start = time.perf_counter()
    for i in range(n_warm):
        step(batch_at(i))
    sync()
    warmup_s = time.perf_counter() - start
    # The timed window: a sync at each end, none inside (the component itself brings one
    # number, the loss, back to the host per update).
    words, start = 0, time.perf_counter()
    for i in range(n_warm, n_warm + n_window):
        step(batch_at(i))
        words += sum(len(eg.predicted) for eg in batch_at(i))
        if time.perf_counter() - start > args.max_seconds:
            break
    sync()
    seconds = time.perf_counter() - start
    window_steps = len(losses) - n_warm
    probe = _crf_probe(component, sync, [batch_at(len(losses) + i) for i in range(n_probe)], step)
    words_at = [sum(len(eg.predicted) for eg in batch_at(i)) for i in range(len(losses))]
    result: Dict[str, Any] = {
        "n_passes": args.n_passes,
        "steps": len(losses),
        "steps_asked": args.steps,
        "timed_steps": window_steps,
        "timed_words": words,
        "stopped_by_time_limit": window_steps < n_window,
        "mixed_precision": gpu,
        "batcher": {k: v for k, v in config["training"]["batcher"].items() if k != "get_length"},
        "batches": len(batches),
        "docs": len(examples),
        "docs_discarded_oversize": len(examples) - sum(len(b) for b in batches),
        "longest_doc_kept": max(len(eg.predicted) for b in batches for eg in b),
        "loss_first": round(losses[0], 3),
        "loss_last": round(losses[-1], 3),
        "losses": [round(x, 3) for x in losses],
        "losses_per_word": [round(x / w, 4) for x, w in zip(losses, words_at)],
        # One batch of CORPUS/dev, not trained on, one pass without dropout: the loss
        # per word before the first step and after the last.
        "heldout_loss_per_word": {
            "batch": "dev" if dev else "the last of train (no dev docs)",
            "words": sum(len(eg.predicted) for eg in heldout),
            "before": round(heldout_before, 4),
            "after": round(_heldout_loss(component, heldout), 4),
        },
        "train_words_per_s": round(words / seconds, 1) if seconds else None,
        "seconds_per_step": round(seconds / window_steps, 4) if window_steps else None,
        **probe,
        "loss_scale": overflow.report(args.init_scale),
        "crf_params_max_change": max(
            float(abs(component.model.ops.to_numpy(component.model.get_param(n)) - v).max())
            for n, v in crf_before.items()
        ),
        "seconds": {
            "setup": round(setup_s, 1),
            "warmup_steps": round(warmup_s, 2),
            "timed_window": round(seconds, 2),
        },
    }
    if gpu:
        import torch

        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    key = f"train_n{args.n_passes}"
    record(args.result, key, result)
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}, indent=2))
    if args.save:
        start = time.perf_counter()
        nlp.to_disk(args.save)
        record(args.result, f"{key}.seconds.save", round(time.perf_counter() - start, 1))


def _heldout_loss(component: Any, examples: List[Any]) -> float:
    """The component's loss per word on `examples`, without dropout or an update."""
    scores = component.model.predict([eg.predicted for eg in examples])
    loss, _ = component.get_loss(examples, scores)
    return float(loss) / sum(len(eg.predicted) for eg in examples)


def _crf_probe(
    component: Any, sync: Callable[[], None], batches: List[Any], step: Callable[[Any], None]
) -> Dict[str, Any]:
    """Train on `batches` with a sync around each step and around the component's loss
    (`_loss`: the CRF's forward-backward and the agreement loss), timing on the host the
    building of the gold tags (`_gold`) inside it. RETURNS the CRF's share of a step
    without the gold tags, and the gold tags' share."""
    if not batches:
        return {"crf_share": None, "gold_tags_share": None}
    loss_fn, gold_fn = component._loss, component._gold
    spent = {"loss": 0.0, "gold": 0.0}

    def timed_loss(*a: Any, **kw: Any) -> Any:
        sync()
        start = time.perf_counter()
        out = loss_fn(*a, **kw)
        sync()
        spent["loss"] += time.perf_counter() - start
        return out

    def timed_gold(*a: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        out = gold_fn(*a, **kw)
        spent["gold"] += time.perf_counter() - start
        return out

    component._loss, component._gold = timed_loss, timed_gold
    total = 0.0
    try:
        for batch in batches:
            sync()
            start = time.perf_counter()
            step(batch)
            sync()
            total += time.perf_counter() - start
    finally:
        del component._loss, component._gold  # back to the class's methods
    return {
        "crf_share": round((spent["loss"] - spent["gold"]) / total, 3),
        "gold_tags_share": round(spent["gold"] / total, 3),
        "probe": {
            "steps": len(batches),
            "ms_per_step": round(1000 * total / len(batches), 1),
            "crf_ms_per_step": round(1000 * (spent["loss"] - spent["gold"]) / len(batches), 1),
            "gold_tags_ms_per_step": round(1000 * spent["gold"] / len(batches), 1),
        },
    }


# ---- infer


def infer(args: argparse.Namespace) -> None:
    """Words per second of `nlp.pipe` over the corpus's docs at each batch size, each
    timed between two syncs over whole batches until `--max-words` words or
    `--max-seconds` seconds."""
    import spacy

    gpu = _use_gpu(args.gpu_id)
    nlp = spacy.load(args.model)
    texts, n_words = [], 0
    for doc in _read(args.corpus, nlp.vocab):
        if n_words >= args.max_words:
            break
        texts.append(doc.text)
        n_words += len(doc)
    sync = _sync(gpu)
    found: Dict[str, Any] = {}
    for size in args.batch_sizes:
        for _ in nlp.pipe(texts[:size], batch_size=size):  # warm-up
            pass
        sync()
        words, start = 0, time.perf_counter()
        for i, doc in enumerate(nlp.pipe(texts, batch_size=size), 1):
            words += len(doc)
            # Stop at the end of a batch only: the next one has not been started.
            if i % size == 0 and time.perf_counter() - start > args.max_seconds:
                break
        sync()
        seconds = time.perf_counter() - start
        found[str(size)] = round(words / seconds, 1)
        record(args.result, "infer_words_per_s", found)
        record(args.result, f"infer_detail.{size}", {"words": words, "seconds": round(seconds, 2)})
        print(f"batch_size {size}: {found[str(size)]} words/s ({words} words)")


# ---- table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "status" in value:
        return f"{value['status']} ({value.get('reason', '')})"
    return str(value)


def _failed(value: Any) -> Optional[str]:
    """The failure a stage's value records, or None."""
    if isinstance(value, str) and value.startswith(("FAILED", "skipped")):
        return value
    if isinstance(value, dict) and value.get("status") in ("FAILED", "skipped"):
        return _fmt(value)
    if not isinstance(value, dict):
        return f"unexpected value: {value!r}"
    return None


def table(args: argparse.Namespace) -> None:
    """Print the figures. Never fails on a stage that failed or is missing."""
    data = json.loads(args.result.read_text()) if args.result.exists() else {}
    device = data.get("device", "?")
    if isinstance(device, dict):
        device = f"{device.get('name')}, DLPack ok: {device.get('dlpack', {}).get('ok')}"
    print(f"device: {device}")
    print(f"data: {_fmt(data.get('data', '?'))}")
    print(
        "| n_passes | train words/s | CRF share of a step (gold tags apart) | gold tags share "
        "| peak GPU MiB | overflow-skipped steps | final loss scale | loss first -> last |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(k for k in data if k.startswith("train_n")):
        r = data[key]
        why = _failed(r)
        if why is not None:
            print(f"| {key[len('train_n') :]} | {why} | | | | | | |")
            continue
        scale = r.get("loss_scale") or {}
        print(
            f"| {r.get('n_passes')} | {_fmt(r.get('train_words_per_s'))} "
            f"| {_fmt(r.get('crf_share'))} | {_fmt(r.get('gold_tags_share'))} "
            f"| {_fmt(r.get('peak_gpu_mib'))} | {_fmt(scale.get('overflow_skipped_steps'))} "
            f"| {_fmt(scale.get('final'))} | {_fmt(r.get('loss_first'))} -> "
            f"{_fmt(r.get('loss_last'))} |"
        )
    infer = data.get("infer_words_per_s")
    if not isinstance(infer, dict) or not infer:
        print(f"inference: {_fmt(infer) if infer else 'no figures'}")
    else:
        for size, wps in infer.items():
            print(f"inference, batch_size {size}: {_fmt(wps)} words/s")
    tests = data.get("gpu_tests")
    if isinstance(tests, dict) and "result" in tests:
        print(f"gpu tests: {tests.get('result')} (exit {tests.get('exit')})")
    elif tests is not None:
        print(f"gpu tests: {_fmt(tests)}")
    for key in ("install", "stage_seconds"):
        if key in data:
            print(f"{key}: {_fmt(data[key])}")
    failed = data.get("failed_stages")
    for name in failed if isinstance(failed, list) else []:
        print(f"failed: {name}: {_fmt(data.get(name))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("env")
    p.add_argument("result", type=Path)
    p.add_argument("--gpu-id", type=int, default=0)
    p = sub.add_parser("train")
    p.add_argument("result", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("encoder", type=Path)
    p.add_argument("--n-passes", type=int, default=1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--max-seconds", type=float, default=60.0, help="of the timed window")
    p.add_argument("--init-scale", type=float, default=DEFAULT_INIT_SCALE)
    p.add_argument(
        "--cpu-grad-scaler", action="store_true", help="tests: the loss scaler on the CPU too"
    )
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--save", type=Path, default=None)
    p = sub.add_parser("infer")
    p.add_argument("result", type=Path)
    p.add_argument("corpus", type=Path)
    p.add_argument("model", type=Path)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--max-words", type=int, default=100_000)
    p.add_argument("--max-seconds", type=float, default=20.0, help="per batch size")
    p.add_argument("--gpu-id", type=int, default=0)
    p = sub.add_parser("record")
    p.add_argument("result", type=Path)
    p.add_argument("key")
    p.add_argument("value", help="JSON")
    p = sub.add_parser("table")
    p.add_argument("result", type=Path)
    args = parser.parse_args()
    if args.stage == "record":
        record(args.result, args.key, json.loads(args.value))
    elif args.stage == "env":
        sys.exit(env(args))
    else:
        {"train": train, "infer": infer, "table": table}[args.stage](args)


if __name__ == "__main__":
    main()
