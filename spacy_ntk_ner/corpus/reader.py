"""Read token-per-line BIO files as sentences.

The reader understands the common dialects (WikiSER's `<s>`/`</s>` blocks,
blank-line CoNLL, `-DOCSTART-` documents, tab- or whitespace-separated columns
with the tag in any column) and the schemes IOB2, IOB1 and BIOES/BILOU. It
streams: one sentence is held at a time, and every problem is reported as
`FILE:LINE: what is wrong`. It imports no spaCy.
"""

import re
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Callable, Iterator, List, NoReturn, Optional, Sequence, Tuple

from .dialect import Dialect, detect_dialect, read_sample
from .files import BIOError, PathLike, clip, decode_line, open_file
from .options import DELIMITERS, FORMATS, ON_INVALID, SCHEMES, check_choice
from .repair import Repair, TagDecoder
from .syntax import (
    DOCSTART,
    LINE_BLANK,
    LINE_CLOSE,
    LINE_DOCSTART,
    LINE_OPEN,
    LINE_TOKEN,
    classify_line,
)

# How many bytes the reader takes at a time (then up to the end of a line).
CHUNK_BYTES = 1 << 18
# `<s>` blocks of rows that `_read_lines` reads alike, whatever the context: a token
# that starts with no whitespace, one tab, a tag. `\S` and `strip` agree on whitespace.
_PLAIN_BLOCKS = re.compile(r"(?:<s>\n(?:\S[^\t\n]*\t[^\t\n]+\n)*</s>\n)*")


@dataclass
class Sentence:
    """One parsed sentence.

    words (List[str]): The tokens, exactly as in the file.
    iob (List[int]): spaCy ENT_IOB codes (1 I, 2 O, 3 B), one per token.
    labels (List[str]): The entity label of each token ("" outside entities).
    path (str): The file.
    line (int): The line of its first token.
    doc_index (int): Which `-DOCSTART-` section of the file it is in (0 before any).
    marked (bool): Whether the file marked a document (`-DOCSTART-`) before it.
    """

    words: List[str]
    iob: List[int]
    labels: List[str]
    path: str
    line: int
    doc_index: int = 0
    marked: bool = False


def read_sentences(
    path: PathLike,
    *,
    block_format: str = "auto",
    delimiter: str = "auto",
    tag_column: Optional[int] = None,
    scheme: str = "auto",
    on_invalid: str = "repair",
    on_repair: Optional[Callable[[Repair], None]] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_dialect: Optional[Callable[[str, Dialect], None]] = None,
) -> Iterator[Sentence]:
    """Stream the sentences of one BIO file.

    path (PathLike): The file.
    block_format (str): "auto", "wikiser" or "conll".
    delimiter (str): "auto", "tab" or "space".
    tag_column (Optional[int]): 1-based tag column, or None to detect it.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    on_invalid (str): "repair" ill-formed tag sequences, or raise at the first ("error").
    on_repair (Optional[Callable[[Repair], None]]): Called for every repair.
    on_progress (Optional[Callable[[int], None]]): Called with the bytes read, now and then.
    on_dialect (Optional[Callable[[str, Dialect], None]]): Called with the file and how
        it is written, once detected.
    YIELDS (Sentence): The sentences, in order.
    """
    check_choice("format", block_format, FORMATS)
    check_choice("delimiter", delimiter, DELIMITERS)
    check_choice("scheme", scheme, SCHEMES)
    check_choice("on_invalid", on_invalid, ON_INVALID)
    spath = str(path)
    with open_file(path) as fh:
        dialect = detect_dialect(
            spath,
            read_sample(spath, fh),
            block_format=block_format,
            delimiter=delimiter,
            tag_column=tag_column,
            scheme=scheme,
        )
        if on_dialect is not None:
            on_dialect(spath, dialect)
        fh.seek(0)
        yield from _read_lines(spath, fh, dialect, on_invalid, on_repair, on_progress)


