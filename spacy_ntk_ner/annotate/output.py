"""The output folder of `annotate`: who owns it, its manifest, and its shards.

A shard is always the same run of input documents, written under a temporary name
and renamed when complete, so a rerun skips the shards already there and makes the
rest. `manifest.json` records the model, the inputs and the settings, and a rerun
with other ones is refused rather than mixed in. Only files this command wrote are
ever removed (`overwrite`), and a folder holding anything else is refused. An `flock`
on `.annotate.lock` keeps a second run out while one is writing.
"""

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .. import __version__
from .._fs import TMP_PREFIX, FolderLock
from .._outputs import (
    MANIFEST,
    TOOL,
    Manifest,
    foreign_files,
    refuse_foreign,
    remove_listed,
    write_text,
)
from .._outputs import read_manifest as read_output_manifest
from ..errors import UserError
from .inputs import Document, describe_inputs
from .options import AnnotateOptions, Settings
from .records import Record, SpanSource

REPORT = "report.json"
LOCK = ".annotate.lock"
# What `tool` said in the manifests of versions before 0.3.
LEGACY_TOOL = "spacy_ntk_ner annotate"
_SUFFIX = {"jsonl": ".jsonl", "docbin": ".spacy"}

Progress = Callable[[int, int], None]


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


def new_manifest(
    fingerprint: Dict[str, Any],
    files: Sequence[Tuple[Path, str]],
    options: AnnotateOptions,
    source: SpanSource,
    n_docs: int,
) -> Dict[str, Any]:
    """The manifest of a run that has written nothing yet.

    fingerprint (Dict[str, Any]): The model's `model_fingerprint`.
    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    options (AnnotateOptions): The job's options.
    source (SpanSource): Where the pipeline puts its entities.
    n_docs (int): Documents in the inputs.
    RETURNS (Dict[str, Any]): The manifest, without shards.
    """
    settings = options.settings
    return {
        "tool": TOOL,
        "command": "annotate",
        "version": __version__,
        "model": fingerprint,
        "inputs": describe_inputs(files),
        "settings": {
            **options.input_options.to_dict(),
            "shard_size": settings.shard_size,
            "threshold": settings.threshold,
            "output_format": settings.output_format,
            "component": source.component,
            "spans_key": source.spans_key,
        },
        "documents": n_docs,
        "shards": {},
    }


def lock_output_folder(out: Path) -> FolderLock:
    """Make the output folder (refusing one with files this command did not write) and
    return the lock that keeps a second run out of it.

    out (Path): The output folder.
    RETURNS (FolderLock): The lock, to hold in a `with` block.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the output must be a folder")
    if out.is_dir():
        _refuse_foreign(out, read_manifest(out))  # before the lock file is added to it
    out.mkdir(parents=True, exist_ok=True)
    return FolderLock(out, "annotate run", LOCK)


def _written_by(manifest: Optional[Dict[str, Any]]) -> List[str]:
    """What the run of `manifest` may have left in its folder: the files it lists, the
    report, and its shards and their temporary names (a run killed between writing a
    shard and listing it leaves the shard unlisted; a version before 0.3 named its
    temporary files `.NAME.tmp`)."""
    if manifest is None:
        return []
    names = [*(manifest.get("files") or []), REPORT]
    settings = manifest.get("settings") or {}
    size, fmt = settings.get("shard_size"), settings.get("output_format")
    n_docs = manifest.get("documents")
    if isinstance(size, int) and size > 0 and fmt in _SUFFIX and isinstance(n_docs, int):
        names += [shard_name(i, fmt) for i in range(-(-n_docs // size))]
    return names + [f".{name}.tmp" for name in [*names, MANIFEST, REPORT]]


def _refuse_foreign(out: Path, old: Optional[Dict[str, Any]]) -> None:
    refuse_foreign(out, foreign_files(out, _written_by(old), keep=[LOCK]), "annotate")


def prepare_output(out: Path, manifest: Dict[str, Any], overwrite: bool) -> Dict[str, Any]:
    """Check the output folder holds only what an earlier run of this command wrote, with
    the same model, inputs and settings; start over with `overwrite`.

    out (Path): The output folder, locked.
    manifest (Dict[str, Any]): This run's manifest (`new_manifest`).
    overwrite (bool): Remove what an earlier run wrote.
    RETURNS (Dict[str, Any]): The manifest to go on with (the earlier one when resuming).
    """
    old = read_manifest(out, say=lambda line: print(line, file=sys.stderr))
    _refuse_foreign(out, old)
    written = _written_by(old)
    if old is not None and overwrite:
        remove_listed(out, written)
        old = None
    elif old is not None:
        _check_same(out, old, manifest)
        manifest["shards"] = old.get("shards", {})
    # Left by an interrupted run of this command.
    remove_listed(out, [n for n in written if n.startswith(".")])
    for stale in out.glob(TMP_PREFIX + "*"):
        stale.unlink()
    write_manifest(out, manifest)
    return manifest


def read_manifest(
    out: Path, say: Callable[[str], None] = lambda line: None
) -> Optional[Dict[str, Any]]:
    """Read the manifest of an output folder (see `_outputs`), or one of a version
    before 0.3, saying (`say`) that it is upgraded.

    out (Path): The output folder.
    say (Callable[[str], None]): Where the upgrade notice goes.
    RETURNS (Optional[Dict[str, Any]]): Its manifest, or None if it has none."""
    manifest = read_output_manifest(out, "annotate", _legacy_manifest, say)
    return None if manifest is None else manifest.to_dict()


def _legacy_manifest(out: Path) -> Optional[Manifest]:
    try:
        data = json.loads((out / MANIFEST).read_text("utf8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("tool") != LEGACY_TOOL:
        return None
    # It listed no files: its shards are those it records.
    shards = data.get("shards")
    files = [*map(str, shards)] if isinstance(shards, dict) else []
    return Manifest.from_dict({**data, "command": "annotate", "files": files})


def write_manifest(out: Path, manifest: Dict[str, Any]) -> None:
    """Write the manifest, listing the files written so far (`_outputs` format)."""
    written = sorted(manifest.get("shards", {}))
    manifest["files"] = sorted(written + ([REPORT] if (out / REPORT).is_file() else []))
    write_json(out / MANIFEST, manifest)


def _check_same(out: Path, old: Dict[str, Any], new: Dict[str, Any]) -> None:
    differ = []
    if old.get("model") != new["model"]:
        differ.append("another model")
    differ += Manifest.from_dict(old).differences(Manifest.from_dict(new))
    if differ:
        raise UserError(
            f"{out}: an earlier run wrote it with {'; '.join(differ)}: rerun as it was to "
            "resume, add --overwrite to start over, or use another folder"
        )


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Write a JSON file under a temporary name and rename it into place.

    path (Path): The file.
    data (Dict[str, Any]): What it holds.
    """
    write_text(path, json.dumps(data, indent=2) + "\n")


