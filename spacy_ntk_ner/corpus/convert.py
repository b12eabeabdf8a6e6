"""`convert`: stream BIO corpora into `OUTPUT_DIR/<split>/shard-NNNNN.spacy` files that
`spacy train` reads as a directory, and a `stats.json` report beside them, transactionally.
"""

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from itertools import compress
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .._fs import TMP_PREFIX, FolderLock, deferred_sigint
from .._outputs import (
    MANIFEST,
    Manifest,
    Say,
    check_rerun,
    check_target,
    fingerprint,
    foreign_files,
    read_manifest,
    refuse_foreign,
    write_manifest,
)
from ..errors import UserError
from .docbin_writer import DocBinWriter
from .files import BIOError, PathLike, iter_files
from .grouping import DocRecord, iter_records
from .iob import IOB_B
from .options import ReadOptions
from .splits import assign_split, parse_split
from .stats import STATS, ConvertStats, SplitStats


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
    on_notice (Optional[Callable[[str], None]]): Where a notice goes (an upgraded record).
    """

    inputs: Sequence[PathLike]
    options: ReadOptions
    splits: List[Tuple[str, float]]
    by_split: bool
    seed: int
    shard_size: int
    on_progress: Optional[Callable[[int], None]]
    on_notice: Optional[Say] = None

    def settings(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): What shapes the output, as the manifest keeps it."""
        split = ",".join(f"{name}={frac}" for name, frac in self.splits) if self.by_split else None
        return {
            **asdict(self.options),
            "split": split,
            "seed": self.seed,
            "shard_size": self.shard_size,
        }


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
    on_notice: Optional[Say] = None,
) -> ConvertStats:
    """Convert BIO files and directories into sharded DocBin files and a report.

    Shards go to `output_dir/<split>/` (or `output_dir/` with no split). The run is
    transactional: it writes into a temporary folder inside `output_dir`, and only when
    every input has been read and every shard written does it replace what an earlier
    run wrote there (the files its `manifest.json` lists). A failed or interrupted run
    leaves `output_dir` as it was. An `output_dir` holding files that `convert` did not
    write (other than this run's inputs), an earlier corpus of other inputs or settings
    (without `overwrite`), a pipeline folder, and a second run into one `output_dir` at
    once are refused.

    inputs (Sequence[PathLike]): Files and directories.
    output_dir (PathLike): Where the shards and `stats.json` go.
    options (ReadOptions): How to read the input.
    split (Optional[str]): Such as `train=0.8,dev=0.1,test=0.1`; None writes one set.
    seed (int): Seed of the split.
    shard_size (int): At most this many Docs per shard.
    on_progress (Optional[Callable[[int], None]]): Called with bytes read.
    overwrite (bool): Start over: remove what an earlier run wrote before converting
        (so the disk needs room for one copy only); an interrupted run then leaves none.
        Without it, a folder holding a corpus of other inputs or settings is refused.
    on_notice (Optional[Callable[[str], None]]): Where a notice goes (an upgraded record).
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
        on_notice,
    )
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the output must be a directory")
    check_target(out, [Path(p) for p in inputs], inside_inputs=True, kind="folder")
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
    old = read_manifest(out, "convert", _legacy_manifest, request.on_notice or _quiet)
    previous = _resolved(out, old.files if old is not None else [])
    _check_inputs(request.inputs, request.options.glob, previous)
    files = [p for p, _ in iter_files(request.inputs, request.options.glob, previous)]
    _refuse_foreign(out, previous, files)
    # The inputs as given: a folder that gained files, or a file that was edited, makes
    # a new corpus of the same job; other files or folders make another one.
    new = Manifest("convert", fingerprint(map(Path, request.inputs)), request.settings())
    check_rerun(out, old, new, overwrite, contents=False)
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
        new.files = [*stats.outputs, STATS]
        write_manifest(tmp, new)
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


def _quiet(line: str) -> None:
    pass


def _resolved(out: Path, names: Sequence[str]) -> Set[Path]:
    root = out.resolve()
    written = {root / MANIFEST} if (root / MANIFEST).is_file() else set()
    for name in names:
        p = (root / str(name)).resolve()
        # Only files inside the folder: a tampered list must not reach outside it.
        if p.is_file() and root in p.parents:
            written.add(p)
    return written


def _legacy_manifest(out: Path) -> Optional[Manifest]:
    """The record of a `convert` before 0.3: the files its `stats.json` lists (or, before
    0.1.1, that follow from its counts); what it read was not recorded."""
    path = out / STATS
    try:
        report = json.loads(path.read_text("utf8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("splits"), dict):
        return None
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
    return Manifest("convert", None, None, [*map(str, names), STATS])


def _check_inputs(inputs: Sequence[PathLike], glob: str, previous: Set[Path]) -> None:
    for inp in inputs:
        p = Path(inp)
        if p.is_file() and p.resolve() in previous:
            raise BIOError(p, 0, "was written by an earlier convert into OUTPUT_DIR, not an input")
    for _ in iter_files(inputs, glob, previous):
        pass  # every input exists before anything is written


def _refuse_foreign(out: Path, previous: Set[Path], files: Sequence[Path]) -> None:
    # This run's inputs may lie in the output folder: they are not strangers there.
    root = out.resolve()
    allowed = [
        p.relative_to(root).as_posix()
        for p in {*previous, *(f.resolve() for f in files)}
        if root in p.parents
    ]
    refuse_foreign(out, foreign_files(out, allowed), "convert")


def _remove_outputs(out: Path, files: Set[Path]) -> None:
    """Remove files an earlier run wrote, and the split folders they leave empty."""
    root = out.resolve()
    # The record last: an interrupted removal leaves it listing what is still there.
    for p in sorted(files, key=lambda p: (p.name == STATS, p.name == MANIFEST)):
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
        kept = {root / rel for rel in written} | {root / STATS, root / MANIFEST}
        _remove_outputs(out, previous - kept)
        os.replace(tmp / STATS, root / STATS)
        os.replace(tmp / MANIFEST, root / MANIFEST)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
