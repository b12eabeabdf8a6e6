"""Annotate on this machine: in this process, or on a pool of worker processes.

With one process the pipeline runs here (`nlp.pipe`). With more, a pool of
`n_process` processes (`concurrent.futures.ProcessPoolExecutor`) each loads the
pipeline once (`engines.worker.PipelineWorker`, in the pool's initializer) and annotates
chunks of `batch_size` documents, sending back records as Ray's actors do, not Docs.
The parent keeps at most `IN_FLIGHT_PER_WORKER` chunks per worker in flight, so it
never holds more of the corpus than that, and takes the results in the order it sent
the chunks: the input order.

A failure in a worker (its pipeline raising, the model failing to load, the process
killed) becomes a one-line `UserError`. On Ctrl-C (or any error while the results
are written) the workers are ended at once, and the writer's own clean-up leaves the
shards already complete and no temporary file. Workers leave the signals that end a
run (SIGINT, SIGTERM, SIGHUP, which a terminal or `timeout` sends to the whole process
group) to the parent, and end themselves when the parent is gone, however it ended
(SIGKILL, the OOM killer): they would otherwise run on, each holding a pipeline.
"""

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import islice
from typing import Any, Deque, Dict, Generator, Iterable, Iterator, List, Optional, Tuple, cast

from spacy.util import minibatch

from ...errors import UserError
from ..records import Record, SpanSource
from .worker import PipelineWorker

# Chunks sent ahead per worker: one it works on, one waiting, so it never idles
# while the parent writes; more would only hold more texts and records in memory.
IN_FLIGHT_PER_WORKER = 2

# Workers start as fresh interpreters, not as forks: this process has loaded the
# pipeline (and with it torch and BLAS thread pools), and a forked child that takes a
# lock copied from one of those threads waits forever. benchmarks/README.md
# ("Annotating a corpus") gives the details and the cost.
START_METHOD = "spawn"

# The signals that end a run: the parent turns them into KeyboardInterrupt (Ctrl-C) or
# dies of them; a worker ignores them and follows its parent.
RUN_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# prctl(2): PR_SET_PDEATHSIG asks Linux to signal this process when its parent dies.
_PR_SET_PDEATHSIG = 1

# Characters of text under which a pool does not pay for itself: about what one process
# annotates with a CPU pipeline in the seconds a worker takes to start (spawn, import
# spaCy, load the pipeline). benchmarks/README.md, "Annotating a corpus".
POOL_MIN_CHARS = 1_000_000

_worker: Optional[PipelineWorker] = None
_start_error: Optional[Exception] = None


def run_pool(
    items: Iterable[Tuple[int, str]],
    model: str,
    source: SpanSource,
    threshold: Optional[float],
    with_doc: bool,
    *,
    n_process: int,
    batch_size: int,
) -> Generator[Record, None, None]:
    """Annotate texts on a pool of worker processes, each loading the pipeline once.

    items (Iterable[Tuple[int, str]]): Positions and texts.
    model (str): What `spacy.load` takes.
    source (SpanSource): Where the pipeline puts its entities.
    threshold (Optional[float]): The least score kept.
    with_doc (bool): Whether to add Doc bytes to each record.
    n_process (int): Worker processes.
    batch_size (int): Documents per chunk sent to a worker (and `nlp.pipe`'s batch size).
    YIELDS (Tuple[int, Dict[str, Any]]): Each position and its record, in input order.
    """
    pool = WorkerPool(model, source, threshold, with_doc, n_process, batch_size)
    return pool.records(items)


def pool_size(docs: int, chars: int, n_process: int, batch_size: int) -> int:
    """The worker processes a job should start: one per chunk of `batch_size`
    documents, at most `n_process`; 1 (annotate in this process) when it has fewer
    than two chunks to share or less than POOL_MIN_CHARS characters.

    docs (int): Documents to annotate.
    chars (int): Characters of their texts.
    n_process (int): The processes asked for.
    batch_size (int): Documents per chunk.
    RETURNS (int): The number of processes.
    """
    chunks = -(-docs // batch_size)
    return 1 if chars < POOL_MIN_CHARS else max(1, min(n_process, chunks))


class WorkerPool:
    """A pool of worker processes that annotate chunks of `batch_size` documents. It
    can be started before its work is known (`start`), so that the workers load the
    pipeline while the caller reads its inputs; `records` then runs the work on it."""

    def __init__(
        self,
        model: str,
        source: SpanSource,
        threshold: Optional[float],
        with_doc: bool,
        n_process: int,
        batch_size: int,
    ) -> None:
        """Initialize the pool; no worker starts yet.

        model (str): What `spacy.load` takes.
        source (SpanSource): Where the pipeline puts its entities.
        threshold (Optional[float]): The least score kept.
        with_doc (bool): Whether to add Doc bytes to each record.
        n_process (int): The most worker processes.
        batch_size (int): Documents per chunk (and `nlp.pipe`'s batch size).
        """
        self.initargs = (model, source, threshold, with_doc, batch_size)
        self.n_process = n_process
        self.batch_size = batch_size
        self.executor: Optional[ProcessPoolExecutor] = None

    def start(self, n_workers: Optional[int] = None) -> None:
        """Start the workers now (at most `n_process`), each loading the pipeline."""
        if self.executor is not None:
            return
        n_workers = min(n_workers or self.n_process, self.n_process)
        self.executor = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context(START_METHOD),
            initializer=_start_worker,
            initargs=self.initargs,
        )
        # The pool starts a worker for each submission while none is idle; one started
        # while the run's signals are blocked starts with them blocked (the mask
        # survives `exec`), so it cannot die of them while it is still starting, and
        # its initializer ignores them before it unblocks them.
        with _run_signals_blocked():
            for _ in range(n_workers):
                self.executor.submit(_ready)

    def worth_starting(self, docs: int, chars: int) -> bool:
        """Whether inputs of `docs` documents and `chars` characters (so far) are enough
        for every worker (`pool_size`): then they may start before the rest is read."""
        return chars >= POOL_MIN_CHARS and docs >= self.n_process * self.batch_size

    def stop(self) -> None:
        """End the workers now (see `_stop`); nothing if none started."""
        if self.executor is not None:
            _stop(self.executor)
            self.executor = None

    def records(self, items: Iterable[Tuple[int, str]]) -> Generator[Record, None, None]:
        """Annotate texts on the pool (started here if it was not), at most
        `IN_FLIGHT_PER_WORKER` chunks per worker in flight; the workers end when
        the items do, or at once on an error or Ctrl-C.

        items (Iterable[Tuple[int, str]]): Positions and texts.
        YIELDS (Tuple[int, Dict[str, Any]]): Each position and its record, in input order.
        """
        chunks = minibatch(items, size=self.batch_size)
        first = list(islice(chunks, IN_FLIGHT_PER_WORKER * self.n_process))
        if not first:
            self.stop()
            return
        try:
            # No more workers than chunks to give them.
            self.start(len(first))
            executor = cast(ProcessPoolExecutor, self.executor)
            in_flight: Deque[Future] = deque()
            with _run_signals_blocked():
                for chunk in first:
                    in_flight.append(_submit(executor, chunk))
            del first
            while in_flight:
                done = _result(in_flight.popleft())
                for chunk in islice(chunks, 1):
                    in_flight.append(_submit(executor, chunk))
                yield from done
        except BaseException:
            self.stop()
            raise
        executor.shutdown(wait=True)
        self.executor = None


