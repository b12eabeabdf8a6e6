"""Read the documents to annotate: text lines, JSONL objects, DocBin files and BIO corpora.

Every document gets an id that says where it came from (`FILE:LINE` for a line,
`FILE#N` for the Nth Doc of a DocBin file) unless the input names it. Gzipped files
(`.gz`) read the same as plain ones. A line that cannot be read raises `BIOError`
(`FILE:LINE: what is wrong`), or with `on_error="skip"` is passed to a callback and
left out; nothing is dropped without being counted. A JSONL line that parses but could
not be written back (a lone surrogate, NaN or Infinity, or for DocBin output an
integer msgpack cannot hold or a list id) is such a line. Inputs are read twice (a
scan, then the annotation) and again to resume, so each must be a regular file.
"""

import json
import math
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ..corpus.files import (
    BIOError,
    PathLike,
    clip,
    decode_line,
    iter_files,
    numbered_lines,
    open_file,
)
from ..corpus.grouping import group_sentences
from ..corpus.iob import IOB_B, IOB_I
from ..corpus.reader import read_sentences
from ..errors import UserError

INPUT_FORMATS = ("auto", "txt", "jsonl", "spacy", "bio")
# The integers msgpack (a DocBin's user data) can hold.
_MSGPACK_INTS = (-(2**63), 2**64 - 1)
ON_ERROR = ("error", "skip")
_BY_SUFFIX = {".txt": "txt", ".jsonl": "jsonl", ".spacy": "spacy"}


@dataclass(frozen=True)
class InputOptions:
    """How to read the inputs.

    input_format (str): "auto" (by extension), "txt", "jsonl", "spacy" or "bio".
    text_key (str): The JSONL key holding the text.
    id_key (str): The JSONL key holding the id.
    glob (str): Which files to take under a directory.
    on_error (str): "error" stops at the first bad line, "skip" leaves it out and reports it.
    """

    input_format: str = "auto"
    text_key: str = "text"
    id_key: str = "id"
    glob: str = "*"
    on_error: str = "error"

    def to_dict(self) -> Dict[str, str]:
        """RETURNS (Dict[str, str]): The options, for the manifest."""
        return {
            "input_format": self.input_format,
            "text_key": self.text_key,
            "id_key": self.id_key,
            "glob": self.glob,
            "on_error": self.on_error,
        }


@dataclass
class Document:
    """One document to annotate.

    id (Any): Its id: `FILE:LINE`, `FILE#N`, or the JSONL object's own.
    text (str): Its text.
    meta (Dict[str, Any]): The JSONL object's other keys.
    gold_spans (Optional[List[Dict[str, Any]]]): A BIO document's own entities, as
        `{"start", "end", "label"}` character offsets into `text`.
    given_id (bool): Whether the input named the document (else its id is where it is,
        and cannot repeat).
    """

    id: Any
    text: str
    meta: Dict[str, Any] = field(default_factory=dict)
    gold_spans: Optional[List[Dict[str, Any]]] = None
    given_id: bool = False


def input_format(path: Path, chosen: str) -> str:
    """Decide how to read a file.

    path (Path): The file.
    chosen (str): The format asked for, or "auto" to go by the extension (after `.gz`).
    RETURNS (str): "txt", "jsonl", "spacy" or "bio".
    """
    if chosen != "auto":
        return chosen
    suffixes = path.suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _BY_SUFFIX.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise BIOError(
            path, 0, "unknown input format: name it .txt, .jsonl or .spacy, or use --input-format"
        )
    return fmt


def list_inputs(
    inputs: Sequence[PathLike], options: InputOptions, skip: Optional[Path] = None
) -> List[Tuple[Path, str]]:
    """List the files to read, each with its format, checking every one exists.

    inputs (Sequence[PathLike]): Files and directories.
    options (InputOptions): How to read them.
    skip (Optional[Path]): A folder whose files are not read under an input folder (the
        output folder, when it lies in one).
    RETURNS (List[Tuple[Path, str]]): The files and their formats, in reading order.
    """
    _check(options)
    exclude = set()
    if skip is not None and skip.is_dir():
        exclude = {f.resolve() for f in skip.rglob("*") if f.is_file()}
    files = []
    for path, _ in iter_files(inputs, options.glob, exclude):
        if not stat.S_ISREG(path.stat().st_mode):
            raise BIOError(
                path,
                0,
                "not a regular file (a pipe, FIFO or device): annotate reads its inputs "
                "twice, and again to resume; save it to a file first",
            )
        files.append((path, input_format(path, options.input_format)))
    return files


