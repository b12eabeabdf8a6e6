"""Turn BIO corpora into spaCy Docs and sharded DocBin files.

`read_bio` yields `Doc` objects; `convert` streams whole corpora into
`OUTPUT_DIR/<split>/shard-NNNNN.spacy` files that `spacy train` reads as a
directory, and a `stats.json` report beside them.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Collection,
    DefaultDict,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from .._fs import TMP_PREFIX, FolderLock, deferred_sigint
from ..errors import UserError
from .bio import (
    IOB_B,
    BIOError,
    DocRecord,
    PathLike,
    Repair,
    group_sentences,
    iter_files,
    read_sentences,
)
from .docbin import ATTRS, DocBinWriter, token_columns

if TYPE_CHECKING:
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

# How many example locations the report keeps for each kind of repair.
N_EXAMPLES = 5
# The report `convert` writes; it also lists the shards it wrote, so that a later run
# replaces exactly those and leaves every other file alone.
STATS = "stats.json"
# How many files not written by `convert` an error message names.
N_NAMED = 5


@dataclass(frozen=True)
class ReadOptions:
    """How to read the input files (see `read_sentences`).

    format (str): "auto", "wikiser" or "conll".
    delimiter (str): "auto", "tab" or "space".
    tag_column (Optional[int]): 1-based tag column, or None to detect it.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    on_invalid (str): "repair" or "error".
    glob (str): Which files to take under a directory.
    n_sents (int): Sentences per Doc (0: one Doc per document).
    plain_spaces (bool): One space between every two tokens instead of reconstructed spacing.
    """

    format: str = "auto"
    delimiter: str = "auto"
    tag_column: Optional[int] = None
    scheme: str = "auto"
    on_invalid: str = "repair"
    glob: str = "*"
    n_sents: int = 1
    plain_spaces: bool = False


@dataclass
class SplitStats:
    """Counts for one split.

    docs (int): Docs written.
    sentences (int): Sentences.
    tokens (int): Tokens.
    entities (Counter): Entities per label.
    shards (int): Files written.
    """

    docs: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    shards: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "docs": self.docs,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "entities": dict(sorted(self.entities.items())),
            "shards": self.shards,
        }


@dataclass
class ConvertStats:
    """What `convert` read and wrote.

    files (int): Input files read.
    splits (Dict[str, SplitStats]): Counts per split.
    repairs (Counter): Repaired tags per kind.
    repair_examples (Dict[str, List[str]]): The first `FILE:LINE: message`s of each kind.
    outputs (List[str]): The shards written, relative to the output folder.
    """

    files: int = 0
    splits: Dict[str, SplitStats] = field(default_factory=dict)
    repairs: Counter = field(default_factory=Counter)
    repair_examples: DefaultDict[str, List[str]] = field(default_factory=lambda: defaultdict(list))
    outputs: List[str] = field(default_factory=list)

    def add_repair(self, repair: Repair) -> None:
        self.repairs[repair.kind] += 1
        examples = self.repair_examples[repair.kind]
        if len(examples) < N_EXAMPLES:
            examples.append(f"{repair.path}:{repair.line}: {repair.message}")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "files": self.files,
            "splits": {name: s.to_dict() for name, s in self.splits.items()},
            "repairs": {
                kind: {"count": n, "examples": self.repair_examples[kind]}
                for kind, n in sorted(self.repairs.items())
            },
            "outputs": list(self.outputs),
        }


def parse_split(spec: str) -> List[Tuple[str, float]]:
    """Parse a split such as `train=0.8,dev=0.1,test=0.1`.

    spec (str): Comma-separated `name=fraction` pairs that add up to 1.
    RETURNS (List[Tuple[str, float]]): The names and fractions, in order.
    """
    parts = []
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"--split: {item!r} is not NAME=FRACTION")
        if not 0 < frac <= 1:
            raise UserError(f"--split: the fraction of {name!r} must be in (0, 1], not {value!r}")
        parts.append((name, frac))
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise UserError(f"--split: a name appears twice in {spec!r}")
    total = sum(f for _, f in parts)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"--split: the fractions add up to {total:g}, not 1")
    return parts


def assign_split(key: str, splits: Sequence[Tuple[str, float]], seed: int) -> str:
    """Pick a document's split from a hash of its key, so it never depends on other documents.

    key (str): Names the document.
    splits (Sequence[Tuple[str, float]]): The split names and fractions.
    seed (int): Changes the assignment.
    RETURNS (str): The split's name.
    """
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    acc = 0.0
    for name, frac in splits:
        acc += frac
        if u < acc:
            return name
    return splits[-1][0]


def iter_records(
    inputs: Sequence[PathLike],
    options: ReadOptions = ReadOptions(),
    on_repair: Optional[Callable[[Repair], None]] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_file: Optional[Callable[[Path], None]] = None,
    exclude: Collection[Path] = frozenset(),
) -> Iterator[DocRecord]:
    """Stream Doc records from files and directories, each keyed by its document.

    inputs (Sequence[PathLike]): Files and directories.
    options (ReadOptions): How to read them.
    on_repair (Optional[Callable[[Repair], None]]): Called for every repaired tag.
    on_progress (Optional[Callable[[int], None]]): Called with bytes read.
    on_file (Optional[Callable[[Path], None]]): Called as each file is opened.
    exclude (Collection[Path]): Resolved paths of files to skip under a directory.
    YIELDS (DocRecord): The records.
    """
    if options.n_sents < 0:
        raise UserError(f"--n-sents must be 0 or more, not {options.n_sents}")
    for path, rel in iter_files(inputs, options.glob, exclude):
        if on_file is not None:
            on_file(path)
        sentences = read_sentences(
            path,
            format=options.format,
            delimiter=options.delimiter,
            tag_column=options.tag_column,
            scheme=options.scheme,
            on_invalid=options.on_invalid,
            on_repair=on_repair,
            on_progress=on_progress,
        )
        key = rel or path.name
        for rec in group_sentences(
            sentences, options.n_sents, key, bool(rel), options.plain_spaces
        ):
            if not rec.key:
                rec.key = "\n".join(rec.words)
            yield rec


def read_bio(
    path: PathLike,
    vocab: Optional["Vocab"] = None,
    options: ReadOptions = ReadOptions(),
    on_repair: Optional[Callable[[Repair], None]] = None,
) -> Iterator["Doc"]:
    """Read a BIO file or directory as spaCy Docs with entities and sentence starts.

    path (PathLike): A file or a directory.
    vocab (Optional[Vocab]): The vocab for the Docs; a new one if None.
    options (ReadOptions): How to read it.
    on_repair (Optional[Callable[[Repair], None]]): Called for every repaired tag.
    YIELDS (Doc): The Docs.
    """
    from spacy.vocab import Vocab

    vocab = vocab if vocab is not None else Vocab()
    for rec in iter_records([path], options, on_repair):
        yield record_to_doc(rec, vocab)


def record_to_doc(rec: DocRecord, vocab: "Vocab") -> "Doc":
    """Build a Doc from a record.

    rec (DocRecord): The record.
    vocab (Vocab): The vocab.
    RETURNS (Doc): The Doc.
    """
    from spacy.tokens import Doc

    doc = Doc(vocab, words=rec.words, spaces=rec.spaces)
    add = vocab.strings.add

    def string_id(s: str) -> int:
        return add(s) if s else 0

    columns = token_columns(rec.words, rec.labels, rec.iob, rec.sent_starts, string_id)
    return doc.from_array(ATTRS, columns)  # type: ignore[arg-type]


class _ShardSink:
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
    splits = parse_split(split) if split else [("all", 1.0)]
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the output must be a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with FolderLock(out, "convert"):
            return _convert_locked(
                inputs, out, options, splits, bool(split), seed, shard_size, on_progress, overwrite
            )
    except BaseException:
        if created:
            _rmdir_if_empty(out)
        raise


def _convert_locked(
    inputs: Sequence[PathLike],
    out: Path,
    options: ReadOptions,
    splits: List[Tuple[str, float]],
    by_split: bool,
    seed: int,
    shard_size: int,
    on_progress: Optional[Callable[[int], None]],
    overwrite: bool,
) -> ConvertStats:
    for stale in out.glob(TMP_PREFIX + "*"):
        # Left by a run that was killed; the lock says no run is using it now.
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    previous = previous_outputs(out)
    _check_inputs(inputs, options.glob, previous)
    _refuse_foreign(out, previous, inputs, options.glob)
    if overwrite:
        _remove_outputs(out, previous)
        previous = set()
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out))
    try:
        stats = _write_shards(
            inputs, tmp, options, splits, by_split, seed, shard_size, on_progress, previous
        )
        if len(splits) > 1 and sum(s.docs for s in stats.splits.values()) == 1:
            raise UserError(
                "--split: the input is a single document (with --n-sents 0, a file without "
                "-DOCSTART- is one document); one document cannot be split"
            )
        (tmp / STATS).write_text(json.dumps(stats.to_dict(), indent=2) + "\n", "utf8")
        _commit(out, tmp, previous, stats.outputs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def _write_shards(
    inputs: Sequence[PathLike],
    tmp: Path,
    options: ReadOptions,
    splits: List[Tuple[str, float]],
    by_split: bool,
    seed: int,
    shard_size: int,
    on_progress: Optional[Callable[[int], None]],
    exclude: Set[Path],
) -> ConvertStats:
    stats = ConvertStats()
    sinks: Dict[str, _ShardSink] = {}
    for name, _ in splits:
        stats.splits[name] = SplitStats()
        folder = f"{name}/" if by_split else ""
        sinks[name] = _ShardSink(tmp, folder, shard_size, stats.splits[name], stats.outputs)

    def count_file(_: Path) -> None:
        stats.files += 1

    records = iter_records(inputs, options, stats.add_repair, on_progress, count_file, exclude)
    if len(splits) == 1:
        sink = sinks[splits[0][0]]
        for rec in records:
            sink.add(rec)
    else:
        for rec in records:
            sinks[assign_split(rec.key, splits, seed)].add(rec)
    for sink in sinks.values():
        sink.flush()
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
    found = {path.resolve()}
    for name in names:
        p = (root / str(name)).resolve()
        # Only files inside the folder: a tampered list must not reach outside it.
        if p.is_file() and root in p.parents:
            found.add(p)
    return found


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


def format_convert_report(stats: Dict[str, Any], output_dir: Path) -> str:
    """Lay out `stats.json` as tables.

    stats (Dict[str, Any]): What `ConvertStats.to_dict` returns.
    output_dir (Path): Where the shards were written.
    RETURNS (str): The report.
    """
    splits: Dict[str, Dict[str, Any]] = stats["splits"]
    names = list(splits)
    rows: List[Tuple[str, ...]] = [("", *names)]
    for key in ("docs", "sentences", "tokens", "shards"):
        rows.append((key, *(f"{splits[n][key]:,}" for n in names)))
    labels = sorted({label for s in splits.values() for label in s["entities"]})
    rows.append(("entities", *(f"{sum(splits[n]['entities'].values()):,}" for n in names)))
    for label in labels:
        rows.append((f"  {label}", *(f"{splits[n]['entities'].get(label, 0):,}" for n in names)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"Converted {stats['files']} file(s) into {output_dir}"]
    for r in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths))
            )
        )
    repairs = stats["repairs"]
    if repairs:
        total = sum(r["count"] for r in repairs.values())
        lines.append(f"Repaired {total:,} ill-formed tag(s):")
        for kind, r in repairs.items():
            lines.append(f"  {r['count']:>8,}  {kind}")
            lines.extend(f"            {ex}" for ex in r["examples"])
    else:
        lines.append("No ill-formed tags.")
    lines.append(f"Report: {output_dir / 'stats.json'}")
    return "\n".join(lines)