@contextmanager
def _run_signals_blocked() -> Iterator[None]:
    """Block the run's signals in this thread while workers start: blocked, not
    ignored, so that one arriving meanwhile is delivered here afterwards, not lost."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups to share
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, RUN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# What a pool with a dead worker is, wherever it shows: at a result or at a submission.
WORKER_DIED = "--n-process: a worker process died (killed, or out of memory?)"


def _submit(executor: ProcessPoolExecutor, chunk: List[Tuple[int, str]]) -> Future:
    # A worker that died after it sent its last result breaks the pool between two
    # results: the next submission is the first to hear of it.
    try:
        return executor.submit(_annotate_chunk, chunk)
    except BrokenProcessPool:
        raise UserError(WORKER_DIED) from None


def _result(future: Future) -> List[Record]:
    try:
        return future.result()
    except UserError:
        raise  # already one line (a model a worker could not load)
    except BrokenProcessPool:
        raise UserError(WORKER_DIED) from None
    except Exception as err:
        # The worker's traceback stays chained to the error for the Python API.
        message = (str(err).strip().splitlines() or [""])[0]
        raise UserError(f"--n-process: a worker failed: {type(err).__name__}: {message}") from err


def _stop(executor: ProcessPoolExecutor) -> None:
    """End the workers now: they ignore the run's signals (SIGTERM too), and left alone
    would finish the chunks they have (and the interpreter would wait for them at exit)."""
    # Before Python 3.14 (`terminate_workers`) the executor has no public way to end
    # its workers; `_processes` is its map of them (None once it is shut down).
    processes = list((getattr(executor, "_processes", None) or {}).values())
    manager = getattr(executor, "_executor_manager_thread", None)
    results = getattr(executor, "_result_queue", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join()
    # A worker killed while it sent a result leaves half a message in the results pipe,
    # and the executor's thread waits for the rest for ever (and the interpreter for
    # that thread at exit): with every worker gone, closing this process's own end of
    # the pipe turns that wait into end-of-file, which the thread takes for a broken pool.
    writer = getattr(results, "_writer", None)
    if writer is not None:
        writer.close()
    # The executor's own thread joins the workers too, and of two threads reaping one
    # child the loser can return before the winner has recorded the exit: wait for
    # that thread, so that no ended worker still reads as alive
    # (`multiprocessing.active_children()`).
    if manager is not None:
        manager.join(timeout=10)


def _start_worker(
    model: str,
    source: SpanSource,
    threshold: Optional[float],
    with_doc: bool,
    batch_size: int,
) -> None:
    """The pool's initializer: load the pipeline once in this worker process."""
    global _worker, _start_error
    # Ctrl-C, a hang-up and `timeout`'s SIGTERM reach the whole process group; the parent
    # alone decides what happens, and ends the workers itself.
    for signum in RUN_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, RUN_SIGNALS)
    _exit_with_parent()
    try:
        _worker = PipelineWorker(model, source, threshold, with_doc, batch_size)
    except Exception as err:
        # An initializer's error would only break the pool ("terminated abruptly")
        # and print a traceback: keep it, and give it to the parent with each chunk.
        _start_error = err


def _exit_with_parent() -> None:
    """End this worker when its parent process ends, however it ends."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        # The kernel's own guarantee, at once; SIGKILL, as the run's signals are ignored.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Everywhere: the pipe from the parent closes when it dies (and if it died before
    # the line above, only this notices).
    threading.Thread(target=_wait_for_parent, args=(parent,), daemon=True).start()
    if parent.pid is not None and os.getppid() != parent.pid:
        os._exit(1)


def _wait_for_parent(parent: Any) -> None:
    parent.join()
    os._exit(1)


def _ready() -> None:
    """A task that only makes the pool start a worker (and waits for its initializer)."""


def _annotate_chunk(chunk: List[Tuple[int, str]]) -> List[Tuple[int, Dict[str, Any]]]:
    if _start_error is not None:
        raise _start_error
    if _worker is None:
        raise RuntimeError("the worker process was not initialized")
    return _worker.records(chunk)