def iter_documents(
    files: Sequence[Tuple[Path, str]],
    options: InputOptions,
    on_skip: Optional[Callable[[str], None]] = None,
    docbin: bool = False,
) -> Iterator[Document]:
    """Stream the documents of the inputs, in order.

    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    options (InputOptions): How to read them.
    on_skip (Optional[Callable[[str], None]]): Called with `FILE:LINE: what is wrong` for
        each line left out under `on_error="skip"`.
    docbin (bool): Whether the documents are written as DocBin files, whose user data
        (the ids and meta) holds less than JSON does.
    YIELDS (Document): The documents.
    """
    skip = on_skip if on_skip is not None else (lambda _: None)
    for path, fmt in files:
        if fmt == "txt":
            yield from _read_txt(path, options.on_error, skip)
        elif fmt == "jsonl":
            yield from _read_jsonl(path, options, skip, docbin)
        elif fmt == "spacy":
            yield from _read_docbin(path)
        else:
            yield from _read_bio(path)


def _check(options: InputOptions) -> None:
    if options.input_format not in INPUT_FORMATS:
        raise UserError(
            f"--input-format must be one of {', '.join(INPUT_FORMATS)}, "
            f"not {options.input_format!r}"
        )
    if options.on_error not in ON_ERROR:
        raise UserError(
            f"--on-error must be one of {', '.join(ON_ERROR)}, not {options.on_error!r}"
        )


def _read_txt(path: Path, on_error: str, skip: Callable[[str], None]) -> Iterator[Document]:
    for lineno, raw in numbered_lines(path):
        try:
            text = decode_line(raw, str(path), lineno, allow_nul=True)
        except BIOError as problem:
            if on_error == "error":
                raise
            skip(str(problem))
            continue
        yield Document(f"{path}:{lineno}", text)


def _read_jsonl(
    path: Path, options: InputOptions, skip: Callable[[str], None], docbin: bool
) -> Iterator[Document]:
    for lineno, raw in numbered_lines(path):
        if not raw.strip():
            continue  # a blank line holds no object: there is nothing to lose
        try:
            doc = _parse_object(raw, path, lineno, options, docbin)
        except ValueError as err:
            problem = BIOError(path, lineno, str(err))
            if options.on_error == "error":
                raise problem from None
            skip(str(problem))
            continue
        yield doc


def _parse_object(
    raw: bytes, path: Path, lineno: int, options: InputOptions, docbin: bool
) -> Document:
    """Read one JSONL line; raises ValueError saying what is wrong with it."""
    try:
        line = decode_line(raw, str(path), lineno, allow_nul=True)
    except BIOError as err:
        raise UserError(err.message) from None
    try:
        obj = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise UserError(f"not JSON ({err.msg} at column {err.colno})") from None
    _check_writable(obj, docbin)
    if not isinstance(obj, dict):
        raise UserError(f"not a JSON object but {type(obj).__name__}")
    if options.text_key not in obj:
        raise UserError(f"no {options.text_key!r} key (--text-key)")
    text = obj.pop(options.text_key)
    if not isinstance(text, str):
        raise UserError(f"{options.text_key!r} is {type(text).__name__}, not a string")
    doc_id = obj.pop(options.id_key, None)
    if doc_id is None:
        return Document(f"{path}:{lineno}", text, obj)
    if docbin and _holds_list(doc_id):
        raise UserError(
            f"id {clip(json.dumps(doc_id))} holds a list, which a DocBin gives back as a "
            "tuple: use a string id or --output-format jsonl"
        )
    return Document(doc_id, text, obj, given_id=True)


def _no_constant(name: str) -> Any:
    raise UserError(f"{name} is not a JSON number (strict JSON readers refuse it)")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise UserError(f"{clip(literal)} is too large for a 64-bit float")
    return value


