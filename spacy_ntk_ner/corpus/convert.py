"""`convert`: stream BIO corpora into `OUTPUT_DIR/<split>/shard-NNNNN.spacy` files that
`spacy train` reads as a directory, and a `stats.json` report beside them, transactionally.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from .._fs import TMP_PREFIX, FolderLock, deferred_sigint
from ..errors import UserError
from .docbin import DocBinWriter
from .files import BIOError, PathLike, iter_files
from .grouping import DocRecord, iter_records
from .iob import IOB_B
from .options import ReadOptions
from .splits import assign_split, parse_split
from .stats import STATS, ConvertStats, SplitStats

# How many files not written by `convert` an error message names.
N_NAMED = 5


@dataclass(frozen=True)
class _ConvertRequest:
    """What one `convert` reads and how it shards it (see `convert`).

    inputs (Sequence[PathLike]): Files and directories.
    options (ReadOptions): How to read them.
    splits (List[Tuple[str, float]]): Split names and fractions; ("all", 1.0) for none.
    by_split (bool): Whether shards go into a folder per split.
    seed (int): Seed of the split.
    shard_size (int): At most this many Docs per shard.
    on_progress (Optional[Callable[[int], None]]): Called with bytes read.
    """

    inputs: Sequence[PathLike]
    options: ReadOptions
    splits: List[Tuple[str, float]]
    by_split: bool
    seed: int
    shard_size: int
    on_progress: Optional[Callable[[int], None]]


class _ShardWriter:
    """Writes a split's records in shards of at most `shard_size` Docs."""

    def __init__(
        self, root: Path, folder: str, shard_size: int, stats: SplitStats, outputs: List[str]
    ) -> None:
        self.root = root
        self.folder = folder
        self.shard_size = shard_size
        self.stats = stats
        self.outputs = outputs
        self.writer = DocBinWriter()

    def add(self, rec: DocRecord) -> None:
        self.writer.add(rec)
        st = self.stats
        st.docs += 1
        st.sentences += rec.n_sents
        st.tokens += len(rec.words)
        st.entities.update(compress(rec.labels, map(IOB_B.__eq__, rec.iob)))
        if len(self.writer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if len(self.writer):
            rel = f"{self.folder}shard-{self.stats.shards:05d}.spacy"
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            self.writer.to_disk(self.root / rel)
            self.outputs.append(rel)
            self.stats.shards += 1
            self.writer = DocBinWriter()


def convert(
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    options: ReadOptions = ReadOptions(),
    *,
    split: Optional[str] = None,
    seed: int = 0,
    shard_size: int = 10000,
    on_progress: Optional[Callable[[int], None]] = None,
    overwrite: bool = False,
) -> ConvertStats:
    """Convert BIO files and directories into sharded DocBin files and a report.

    Shards go to `output_dir/<split>/` (or `output_dir/` with no split). The run is
    transactional: it writes into a temporary folder inside `output_dir`, and only when
    every input has been read and every shard written does it replace what an earlier
    run wrote there (the files its `stats.json` lists). A failed or interrupted run
    leaves `output_dir` as it was. An `output_dir` holding files that `convert` did not
    write (other than this run's inputs) is refused, and two runs into one `output_dir`
    at once: the second is refused.

    inputs (Sequence[PathLike]): Files and directories.
    output_dir (PathLike): Where the shards and `stats.json` go.
    options (ReadOptions): How to read the input.
    split (Optional[str]): Such as `train=0.8,dev=0.1,test=0.1`; None writes one set.
    seed (int): Seed of the split.
    shard_size (int): At most this many Docs per shard.
    on_progress (Optional[Callable[[int], None]]): Called with bytes read.
    overwrite (bool): Start over: remove what an earlier run wrote before converting
        (so the disk needs room for one copy only); an interrupted run then leaves none.
    RETURNS (ConvertStats): The report.
    """
    if shard_size < 1:
        raise UserError(f"--shard-size must be at least 1, not {shard_size}")
    if options.n_sents < 0:
        raise UserError(f"--n-sents must be 0 or more, not {options.n_sents}")
    request = _ConvertRequest(
        inputs,
        options,
        parse_split(split) if split else [("all", 1.0)],
        bool(split),
        seed,
        shard_size,
        on_progress,
    )
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the output must be a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with FolderLock(out, "convert"):
            return _convert_locked(request, out, overwrite)
    except BaseException:
        if created:
            _rmdir_if_empty(out)
        raise


def _convert_locked(request: _ConvertRequest, out: Path, overwrite: bool) -> ConvertStats:
    for stale in out.glob(TMP_PREFIX + "*"):
        # Left by a run that was killed; the lock says no run is using it now.
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    previous = previous_outputs(out)
    _check_inputs(request.inputs, request.options.glob, previous)
    _refuse_foreign(out, previous, request.inputs, request.options.glob)
    if overwrite:
        _remove_outputs(out, previous)
        previous = set()
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out))
    try:
        stats = _write_shards(request, tmp, previous)
        if len(request.splits) > 1 and sum(s.docs for s in stats.splits.values()) == 1:
            raise UserError(
                "--split: the input is a single document (with --n-sents 0, a file without "
                "-DOCSTART- is one document); one document cannot be split"
            )
        (tmp / STATS).write_text(json.dumps(stats.to_dict(), indent=2) + "\n", "utf8")
        _commit(out, tmp, previous, stats.outputs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _write_shards(request: _ConvertRequest, tmp: Path, exclude: Set[Path]) -> ConvertStats:
    stats = ConvertStats()
    splits = request.splits
    shard_writers: Dict[str, _ShardWriter] = {}
    for name, _ in splits:
        stats.splits[name] = SplitStats()
        folder = f"{name}/" if request.by_split else ""
        shard_writers[name] = _ShardWriter(
            tmp, folder, request.shard_size, stats.splits[name], stats.outputs
        )

    def count_file(_: Path) -> None:
        stats.files += 1

    records = iter_records(
        request.inputs,
        request.options,
        stats.add_repair,
        request.on_progress,
        count_file,
        exclude,
        stats.add_dialect,
    )
    if len(splits) == 1:
        shard_writer = shard_writers[splits[0][0]]
        for rec in records:
            shard_writer.add(rec)
    else:
        for rec in records:
            shard_writers[assign_split(rec.key, splits, request.seed)].add(rec)
    for shard_writer in shard_writers.values():
        shard_writer.flush()
    return stats


def previous_outputs(out: Path) -> Set[Path]:
    """The files an earlier `convert` wrote into a folder, as its `stats.json` lists them.

    out (Path): The output folder.
    RETURNS (Set[Path]): Their resolved paths, `stats.json` included; empty if there is
        no `stats.json` of this command.
    """
    path = out / STATS
    try:
        report = json.loads(path.read_text("utf8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(report, dict) or not isinstance(report.get("splits"), dict):
        return set()
    names = report.get("outputs")
    if not isinstance(names, list):
        # Written before stats.json listed its shards: they follow from the counts.
        names = []
        for split, counts in report["splits"].items():
            n = counts.get("shards", 0) if isinstance(counts, dict) else 0
            for i in range(n if isinstance(n, int) else 0):
                names.append(f"{split}/shard-{i:05d}.spacy")
                if split == "all":
                    names.append(f"shard-{i:05d}.spacy")
    root = out.resolve()
    written = {path.resolve()}
    for name in names:
        p = (root / str(name)).resolve()
        # Only files inside the folder: a tampered list must not reach outside it.
        if p.is_file() and root in p.parents:
            written.add(p)
    return written


def _check_inputs(inputs: Sequence[PathLike], glob: str, previous: Set[Path]) -> None:
    for inp in inputs:
        p = Path(inp)
        if p.is_file() and p.resolve() in previous:
            raise BIOError(p, 0, "was written by an earlier convert into OUTPUT_DIR, not an input")
    for _ in iter_files(inputs, glob, previous):
        pass  # every input exists before anything is written


def _refuse_foreign(out: Path, previous: Set[Path], inputs: Sequence[PathLike], glob: str) -> None:
    root = out.resolve()
    allowed = set(previous)
    if any(root == Path(p).resolve() or root in Path(p).resolve().parents for p in inputs):
        allowed.update(p.resolve() for p, _ in iter_files(inputs, glob, previous))
    foreign: List[str] = []
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        for f in files:
            p = Path(folder, f)
            if p not in allowed and not (folder == str(root) and f.startswith(TMP_PREFIX)):
                foreign.append(p.relative_to(root).as_posix())
    if foreign:
        foreign.sort()
        named = ", ".join(foreign[:N_NAMED])
        more = f" and {len(foreign) - N_NAMED} more" if len(foreign) > N_NAMED else ""
        raise UserError(
            f"{out}: holds files that convert did not write ({named}{more}); "
            "convert into an empty or new folder, or move them away"
        )


def _remove_outputs(out: Path, files: Set[Path]) -> None:
    """Remove files an earlier run wrote, and the split folders they leave empty."""
    root = out.resolve()
    for p in sorted(files, key=lambda p: p.name == STATS):  # stats.json last
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        if p.parent != root:
            _rmdir_if_empty(p.parent)


def _commit(out: Path, tmp: Path, previous: Set[Path], written: List[str]) -> None:
    """Put the new shards and report in place of the earlier run's files."""
    root = out.resolve()
    with deferred_sigint():
        for rel in written:
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
        kept = {root / rel for rel in written} | {root / STATS}
        _remove_outputs(out, previous - kept)
        os.replace(tmp / STATS, root / STATS)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
