"""Annotate corpora with a trained pipeline: `python -m spacy_ntk_ner annotate`.

Documents are read from text, JSONL, DocBin or BIO files (`inputs.py`), annotated
on this machine (`local_engine.py`: `nlp.pipe` in this process, or a pool of worker
processes) or on a Ray cluster (`ray_engine.py`), and written in shards of
`shard_size` documents under the output folder: one JSON line per document in
Prodigy's span format, or DocBin files.

A shard is always the same run of input documents, written under a temporary name
and renamed when complete, so a rerun skips the shards already there and makes the
rest. `manifest.json` records the model, the inputs and the settings, and a rerun
with other ones is refused rather than mixed in. Only files this command wrote are
ever removed (`overwrite`), and a folder holding anything else is refused. An `flock`
on `.annotate.lock` keeps a second run out while one is writing.
"""

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple

from .. import __version__
from .._fs import FolderLock
from ..corpus.files import PathLike
from ..errors import UserError
from ..loading import load_pipeline
from .engines.local import run_pool
from .engines.ray import check_nodes, run_ray, start_ray
from .engines.worker import pipe_records
from .inputs import Document, InputOptions, describe_inputs, iter_documents, list_inputs
from .records import SpanSource, find_span_source, model_fingerprint

ENGINES = ("local", "ray")
OUTPUT_FORMATS = ("jsonl", "docbin")
MANIFEST = "manifest.json"
REPORT = "report.json"
LOCK = ".annotate.lock"
TOOL = "spacy_ntk_ner annotate"
_SUFFIX = {"jsonl": ".jsonl", "docbin": ".spacy"}
# Names this command gives its files: shards, and their temporary names while written.
_OWN_RE = re.compile(r"^\.?shard-\d{5,}\.(jsonl|spacy)(\.tmp)?$|^\.(manifest|report)\.json\.tmp$")

Progress = Callable[[int, int], None]
Records = Generator[Tuple[int, Dict[str, Any]], None, None]


@dataclass(frozen=True)
class Settings:
    """What shapes the output; a rerun must use the same.

    shard_size (int): Documents per shard.
    threshold (Optional[float]): The least score kept (None keeps all).
    output_format (str): "jsonl" or "docbin".
    """

    shard_size: int = 10000
    threshold: Optional[float] = None
    output_format: str = "jsonl"


@dataclass
class ShardStats:
    """Counts of one shard, kept in the manifest so a resumed run reports them all.

    docs (int): Documents.
    words (int): Tokens.
    entities (Counter): Entities per label.
    score_sums (Dict[str, float]): Sum of the scores per label (scored entities only).
    scored (Counter): Scored entities per label.
    """

    docs: int = 0
    words: int = 0
    entities: Counter = field(default_factory=Counter)
    score_sums: Dict[str, float] = field(default_factory=dict)
    scored: Counter = field(default_factory=Counter)

    def add(self, words: int, spans: Sequence[Dict[str, Any]]) -> None:
        self.docs += 1
        self.words += words
        for span in spans:
            label = span["label"]
            self.entities[label] += 1
            if span["score"] is not None:
                self.scored[label] += 1
                self.score_sums[label] = self.score_sums.get(label, 0.0) + span["score"]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "docs": self.docs,
            "words": self.words,
            "entities": dict(sorted(self.entities.items())),
            "score_sums": dict(sorted(self.score_sums.items())),
            "scored": dict(sorted(self.scored.items())),
        }


@dataclass
class InputScan:
    """What a first pass over the inputs found, before anything is written.

    docs (int): Documents.
    skipped (List[str]): `FILE:LINE: what is wrong` of each line left out.
    duplicate_ids (int): Documents whose (given) id an earlier one had.
    """

    docs: int = 0
    skipped: List[str] = field(default_factory=list)
    duplicate_ids: int = 0