class _SentenceBuilder:
    """The state of a file being read: the sentence so far, the open `<s>` block, and
    which `-DOCSTART-` section it is in. Each `on_*` method takes one classified line and
    returns the sentence that line completes, if any.

    path (str): The file, for messages.
    dialect (Dialect): How the file is written.
    decoder (TagDecoder): Turns each sentence's tags into ENT_IOB codes and labels.
    """

    def __init__(self, path: str, dialect: Dialect, decoder: TagDecoder) -> None:
        self.path = path
        self.decoder = decoder
        self.wikiser = dialect.block_format == "wikiser"
        self.delim = dialect.delimiter
        self.col = dialect.tag_column
        # Columns a row needs: up to the tag column, and a token besides the tag.
        self.min_columns = max(self.col + 1 if self.col >= 0 else -self.col, 2)
        self.words: List[str] = []
        self.tags: List[str] = []
        self.lines: List[int] = []
        self.in_block = False
        self.block_line = 0  # the line of the open <s>
        self.doc_index = 0
        self.marked = False
        self.any_token = False  # whether a sentence was read (set by `flush`)

    def flush(self) -> Optional[Sentence]:
        """End the sentence so far. RETURNS (Optional[Sentence]): It, if it has tokens."""
        if not self.words:
            return None
        iob, labels = self.decoder.decode(self.tags, self.lines)
        self.any_token = True
        sent = Sentence(
            self.words, iob, labels, self.path, self.lines[0], self.doc_index, self.marked
        )
        self.words = []
        self.tags = []
        self.lines = []
        return sent

    def on_blank(self, lineno: int) -> Optional[Sentence]:
        """A blank line ends a sentence, but may not stand inside a block."""
        if self.in_block:
            raise BIOError(self.path, lineno, "blank line inside <s> ... </s>")
        return self.flush()

    def on_open(self, lineno: int) -> Optional[Sentence]:
        """`<s>` ends the sentence so far and opens a block."""
        if self.in_block:
            raise BIOError(
                self.path, self.block_line, f"<s> without </s> (another <s> at line {lineno})"
            )
        sent = self.flush()
        self.in_block = True
        self.block_line = lineno
        return sent

    def on_close(self, lineno: int) -> Optional[Sentence]:
        """`</s>` closes the open block and its sentence."""
        if not self.in_block:
            raise BIOError(self.path, lineno, "</s> without <s>")
        self.in_block = False
        return self.flush()

    def on_docstart(self, lineno: int) -> Optional[Sentence]:
        """`-DOCSTART-` ends the sentence so far and starts a document section."""
        if self.in_block:
            raise BIOError(self.path, lineno, f"{DOCSTART} inside <s> ... </s>")
        sent = self.flush()
        # A -DOCSTART- before the first token opens section 0, not 1.
        if self.any_token:
            self.doc_index += 1
        self.marked = True
        return sent

    def on_token(self, line: str, lineno: int) -> None:
        """A token row: split its columns, check them, and add its token to the sentence."""
        delim = self.delim
        # `syntax.split_columns`, written out: this runs once per token.
        if delim == "auto":
            parts = line.split("\t") if "\t" in line.strip() else line.split()
        else:
            parts = line.split(delim)
        if self.wikiser and not self.in_block:
            raise BIOError(self.path, lineno, "token outside <s> ... </s>")
        if len(parts) < self.min_columns:
            self._missing_tag(parts, lineno)
        word = parts[0]
        if not word.strip():
            raise BIOError(self.path, lineno, "empty token")
        tag = parts[self.col].strip()
        if not tag:
            raise BIOError(self.path, lineno, f"token {clip(word)!r} has an empty tag")
        self.words.append(word)
        self.tags.append(tag)
        self.lines.append(lineno)

    def _missing_tag(self, parts: Sequence[str], lineno: int) -> NoReturn:
        if len(parts) == 1:
            raise BIOError(self.path, lineno, f"token {clip(parts[0])!r} has no tag")
        raise BIOError(
            self.path,
            lineno,
            f"expected a tag in column {self.col + 1 if self.col >= 0 else self.col}, "
            f"found only {len(parts)} columns",
        )

    def on_end(self) -> Optional[Sentence]:
        """The file ended. RETURNS (Optional[Sentence]): The last sentence, if open."""
        if self.in_block:
            raise BIOError(self.path, self.block_line, "<s> without </s> (the file ends first)")
        return self.flush()


