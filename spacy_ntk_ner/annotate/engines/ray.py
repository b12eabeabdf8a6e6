"""Annotate on a Ray cluster with Ray Data (`pip install "spacy-ntk-ner[ray]"`).

Ray Data's pattern for batch inference: the texts become a dataset, and
`map_batches` runs a callable class whose `__init__` loads the pipeline once per
actor, on a pool of `n_workers` actors (`compute=ActorPoolStrategy(size=...)`). The
pipeline is never sent through the object store (a loaded `Language` does not survive
it, spaCy #13506); each actor loads it from the model's name or folder. Actors return
plain records (JSON text, and Doc bytes for DocBin output), never Docs.

Documents go to the cluster in waves of `WAVE_DOCS`, so the driver holds at most one
wave of texts however large the corpus; each wave starts its actors anew, which costs
a few seconds against the minutes a wave takes.
"""

import json
import logging
import warnings
from typing import Any, Dict, Generator, Iterable, Iterator, List, Optional, Tuple

import numpy

from ...errors import UserError
from ..options import AnnotateOptions
from ..records import Record, SpanSource, model_fingerprint
from .worker import PipelineWorker

# Documents per wave: about 2.5M words of 25-word sentences, minutes of work per actor.
WAVE_DOCS = 100_000


def require_ray() -> Any:
    """RETURNS (module): `ray`, or a clear error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError('--engine ray needs Ray Data: pip install "spacy-ntk-ner[ray]"') from None
    return ray


class Annotator(PipelineWorker):
    """The callable class of `map_batches`: one pipeline per actor.

    model (str): What `spacy.load` takes; the same on every node.
    source (Dict[str, Any]): The `SpanSource`'s fields.
    threshold (Optional[float]): The least score kept.
    with_doc (bool): Whether to send back Doc bytes (DocBin output).
    batch_size (int): `nlp.pipe`'s batch size.
    gpu (bool): Whether the actor was given a GPU (Ray makes it device 0).
    """

    def __init__(
        self,
        model: str,
        source: Dict[str, Any],
        threshold: Optional[float],
        with_doc: bool,
        batch_size: int,
        gpu: bool,
    ) -> None:
        super().__init__(model, SpanSource(**source), threshold, with_doc, batch_size, gpu)

    def __call__(self, batch: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
        items = zip((int(p) for p in batch["pos"]), (str(t) for t in batch["text"]))
        records = []
        docs = []
        for _, rec in self.records(items):
            docs.append(rec.pop("doc", b""))
            records.append(json.dumps(rec))
        return {
            "pos": numpy.asarray(batch["pos"], dtype="int64"),
            "record": numpy.asarray(records, dtype=object),
            "doc": numpy.asarray(docs, dtype=object),
        }


def start_ray(address: Optional[str], num_cpus: Optional[int]) -> Tuple[Any, bool]:
    """Join a cluster, or start a local instance.

    address (Optional[str]): The cluster's address (`ray start --head` prints it), or None.
    num_cpus (Optional[int]): CPUs of a local instance (None: all).
    RETURNS (Tuple[module, bool]): `ray`, and whether this call started it (and so
        should shut it down).
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: Dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    with warnings.catch_warnings():
        # Ray 2.60 warns about its own deprecated default while it builds the context.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
        context = ray.data.DataContext.get_current()
    # Ray's own bars would fight the command's bar for the terminal.
    context.enable_progress_bars = False
    return ray, True


def _node_view(model: str) -> Dict[str, Any]:
    import importlib.util

    try:
        seen = model_fingerprint(model)
        del seen["model"]  # the name it was given; what matters is what is there
    except (OSError, ValueError):
        seen = {"missing": model}
    seen["spacy_ntk_ner"] = importlib.util.find_spec("spacy_ntk_ner") is not None
    return seen