def _check_writable(value: Any, docbin: bool) -> None:
    """Refuse what parsed but cannot be written: a string holding a lone surrogate (not
    UTF-8), and for DocBin output an integer outside msgpack's range."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:
                code = ord(item[err.start])
                raise UserError(
                    f"lone surrogate \\u{code:04x} in the string {clip(repr(item), 60)}: "
                    "not writable as UTF-8"
                ) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif docbin and isinstance(item, int) and not isinstance(item, bool):
            low, high = _MSGPACK_INTS
            if not low <= item <= high:
                raise UserError(
                    f"integer {clip(str(item))} is outside what a DocBin holds "
                    f"({low} to {high}): use --output-format jsonl"
                )


def _holds_list(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(_holds_list(v) for v in value.values())


def _read_docbin(path: Path) -> Iterator[Document]:
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    with open_file(path) as fh:
        try:
            data = fh.read()
        except (OSError, EOFError) as err:
            raise BIOError(path, 0, f"cannot be read ({err})") from None
    try:
        docbin = DocBin().from_bytes(data)
    except Exception as err:  # zlib, msgpack and spaCy each raise their own kind
        raise BIOError(path, 0, f"not a DocBin file ({err})") from None
    for i, doc in enumerate(docbin.get_docs(Vocab())):
        yield Document(f"{path}#{i}", doc.text)


def _read_bio(path: Path) -> Iterator[Document]:
    """Read a BIO file through the converter: one document per sentence, with its
    reconstructed text and its entities as gold spans."""
    lines: Deque[int] = deque()

    def track(sentences: Iterator[Any]) -> Iterator[Any]:
        for sent in sentences:
            lines.append(sent.line)
            yield sent

    for rec in group_sentences(track(read_sentences(path)), 1, path.name, False):
        line = lines.popleft()
        for _ in range(rec.n_sents - 1):
            lines.popleft()
        text, starts = _join(rec.words, rec.spaces)
        meta = {"doc": rec.key} if rec.key else {}
        gold = _gold_spans(rec.iob, rec.labels, rec.words, starts)
        yield Document(f"{path}:{line}", text, meta, gold)


def _join(words: Sequence[str], spaces: Sequence[bool]) -> Tuple[str, List[int]]:
    starts = []
    parts = []
    pos = 0
    for word, space in zip(words, spaces):
        starts.append(pos)
        parts.append(word + " " if space else word)
        pos += len(word) + (1 if space else 0)
    return "".join(parts), starts


def _gold_spans(
    iob: Sequence[int], labels: Sequence[str], words: Sequence[str], starts: Sequence[int]
) -> List[Dict[str, Any]]:
    spans: List[Dict[str, Any]] = []
    for i, code in enumerate(iob):
        if code == IOB_B:
            spans.append({"start": starts[i], "end": starts[i] + len(words[i]), "label": labels[i]})
        elif code == IOB_I and spans:
            spans[-1]["end"] = starts[i] + len(words[i])
    return spans


def describe_inputs(files: Sequence[Tuple[Path, str]]) -> List[Dict[str, Any]]:
    """Fingerprint the inputs so a rerun can tell they are the same.

    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    RETURNS (List[Dict[str, Any]]): Path, format, size and modification time of each.
    """
    out = []
    for path, fmt in files:
        st = path.stat()
        out.append(
            {
                "path": str(path.resolve()),
                "format": fmt,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        )
    return out


@dataclass
class InputScan:
    """What a first pass over the inputs found, before anything is written.

    docs (int): Documents.
    chars (int): Characters of their texts.
    skipped (List[str]): `FILE:LINE: what is wrong` of each line left out.
    duplicate_ids (int): Documents whose (given) id an earlier one had.
    """

    docs: int = 0
    chars: int = 0
    skipped: List[str] = field(default_factory=list)
    duplicate_ids: int = 0


def scan_inputs(
    files: Sequence[Tuple[Path, str]],
    options: InputOptions,
    max_length: Optional[int] = None,
    docbin: bool = False,
    watch: Optional[Callable[[InputScan], None]] = None,
) -> InputScan:
    """Read every input once before anything is written: count the documents, find
    the bad lines (the first one raises unless `on_error="skip"`) and the repeated ids.

    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    options (InputOptions): How to read them.
    max_length (Optional[int]): The pipeline's `nlp.max_length`: a longer document is
        refused here, naming it, rather than failing in `nlp.pipe` (spaCy's E088).
    docbin (bool): Whether the documents are written as DocBin files.
    watch (Optional[Callable[[InputScan], None]]): Called with the scan so far after
        each document.
    RETURNS (InputScan): What the pass found.
    """
    scan = InputScan()
    seen: set = set()
    for doc in iter_documents(files, options, scan.skipped.append, docbin):
        scan.docs += 1
        scan.chars += len(doc.text)
        if watch is not None:
            watch(scan)
        if max_length is not None and len(doc.text) > max_length:
            name = f"document {doc.id!r}" if doc.given_id else str(doc.id)
            raise UserError(
                f"{name}: {len(doc.text):,} characters, more than the pipeline's "
                f"nlp.max_length ({max_length:,}): split the document"
            )
        if doc.given_id:
            # As JSON: 1, true and 1.0 are three ids (in Python 1 == True == 1.0).
            key = json.dumps(doc.id, sort_keys=True)
            if key in seen:
                scan.duplicate_ids += 1
            else:
                seen.add(key)
    return scan


class PendingDocuments:
    """The documents of the shards still to write: iterating streams their positions
    and texts to an engine, and `held` keeps each document until its output is written.

    files (Sequence[Tuple[Path, str]]): What `list_inputs` returned.
    options (InputOptions): How to read them.
    pending (Sequence[int]): The shards to write.
    shard_size (int): Documents per shard.
    docbin (bool): Whether the documents are written as DocBin files (as `scan_inputs`
        was told: the same lines are left out).
    """

    def __init__(
        self,
        files: Sequence[Tuple[Path, str]],
        options: InputOptions,
        pending: Sequence[int],
        shard_size: int,
        docbin: bool = False,
    ) -> None:
        self.files = files
        self.options = options
        self.pending = set(pending)
        self.shard_size = shard_size
        self.docbin = docbin
        self.held: Dict[int, Document] = {}

    def __iter__(self) -> Iterator[Tuple[int, str]]:
        documents = iter_documents(self.files, self.options, docbin=self.docbin)
        for pos, doc in enumerate(documents):
            if pos // self.shard_size in self.pending:
                self.held[pos] = doc
                yield pos, doc.text
