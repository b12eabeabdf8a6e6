"""Annotate corpora with a trained pipeline: `python -m spacy_ntk_ner annotate`.

Documents are read from text, JSONL, DocBin or BIO files (`inputs`), annotated on
this machine (`engines.local`: `nlp.pipe` in this process, or a pool of worker
processes) or on a Ray cluster (`engines.ray`), and written in resumable shards of
`shard_size` documents under the output folder (`output`): one JSON line per
document in Prodigy's span format, or DocBin files. The job checks its options
(`options`), reads the inputs once before writing anything, and ends with the report
(`report`).
"""

import time
from pathlib import Path
from typing import Any, Callable, Dict, Generator, Optional, Sequence, Tuple

from .._format import rounded_floats
from .._outputs import check_target
from ..corpus.files import PathLike
from ..loading import load_pipeline
from .engines.local import WorkerPool, pool_size
from .engines.ray import annotate_on_ray
from .engines.worker import pipe_records
from .inputs import InputOptions, InputScan, PendingDocuments, list_inputs, scan_inputs
from .options import AnnotateOptions, Settings
from .output import (
    REPORT,
    Progress,
    ShardWriter,
    lock_output_folder,
    new_manifest,
    pending_shards,
    prepare_output,
    write_json,
    write_manifest,
)
from .records import Record, SpanSource, find_span_source, model_fingerprint
from .report import format_annotate_report, make_report

# `Settings` and `format_annotate_report` are imported from here by the command line.
__all__ = ["annotate", "run_annotation", "Settings", "format_annotate_report"]


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
    shards under `output_dir`, and write `report.json` there (`run_annotation` takes
    the same options as one `AnnotateOptions`).

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
        module again, so a script calls this under `if __name__ == "__main__":`). They
        start while the inputs are read; an input too small to pay for them runs in
        this process, and the report's "note" says so.
    batch_size (int): Documents per batch (and per chunk sent to a worker process).
    gpu_id (int): GPU to use (-1: the CPU); with Ray, one GPU per actor.
    n_workers (int): Actors of the Ray engine.
    ray_address (Optional[str]): A Ray cluster to join (None starts a local instance).
    ray_num_cpus (Optional[int]): CPUs of a local Ray instance (None: all).
    overwrite (bool): Remove what an earlier run wrote and start over.
    on_progress (Optional[Callable[[int, int], None]]): Called with the documents and
        words of each document written.
    RETURNS (Dict[str, Any]): The report.
    """
    options = AnnotateOptions(
        engine=engine,
        input_options=input_options,
        settings=settings,
        component=component,
        n_process=n_process,
        batch_size=batch_size,
        gpu_id=gpu_id,
        n_workers=n_workers,
        ray_address=ray_address,
        ray_num_cpus=ray_num_cpus,
        overwrite=overwrite,
    )
    return run_annotation(model, inputs, output_dir, options, on_progress)


def run_annotation(
    model: str,
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    options: AnnotateOptions,
    on_progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Run an annotation job: what `annotate` does, with its options in one object.

    model (str): A package name or pipeline folder (anything `spacy.load` takes).
    inputs (Sequence[PathLike]): Files and folders to read.
    output_dir (PathLike): Where the shards, `manifest.json` and `report.json` go.
    options (AnnotateOptions): The engine, how to read and write, and the workers.
    on_progress (Optional[Callable[[int, int], None]]): Called with the documents and
        words of each document written.
    RETURNS (Dict[str, Any]): The report.
    """
    options.check()
    settings = options.settings
    out = Path(output_dir)
    # The output folder may lie in an input folder: its own files are never inputs.
    check_target(out, [Path(p) for p in inputs], inside_inputs=True, kind="folder")
    files = list_inputs(inputs, options.input_options, skip=out)
    model = _resolve_model(model)
    fingerprint = model_fingerprint(model)
    nlp = _load(model, options.gpu_id if options.engine == "local" else -1)
    source = find_span_source(nlp, options.component)
    pool = None
    if options.engine == "local" and options.n_process > 1:
        pool = WorkerPool(
            model,
            source,
            settings.threshold,
            settings.with_doc,
            options.n_process,
            options.batch_size,
        )
    try:
        scan = scan_inputs(
            files,
            options.input_options,
            nlp.max_length,
            settings.with_doc,
            watch=_start_when_large(pool) if pool is not None else None,
        )
        manifest = new_manifest(fingerprint, files, options, source, scan.docs)
        with lock_output_folder(out):
            manifest = prepare_output(out, manifest, options.overwrite)
            start = time.perf_counter()
            pending = pending_shards(out, manifest, scan.docs, settings)
            writer = ShardWriter(out, manifest, settings, on_progress)
            documents = PendingDocuments(
                files, options.input_options, pending, settings.shard_size, settings.with_doc
            )
            note = None
            if pool is not None:
                runs, note = _fit_pool(pool, scan, len(pending) * settings.shard_size)
                pool = pool if runs else None
            records = _start_engine(nlp, model, documents, source, options, pool)
            del nlp  # only the in-process engine keeps it: workers and actors load their own
            try:
                writer.write(records, documents.held, pending)
            finally:
                records.close()  # stops the engine's workers now if the writing failed
            seconds = time.perf_counter() - start
            report = make_report(manifest, scan, writer, seconds, options.engine)
            if note is not None:
                report["note"] = note
            # As report.json has it: what the call returns is what a rerun reads back.
            report = rounded_floats(report)
            write_json(out / REPORT, report)
            write_manifest(out, manifest)  # now listing report.json too
    except BaseException:
        if pool is not None:
            pool.stop()  # workers started while the inputs were read
        raise
    return report