def annotate(
    model: str,
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    *,
    engine: str = "local",
    input_options: InputOptions = InputOptions(),
    settings: Settings = Settings(),
    component: Optional[str] = None,
    n_process: int = 1,
    batch_size: int = 256,
    gpu_id: int = -1,
    n_workers: int = 1,
    ray_address: Optional[str] = None,
    ray_num_cpus: Optional[int] = None,
    overwrite: bool = False,
    on_progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Annotate documents with a pipeline's entities and their scores, in resumable
    shards under `output_dir`, and write `report.json` there.

    model (str): A package name or pipeline folder (anything `spacy.load` takes).
    inputs (Sequence[PathLike]): Files and folders of `.txt`, `.jsonl`, `.spacy` or
        BIO files (`.gz` too).
    output_dir (PathLike): Where the shards, `manifest.json` and `report.json` go.
    engine (str): "local" (this machine) or "ray" (Ray Data).
    input_options (InputOptions): How to read the inputs.
    settings (Settings): Shard size, score threshold, output format.
    component (Optional[str]): The component whose entities are written (None: the
        pipeline's only `ntk_ner`, or its `doc.ents`).
    n_process (int): Processes of the local engine (more than 1: a pool of workers,
        each loading the pipeline; they start fresh and import the caller's main
        module again, so a script calls this under `if __name__ == "__main__":`).
    batch_size (int): Documents per batch (and per chunk sent to a worker process).
    gpu_id (int): GPU to use (-1: the CPU); with Ray, one GPU per actor.
    n_workers (int): Actors of the Ray engine.
    ray_address (Optional[str]): A Ray cluster to join (None starts a local instance).
    ray_num_cpus (Optional[int]): CPUs of a local Ray instance (None: all).
    overwrite (bool): Remove what an earlier run wrote and start over.
    on_progress (Optional[Callable[[int, int], None]]): Called with the documents and
        words of each batch written.
    RETURNS (Dict[str, Any]): The report.
    """
    _check_options(engine, settings, n_process, n_workers, batch_size, gpu_id)
    files = list_inputs(inputs, input_options)
    model = _resolve_model(model)
    fingerprint = model_fingerprint(model)
    nlp = _load(model, gpu_id if engine == "local" else -1)
    source = find_span_source(nlp, component)
    scan = scan_inputs(files, input_options, nlp.max_length)
    out = Path(output_dir)
    manifest = {
        "tool": TOOL,
        "version": __version__,
        "model": fingerprint,
        "inputs": describe_inputs(files),
        "settings": {
            **input_options.to_dict(),
            "shard_size": settings.shard_size,
            "threshold": settings.threshold,
            "output_format": settings.output_format,
            "component": source.component,
            "spans_key": source.spans_key,
        },
        "documents": scan.docs,
        "shards": {},
    }
    with _locked(out):
        manifest = _prepare_output(out, manifest, overwrite)
        start = time.perf_counter()
        pending = _pending_shards(out, manifest, scan.docs, settings)
        run = _Run(out, manifest, settings, on_progress)
        feed = _Feed(files, input_options, pending, settings.shard_size)
        with_doc = settings.output_format == "docbin"
        if engine == "local" and n_process == 1:
            records = pipe_records(nlp, feed, source, settings.threshold, with_doc, batch_size)
        elif engine == "local":
            del nlp  # each worker loads its own
            records = run_pool(
                feed,
                model,
                source,
                settings.threshold,
                with_doc,
                n_process=n_process,
                batch_size=batch_size,
            )
        else:
            del nlp  # each actor loads its own
            records = _ray_records(
                model,
                feed,
                source,
                settings,
                n_workers,
                batch_size,
                gpu_id,
                ray_address,
                ray_num_cpus,
            )
        try:
            run.write(records, feed, pending)
        finally:
            records.close()  # stops the engine's workers now if the writing failed
        report = make_report(manifest, scan, run, time.perf_counter() - start, engine)
        _write_json(out / REPORT, report)
    return report


def _check_options(
    engine: str, settings: Settings, n_process: int, n_workers: int, batch_size: int, gpu_id: int
) -> None:
    problems = []
    if engine not in ENGINES:
        problems.append(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if settings.output_format not in OUTPUT_FORMATS:
        problems.append(
            f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, "
            f"not {settings.output_format!r}"
        )
    if settings.shard_size < 1:
        problems.append(f"--shard-size must be at least 1, not {settings.shard_size}")
    if settings.threshold is not None and not 0.0 <= settings.threshold <= 1.0:
        problems.append(f"--threshold must be between 0 and 1, not {settings.threshold}")
    if batch_size < 1:
        problems.append(f"--batch-size must be at least 1, not {batch_size}")
    if n_process < 1 or n_workers < 1:
        problems.append("--n-process and --n-workers must be at least 1")
    if engine == "local" and n_workers != 1:
        problems.append("--n-workers is for --engine ray; on one machine use --n-process")
    if engine == "ray" and n_process != 1:
        problems.append("--n-process is for --engine local; on Ray use --n-workers")
    if gpu_id >= 0 and n_process > 1:
        problems.append(
            "--gpu-id runs one process: each worker process would hold its own copy of the "
            "model on the GPU (use --batch-size to fill the GPU)"
        )
    if problems:
        raise UserError("; ".join(problems))


def _resolve_model(model: str) -> str:
    # A folder is named absolutely: Ray's workers and a later rerun may start elsewhere.
    path = Path(model)
    return str(path.resolve()) if path.exists() else model


def _load(model: str, gpu_id: int) -> Any:
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return load_pipeline(model)


def scan_inputs(
    files: Sequence[Tuple[Path, str]], options: InputOptions, max_length: Optional[int] = None
) -> InputScan:
    """Read every input once before anything is written: count the documents, find
    the bad lines (the first one raises unless `on_error="skip"`) and the repeated ids.

    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    options (InputOptions): How to read them.
    max_length (Optional[int]): The pipeline's `nlp.max_length`: a longer document is
        refused here, naming it, rather than failing in `nlp.pipe` (spaCy's E088).
    RETURNS (InputScan): What was found.
    """
    scan = InputScan()
    seen: set = set()
    for doc in iter_documents(files, options, scan.skipped.append):
        scan.docs += 1
        if max_length is not None and len(doc.text) > max_length:
            where = f"document {doc.id!r}" if doc.given_id else str(doc.id)
            raise UserError(
                f"{where}: {len(doc.text):,} characters, more than the pipeline's "
                f"nlp.max_length ({max_length:,}): split the document"
            )
        if doc.given_id:
            key = doc.id if isinstance(doc.id, (str, int)) else json.dumps(doc.id, sort_keys=True)
            if key in seen:
                scan.duplicate_ids += 1
            else:
                seen.add(key)
    return scan


# ---- the output folder


def _locked(out: Path) -> FolderLock:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the output must be a folder")
    if out.is_dir():
        _foreign_files(out, _read_manifest(out))  # before the lock file is added to it
    out.mkdir(parents=True, exist_ok=True)
    return FolderLock(out, "annotate run", LOCK)


def _foreign_files(out: Path, old: Optional[Dict[str, Any]]) -> List[str]:
    """Refuse a folder holding files this command did not write.
    RETURNS (List[str]): The names of the files it did write."""
    names = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    ours = {MANIFEST, REPORT}
    foreign = [n for n in names if old is None or not (n in ours or _OWN_RE.match(n))]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(
            f"{out}: holds files this command did not write ({shown}): use an empty or new folder"
        )
    return names


def _prepare_output(out: Path, manifest: Dict[str, Any], overwrite: bool) -> Dict[str, Any]:
    """Check the output folder holds only what an earlier run of this command wrote, with
    the same model, inputs and settings; start over with `overwrite`.
    RETURNS (Dict[str, Any]): The manifest to go on with (the earlier one when resuming).
    """
    old = _read_manifest(out)
    names = _foreign_files(out, old)
    if old is not None and overwrite:
        for name in names:
            (out / name).unlink()
        old = None
    elif old is not None:
        _check_same(out, old, manifest)
        manifest["shards"] = old.get("shards", {})
    for name in names:
        if name.endswith(".tmp") and (out / name).exists():
            (out / name).unlink()  # left by an interrupted run of this command
    _write_json(out / MANIFEST, manifest)
    return manifest


def _read_manifest(out: Path) -> Optional[Dict[str, Any]]:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text("utf8"))
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        raise UserError(f"{path}: not a manifest written by this command; use another folder")
    return data


def _check_same(out: Path, old: Dict[str, Any], new: Dict[str, Any]) -> None:
    differ = []
    if old.get("model") != new["model"]:
        differ.append("another model")
    if old.get("inputs") != new["inputs"]:
        differ.append("other inputs (paths, sizes or modification times)")
    old_settings = old.get("settings", {})
    changed = [k for k, v in new["settings"].items() if old_settings.get(k) != v]
    if changed:
        pairs = ", ".join(f"{k} {old_settings.get(k)!r} -> {new['settings'][k]!r}" for k in changed)
        differ.append(f"other settings ({pairs})")
    if differ:
        raise UserError(
            f"{out}: an earlier run wrote it with {'; '.join(differ)}: rerun as it was to "
            "resume, add --overwrite to start over, or use another folder"
        )


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf8")
    os.replace(tmp, path)


def shard_name(index: int, output_format: str) -> str:
    """index (int): The shard's number. output_format (str): "jsonl" or "docbin".
    RETURNS (str): The shard's file name."""
    return f"shard-{index:05d}{_SUFFIX[output_format]}"


def _pending_shards(
    out: Path, manifest: Dict[str, Any], n_docs: int, settings: Settings
) -> List[int]:
    n_shards = -(-n_docs // settings.shard_size)
    done = manifest["shards"]
    pending = []
    for i in range(n_shards):
        name = shard_name(i, settings.output_format)
        if name in done and (out / name).is_file():
            continue
        done.pop(name, None)
        pending.append(i)
    return pending


# ---- reading and annotating


class _Feed:
    """Streams the texts of the pending shards' documents to an engine, and keeps each
    document until its output is written."""

    def __init__(
        self,
        files: Sequence[Tuple[Path, str]],
        options: InputOptions,
        pending: Sequence[int],
        shard_size: int,
    ) -> None:
        self.files = files
        self.options = options
        self.pending = set(pending)
        self.shard_size = shard_size
        self.held: Dict[int, Document] = {}

    def __iter__(self) -> Iterator[Tuple[int, str]]:
        for pos, doc in enumerate(iter_documents(self.files, self.options)):
            if pos // self.shard_size in self.pending:
                self.held[pos] = doc
                yield pos, doc.text


def _ray_records(
    model: str,
    feed: _Feed,
    source: SpanSource,
    settings: Settings,
    n_workers: int,
    batch_size: int,
    gpu_id: int,
    address: Optional[str],
    num_cpus: Optional[int],
) -> Records:
    if not feed.pending:
        return
    ray, started = start_ray(address, num_cpus)
    try:
        if address:
            check_nodes(ray, model)
        yield from run_ray(
            feed,
            model,
            source,
            settings.threshold,
            settings.output_format == "docbin",
            n_workers=n_workers,
            batch_size=batch_size,
            gpu=gpu_id >= 0,
        )
    except ray.exceptions.RayError as err:
        # An actor's failure arrives as a remote traceback: say in one line what it was.
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        raise UserError(f"Ray: {lines[-1] if lines else type(err).__name__}") from None
    finally:
        if started:
            ray.shutdown()


# ---- writing


class _Run:
    """Writes records into shards in input order, and counts what it wrote."""

    def __init__(
        self,
        out: Path,
        manifest: Dict[str, Any],
        settings: Settings,
        on_progress: Optional[Progress],
    ) -> None:
        self.out = out
        self.manifest = manifest
        self.settings = settings
        self.on_progress = on_progress
        self.written = 0
        self.words = 0

    def write(self, records: Records, feed: _Feed, pending: Sequence[int]) -> None:
        size = self.settings.shard_size
        n_docs = self.manifest["documents"]
        waiting: Dict[int, Dict[str, Any]] = {}
        records = iter(records)
        for index in pending:
            shard = _ShardFile(self.out, index, self.settings.output_format)
            try:
                for pos in range(index * size, min((index + 1) * size, n_docs)):
                    while pos not in waiting:
                        got = next(records, None)
                        if got is None:
                            raise UserError("the inputs changed while they were read")
                        waiting[got[0]] = got[1]
                    record = waiting.pop(pos)
                    shard.add(feed.held.pop(pos), record)
                    if self.on_progress is not None:
                        self.on_progress(1, record["words"])
                shard.close()
            finally:
                shard.discard()
            self.manifest["shards"][shard.path.name] = shard.stats.to_dict()
            _write_json(self.out / MANIFEST, self.manifest)
            self.written += 1
            self.words += shard.stats.words


class _ShardFile:
    """One shard, written under a temporary name and renamed when complete."""

    def __init__(self, out: Path, index: int, output_format: str) -> None:
        self.path = out / shard_name(index, output_format)
        self.tmp = out / f".{self.path.name}.tmp"
        self.stats = ShardStats()
        self.fh: Optional[IO[str]] = None
        self.docbin: Any = None
        if output_format == "jsonl":
            self.fh = self.tmp.open("w", encoding="utf8")
        else:
            from spacy.tokens import DocBin

            self.docbin = DocBin(store_user_data=True)

    def add(self, doc: Document, record: Dict[str, Any]) -> None:
        self.stats.add(record["words"], record["spans"])
        if self.fh is not None:
            line: Dict[str, Any] = {"id": doc.id, "text": doc.text, "spans": record["spans"]}
            if doc.gold_spans is not None:
                line["gold_spans"] = doc.gold_spans
            line["meta"] = doc.meta
            self.fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        else:
            self.docbin.add(_restore_doc(record["doc"], doc))

    def close(self) -> None:
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
        else:
            self.docbin.to_disk(self.tmp)
            with self.tmp.open("rb") as fh:
                os.fsync(fh.fileno())
        # Synced before the rename, as atomic.atomic_file does: after a crash of the
        # machine a shard under its final name is complete.
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.tmp.exists():
            self.tmp.unlink()


def _restore_doc(data: bytes, doc: Document) -> Any:
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    out = Doc(Vocab()).from_bytes(data)
    out.user_data["id"] = doc.id
    out.user_data["meta"] = doc.meta
    if doc.gold_spans is not None:
        out.user_data["gold_spans"] = doc.gold_spans
    return out


def make_report(
    manifest: Dict[str, Any], scan: InputScan, run: _Run, seconds: float, engine: str
) -> Dict[str, Any]:
    """Sum the shards' counts into the report.

    manifest (Dict[str, Any]): The manifest, with every shard's counts.
    scan (InputScan): What the first pass over the inputs found.
    run (_Run): What this run wrote.
    seconds (float): How long this run annotated.
    engine (str): The engine.
    RETURNS (Dict[str, Any]): The report.
    """
    words = 0
    entities: Counter = Counter()
    scored: Counter = Counter()
    sums: Counter = Counter()
    for stats in manifest["shards"].values():
        words += stats["words"]
        entities.update(stats["entities"])
        scored.update(stats["scored"])
        sums.update(stats["score_sums"])
    return {
        "documents": scan.docs,
        "words": words,
        "entities": dict(sorted(entities.items())),
        "mean_score": {
            label: (sums[label] / scored[label] if scored[label] else None)
            for label in sorted(entities)
        },
        "shards": len(manifest["shards"]),
        "shards_written_now": run.written,
        "words_written_now": run.words,
        "seconds": seconds,
        "words_per_second": run.words / seconds if seconds > 0 else None,
        "engine": engine,
        "duplicate_ids": scan.duplicate_ids,
        "skipped_lines": scan.skipped,
    }


def format_annotate_report(report: Dict[str, Any], output_dir: PathLike) -> str:
    """Lay out the report for a terminal.

    report (Dict[str, Any]): What `annotate` returned.
    output_dir (PathLike): Where the output went.
    RETURNS (str): The report, a few lines.
    """
    lines = [
        f"Annotated {report['documents']:,} document(s), {report['words']:,} words, into "
        f"{report['shards']} shard(s) under {output_dir} "
        f"({report['shards_written_now']} written now)",
    ]
    if report["words_per_second"]:
        lines.append(
            f"{report['words_per_second']:,.0f} words/s over {report['seconds']:.1f} s "
            f"({report['engine']})"
        )
    lines.append("label  entities  mean score")
    for label, n in report["entities"].items():
        mean = report["mean_score"][label]
        lines.append(f"  {label}  {n:,}  {'-' if mean is None else f'{mean:.3f}'}")
    if report["duplicate_ids"]:
        lines.append(f"{report['duplicate_ids']:,} document(s) repeat an earlier id")
    skipped = report["skipped_lines"]
    if skipped:
        lines.append(f"Skipped {len(skipped):,} bad line(s):")
        lines.extend(f"  {s}" for s in skipped[:10])
        if len(skipped) > 10:
            lines.append(f"  ... ({len(skipped) - 10:,} more in {REPORT})")
    lines.append(f"Report: {Path(output_dir) / REPORT}")
    return "\n".join(lines)