def _read_lines(
    path: str,
    fh: IO[bytes],
    dialect: Dialect,
    on_invalid: str,
    on_repair: Optional[Callable[[Repair], None]],
    on_progress: Optional[Callable[[int], None]],
) -> Iterator[Sentence]:
    """Read a file's lines in a dialect already detected: classify each, and let a
    `_SentenceBuilder` build the sentences (arguments as `read_sentences` takes them).

    The file is read a chunk of whole lines at a time. In a file of `<s>` blocks of two
    tab-separated columns, a chunk ends after its last `</s>` (the lines after it go
    with the next one), and a chunk that is all `_PLAIN_BLOCKS` is taken apart by
    string operations on the whole chunk; any other chunk is read line by line
    (`_step_lines`). The sentences, repairs and errors are those of reading every line
    on its own.
    """
    decoder = TagDecoder(path, dialect.scheme, on_invalid, on_repair or (lambda r: None))
    builder = _SentenceBuilder(path, dialect, decoder)
    by_block = _reads_by_block(dialect)
    lineno = 0  # the lines read so far
    carry = b""
    while True:
        data = fh.read(CHUNK_BYTES)
        if data and not data.endswith(b"\n"):
            data += fh.readline()
        if on_progress is not None and data:
            on_progress(len(data))
        if not data:
            break
        chunk = carry + data
        carry = b""
        plain = None
        if by_block:
            end = chunk.rfind(b"\n</s>\n") + 6
            if end > 6:
                chunk, carry = chunk[:end], chunk[end:]
            plain = _plain_blocks(builder, chunk)
        if plain is None:
            yield from _step_lines(builder, chunk, lineno)
        else:
            yield from _plain_sentences(builder, *plain, lineno)
        lineno += chunk.count(b"\n")
    yield from _step_lines(builder, carry, lineno)
    lineno += carry.count(b"\n") + (bool(carry) and not carry.endswith(b"\n"))
    sent = builder.on_end()
    if sent is not None:
        yield sent
    if not builder.any_token:
        raise BIOError(path, max(lineno, 1), "empty file: no tokens")


def _reads_by_block(dialect: Dialect) -> bool:
    """Whether `_read_lines` may take a file's chunks as blocks: `<s>` blocks of two
    tab-separated columns."""
    return (
        dialect.block_format == "wikiser"
        and dialect.delimiter in ("auto", "\t")
        and dialect.tag_column in (1, -1)
    )


def _step_lines(builder: "_SentenceBuilder", chunk: bytes, lineno: int) -> Iterator[Sentence]:
    """Read whole lines one by one; `lineno` lines came before."""
    on_marker = {
        LINE_BLANK: builder.on_blank,
        LINE_OPEN: builder.on_open,
        LINE_CLOSE: builder.on_close,
        LINE_DOCSTART: builder.on_docstart,
    }
    lines = chunk.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, lineno + 1):
        line = decode_line(raw, builder.path, number)
        if "\t" in line and line[0] not in " \t" and not line.startswith(DOCSTART):
            # What `classify_line` says of nearly every line of a tab-separated file,
            # without a call per line.
            kind = LINE_TOKEN
        else:
            kind = classify_line(line)
        if kind == LINE_TOKEN:
            builder.on_token(line, number)
            continue
        sent = on_marker[kind](number)
        if sent is not None:
            yield sent


def _plain_blocks(
    builder: "_SentenceBuilder", chunk: bytes
) -> Optional[Tuple[List[str], List[str], List[int]]]:
    """The tokens and tags of a chunk that is whole `_PLAIN_BLOCKS` read between two
    blocks, one block after the other, and the size of each block; None for any other
    chunk (it is then read line by line).
    """
    if builder.in_block or builder.words or b"\r" in chunk or b"\x00" in chunk:
        return None
    if b"-DOCSTART-" in chunk:
        return None
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _PLAIN_BLOCKS.fullmatch(text) is None:
        return None
    pieces = text.split("</s>\n")
    pieces.pop()
    sizes = []
    for piece in pieces:
        # A "</s>" closing a row's text (`a<tab>B-</s>`) split a row: not a block.
        if not piece.startswith("<s>\n") or not piece.endswith("\n"):
            return None
        sizes.append(piece.count("\n") - 1)
    flat = "".join([piece[4:] for piece in pieces]).replace("\n", "\t").split("\t")
    flat.pop()
    tags = flat[1::2]
    # A tag with whitespace around it reads stripped, line by line.
    if any(tag != tag.strip() for tag in set(tags)):
        return None
    return flat[0::2], tags, sizes


def _plain_sentences(
    builder: "_SentenceBuilder", words: List[str], tags: List[str], sizes: List[int], lineno: int
) -> Iterator[Sentence]:
    """The sentences of `_plain_blocks`, whose first line comes after `lineno` lines."""
    decoder = builder.decoder
    offsets = [0, *accumulate(sizes)]
    firsts = [tags[a] for a, b in zip(offsets, offsets[1:]) if b > a]
    well_formed = decoder.need_no_repair(tags, set(tags), firsts)
    first = lineno + 2  # the line of a block's first token
    for a, b in zip(offsets, offsets[1:]):
        if b > a:
            block = tags[a:b]
            if well_formed:
                iob, labels = decoder.decode_well_formed(block)
            else:
                iob, labels = decoder.decode(block, range(first, first + b - a))
            builder.any_token = True
            yield Sentence(
                words[a:b], iob, labels, builder.path, first, builder.doc_index, builder.marked
            )
        first += b - a + 2