def check_nodes(ray: Any, model: str) -> None:
    """Check, before any work starts, that every node of the cluster has this package and
    the same model as this machine (the same package version, or a folder with the
    same files): a task pinned to each node reports what it sees there.

    ray (module): `ray`, initialized.
    model (str): What `spacy.load` takes.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected = _node_view(model)
    probe = ray.remote(num_cpus=0)(_node_view)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(model)
        for n in nodes
    ]
    for node, seen in zip(nodes, ray.get(refs)):
        address = node.get("NodeManagerAddress", node["NodeID"])
        if not seen["spacy_ntk_ner"]:
            raise UserError(f"Ray node {address}: spacy-ntk-ner is not installed there")
        if seen != expected:
            raise UserError(
                f"Ray node {address}: the model {model!r} is missing or differs there "
                "(install the same package on every node, or put the folder on shared storage)"
            )


def annotate_on_ray(
    items: Iterable[Tuple[int, str]], model: str, source: SpanSource, options: AnnotateOptions
) -> Generator[Record, None, None]:
    """Start Ray (or join the cluster, checking its nodes first), annotate there, and
    shut down a Ray this call started; Ray's errors become one-line `UserError`s.

    items (Iterable[Tuple[int, str]]): Positions and texts.
    model (str): What `spacy.load` takes, on every node.
    source (SpanSource): Where the pipeline puts its entities.
    options (AnnotateOptions): The job's options (threshold, output format, actors,
        batch size, GPU, cluster address, CPUs).
    YIELDS (Tuple[int, Dict[str, Any]]): Each position and its record, in any order.
    """
    ray, started = start_ray(options.ray_address, options.ray_num_cpus)
    try:
        if options.ray_address:
            check_nodes(ray, model)
        yield from run_ray(
            items,
            model,
            source,
            options.settings.threshold,
            options.settings.with_doc,
            n_workers=options.n_workers,
            batch_size=options.batch_size,
            gpu=options.gpu_id >= 0,
        )
    except ray.exceptions.RayError as err:
        # An actor's failure arrives as a remote traceback: say in one line what it was.
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        raise UserError(f"Ray: {lines[-1] if lines else type(err).__name__}") from None
    finally:
        if started:
            ray.shutdown()


def run_ray(
    items: Iterable[Tuple[int, str]],
    model: str,
    source: SpanSource,
    threshold: Optional[float],
    with_doc: bool,
    *,
    n_workers: int,
    batch_size: int,
    gpu: bool,
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Annotate texts on the cluster, a wave at a time.

    items (Iterable[Tuple[int, str]]): Positions and texts.
    model (str): What `spacy.load` takes, on every node.
    source (SpanSource): Where the pipeline puts its entities.
    threshold (Optional[float]): The least score kept.
    with_doc (bool): Whether to add Doc bytes to each record.
    n_workers (int): Actors.
    batch_size (int): Documents per batch.
    gpu (bool): One GPU per actor.
    YIELDS (Tuple[int, Dict[str, Any]]): Each position and its record, in any order.
    """
    actor_kwargs = {
        "model": model,
        "source": {"component": source.component, "spans_key": source.spans_key},
        "threshold": threshold,
        "with_doc": with_doc,
        "batch_size": batch_size,
        "gpu": gpu,
    }
    wave: List[Dict[str, Any]] = []
    for pos, text in items:
        wave.append({"pos": pos, "text": text})
        if len(wave) >= WAVE_DOCS:
            yield from _run_wave(wave, actor_kwargs, n_workers)
            wave = []
    if wave:
        yield from _run_wave(wave, actor_kwargs, n_workers)


def _run_wave(
    rows: List[Dict[str, Any]], actor_kwargs: Dict[str, Any], n_workers: int
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    import ray.data

    batch_size = actor_kwargs["batch_size"]
    # At least a block per actor, so that none waits; no more actors than blocks.
    n_blocks = min(len(rows), max(-(-len(rows) // batch_size), n_workers))
    ds = ray.data.from_items(rows, override_num_blocks=n_blocks).map_batches(
        Annotator,
        fn_constructor_kwargs=actor_kwargs,
        compute=ray.data.ActorPoolStrategy(size=min(n_workers, n_blocks)),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=1,
        num_gpus=1 if actor_kwargs["gpu"] else None,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for pos, record, doc in zip(batch["pos"], batch["record"], batch["doc"]):
            rec = json.loads(record)
            if actor_kwargs["with_doc"]:
                rec["doc"] = bytes(doc)
            yield int(pos), rec