def _start_when_large(pool: WorkerPool) -> Callable[[InputScan], None]:
    """RETURNS (Callable[[InputScan], None]): What the scan calls after each document:
    it starts the pool's workers, to load the pipeline while the scan reads on, once
    the inputs are large enough for all of them (`pool_size`)."""

    def watch(scan: InputScan) -> None:
        if pool.worth_starting(scan.docs, scan.chars):
            pool.start()

    return watch


def _fit_pool(pool: WorkerPool, scan: InputScan, pending_docs: int) -> Tuple[bool, Optional[str]]:
    """Size the pool to the documents still to annotate (`pool_size`): start it if
    the scan did not; if one process is enough, end it.

    RETURNS (Tuple[bool, Optional[str]]): Whether the pool runs, and if not and there
        is work, why the job runs in one process.
    """
    docs = min(pending_docs, scan.docs)
    chars = scan.chars * docs // max(scan.docs, 1)
    n = pool_size(docs, chars, pool.n_process, pool.batch_size)
    if n > 1:
        pool.start(n)
        return True, None
    pool.stop()
    if not docs:
        return False, None
    if docs <= pool.batch_size:
        why = f"{docs:,} document(s) fill one chunk of --batch-size {pool.batch_size}"
    else:
        why = (
            f"{docs:,} document(s) of {chars:,} characters take less time than starting "
            "worker processes"
        )
    return False, f"--n-process {pool.n_process}: annotated in one process, as {why}"


def _start_engine(
    nlp: Any,
    model: str,
    documents: PendingDocuments,
    source: SpanSource,
    options: AnnotateOptions,
    pool: Optional[WorkerPool],
) -> Generator[Record, None, None]:
    """The records of the engine the options name: Ray's, the pool's (None: this
    process's)."""
    threshold = options.settings.threshold
    with_doc = options.settings.with_doc
    if options.engine == "ray":
        return annotate_on_ray(documents, model, source, options)
    if pool is not None:
        return pool.records(documents)
    return pipe_records(nlp, documents, source, threshold, with_doc, options.batch_size)


def _resolve_model(model: str) -> str:
    # A folder is named absolutely: Ray's workers and a later rerun may start elsewhere.
    path = Path(model)
    return str(path.resolve()) if path.exists() else model


def _load(model: str, gpu_id: int) -> Any:
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return load_pipeline(model)