def shard_name(index: int, output_format: str) -> str:
    """index (int): The shard's number. output_format (str): "jsonl" or "docbin".
    RETURNS (str): The shard's file name."""
    return f"shard-{index:05d}{_SUFFIX[output_format]}"


def pending_shards(
    out: Path, manifest: Dict[str, Any], n_docs: int, settings: Settings
) -> List[int]:
    """The shards still to write, forgetting in the manifest those whose file is gone.

    out (Path): The output folder.
    manifest (Dict[str, Any]): The manifest to go on with.
    n_docs (int): Documents in the inputs.
    settings (Settings): The output's settings.
    RETURNS (List[int]): The shards' numbers, in order.
    """
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


class ShardWriter:
    """Writes records into shards in input order, and counts what it wrote.

    out (Path): The output folder.
    manifest (Dict[str, Any]): The manifest, updated as each shard is complete.
    settings (Settings): The output's settings.
    on_progress (Optional[Callable[[int, int], None]]): Called with the documents and
        words of each document written.
    """

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
        self.shards_written = 0
        self.words_written = 0

    def write(
        self, records: Iterable[Record], held: Dict[int, Document], pending: Sequence[int]
    ) -> None:
        """Write the pending shards.

        records (Iterable[Tuple[int, Dict[str, Any]]]): Each position and its record, in
            any order.
        held (Dict[int, Document]): The documents read, by position; each is removed once
            written.
        pending (Sequence[int]): The shards to write, in order.
        """
        size = self.settings.shard_size
        n_docs = self.manifest["documents"]
        waiting: Dict[int, Dict[str, Any]] = {}
        stream = iter(records)
        for index in pending:
            shard = _ShardFile(self.out, index, self.settings.output_format)
            try:
                for pos in range(index * size, min((index + 1) * size, n_docs)):
                    while pos not in waiting:
                        record = next(stream, None)
                        if record is None:
                            raise UserError("the inputs changed while they were read")
                        waiting[record[0]] = record[1]
                    fields = waiting.pop(pos)
                    shard.add(held.pop(pos), fields)
                    if self.on_progress is not None:
                        self.on_progress(1, fields["words"])
                shard.close()
            finally:
                shard.discard()
            self.manifest["shards"][shard.path.name] = shard.stats.to_dict()
            write_manifest(self.out, self.manifest)
            self.shards_written += 1
            self.words_written += shard.stats.words


class _ShardFile:
    """One shard, written under a temporary name and renamed when complete."""

    def __init__(self, out: Path, index: int, output_format: str) -> None:
        self.path = out / shard_name(index, output_format)
        self.tmp = out / f"{TMP_PREFIX}{self.path.name}"
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
            self.fh.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
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
        # Synced before the rename, as _fs.atomic_file does: after a crash of the
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

    restored = Doc(Vocab()).from_bytes(data)
    restored.user_data["id"] = doc.id
    restored.user_data["meta"] = doc.meta
    if doc.gold_spans is not None:
        restored.user_data["gold_spans"] = doc.gold_spans
    return restored
