"""Read and write token-per-line BIO corpora.

The reader understands the common dialects (WikiSER's `<s>`/`</s>` blocks,
blank-line CoNLL, `-DOCSTART-` documents, tab- or whitespace-separated columns
with the tag in any column) and the schemes IOB2, IOB1 and BIOES/BILOU. It
streams: one sentence is held at a time, and every problem is reported as
`FILE:LINE: what is wrong`.

This module imports no part of spaCy that builds a `Language`, so the converter
starts fast.
"""

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    IO,
    Callable,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

from ..errors import UserError
from .iob import IOB_B, IOB_I, IOB_O

FORMATS = ("auto", "wikiser", "conll")
SCHEMES = ("auto", "iob2", "iob1", "bioes")
DELIMITERS = ("auto", "tab", "space")
ON_INVALID = ("repair", "error")

DOCSTART = "-DOCSTART-"
# How many lines detection looks at before it decides.
SAMPLE_LINES = 2000
# Prefixes are read in either case: `b-Language` is `B-Language`, `o` is `O`.
_TAG_RE = re.compile(r"^([Oo]|[BIESLUbieslu]-\S.*)$")
_PREFIXES = frozenset("BIESLUbieslu")
# The scheme a file's tags show least may be at most this share of the other's evidence;
# closer than that, detection stops and names lines of both.
SCHEME_MINORITY = 0.1
# Tokens and tags longer than this are shortened in messages.
MAX_ECHO = 200
# What a token or label written as BIO text must not hold: it would break the columns.
_UNWRITABLE = re.compile(r"[\t\n\r\x00]")

PathLike = Union[str, Path]


class BIOError(UserError):
    """An input problem, located at a file and line.

    path (str): The file.
    line (int): The 1-based line number, 0 when the problem is the whole file.
    message (str): What is wrong.
    """

    def __init__(self, path: PathLike, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Dialect:
    """How one file is written.

    format (str): "wikiser" (`<s>`/`</s>` blocks) or "conll" (blank lines).
    delimiter (Optional[str]): "\\t", None for any run of whitespace, or "auto": a tab
        on lines that hold one, else any run of whitespace.
    tag_column (int): 0-based index of the tag column (negative counts from the end).
    scheme (str): "iob2", "iob1" or "bioes".
    n_columns (int): Columns seen in the sample (for messages).
    """

    format: str
    delimiter: Optional[str]
    tag_column: int
    scheme: str
    n_columns: int = 2


@dataclass
class Repair:
    """One repaired tag.

    path (str): The file.
    line (int): The line of the tag.
    kind (str): A short, stable description used to count repairs.
    message (str): What was wrong and what was done.
    """

    path: str
    line: int
    kind: str
    message: str


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


@dataclass
class DocRecord:
    """The annotation of one output Doc, in the plain lists the writers need.

    words (List[str]): Tokens.
    spaces (List[bool]): Whether each token is followed by a space.
    iob (List[int]): ENT_IOB codes.
    labels (List[str]): Entity labels ("" outside).
    sent_starts (List[int]): 1 where a sentence starts, -1 elsewhere.
    key (str): Identifies the document the Doc came from, for splitting.
    n_sents (int): Number of sentences.
    """

    words: List[str] = field(default_factory=list)
    spaces: List[bool] = field(default_factory=list)
    iob: List[int] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    sent_starts: List[int] = field(default_factory=list)
    key: str = ""
    n_sents: int = 0


# Tokens that attach to the token before them, and tokens the next one attaches to.
_NO_SPACE_BEFORE = frozenset(
    ". , ; : ! ? ) ] } % ... … 's 'S n't N'T 're 've 'll 'd 'm ' '' ”".split()
)
_NO_SPACE_AFTER = frozenset("( [ { $ # “ ``".split())


def space_after(words: Sequence[str]) -> List[bool]:
    """Reconstruct the spacing of a tokenized sentence, as written text would have it.

    No space goes before closing punctuation and clitics (`,` `.` `)` `'s` `n't`), none
    after opening brackets, and straight double quotes alternate between opening
    and closing. The last token gets a space, so sentences joined into one Doc read
    as text; the caller clears it at the end of a Doc.

    words (Sequence[str]): The tokens of one sentence.
    RETURNS (List[bool]): Whether each token is followed by a space.
    """
    n = len(words)
    spaces = [True] * n
    open_quote = False
    for i, word in enumerate(words):
        if word == '"':
            # An opening quote takes no space after it, a closing one none before.
            if open_quote:
                if i > 0:
                    spaces[i - 1] = False
            elif i + 1 < n:
                spaces[i] = False
            open_quote = not open_quote
            continue
        if word in _NO_SPACE_BEFORE and i > 0 and words[i - 1] not in _NO_SPACE_AFTER:
            spaces[i - 1] = False
        if word in _NO_SPACE_AFTER and i + 1 < n:
            spaces[i] = False
    return spaces


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """Shorten what a message echoes.

    text (str): A token, tag or line.
    limit (int): The most characters kept.
    RETURNS (str): `text`, or its start and how long it is.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _split_tag(tag: str) -> Tuple[str, str]:
    """Split a tag into its prefix (upper case) and label: `b-Foo_Bar` -> (`B`, `Foo_Bar`);
    an unknown prefix gives ("", tag)."""
    if tag == "O" or tag == "o":
        return "O", ""
    if tag[:1] in _PREFIXES and (len(tag) == 1 or tag[1] in "-_"):
        return tag[0].upper(), tag[2:]
    return "", tag


def _split_columns(line: str, delim: Optional[str]) -> List[str]:
    if delim == "auto":
        return line.split("\t" if "\t" in line.strip() else None)
    return line.split(delim)


def token_problem(word: str) -> Optional[str]:
    """Say why a token cannot be written as a line of BIO text that reads back the same.

    word (str): The token.
    RETURNS (Optional[str]): What is wrong, or None.
    """
    if not word.strip():
        return f"the whitespace token {word!r} cannot be written as a BIO line"
    if _UNWRITABLE.search(word):
        return f"token {clip(word)!r} holds a tab, line break or NUL, which would split its line"
    if word.startswith(DOCSTART) and _is_docstart(word):
        return f"token {clip(word)!r} would be read back as a {DOCSTART} line"
    if word.startswith("\ufeff"):
        return f"token {clip(word)!r} starts with a byte order mark"
    return None


def label_problem(label: str) -> Optional[str]:
    """Say why an entity label cannot be written in a BIO tag that reads back the same.

    label (str): The label.
    RETURNS (Optional[str]): What is wrong, or None.
    """
    if _UNWRITABLE.search(label) or label != label.strip():
        return f"label {clip(label)!r} holds a tab, line break, NUL or outer whitespace"
    return None


def _looks_like_tag(value: str) -> bool:
    return bool(_TAG_RE.match(value))


def _decode_line(raw: bytes, path: str, lineno: int) -> str:
    if b"\x00" in raw:
        raise BIOError(path, lineno, "NUL byte in line (is this a binary file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BIOError(
            path,
            lineno,
            f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})",
        ) from None
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


def _check_line_ends(path: str, first: str) -> None:
    # A file with CR-only line ends reads as one line holding every CR.
    if "\r" in first.strip():
        raise BIOError(
            path, 0, "lines end with CR only (old Mac line ends); convert them to LF first"
        )


def _sample(path: str, fh: IO[bytes]) -> List[str]:
    lines = []
    for lineno, raw in enumerate(fh, 1):
        lines.append(_decode_line(raw, path, lineno))
        if lineno >= SAMPLE_LINES:
            break
    if len(lines) == 1:
        _check_line_ends(path, lines[0])
    return lines


def _column_names(indexes: Iterable[int]) -> str:
    return ", ".join(str(i + 1) for i in indexes)


def detect_dialect(
    path: PathLike,
    lines: Sequence[str],
    *,
    format: str = "auto",
    delimiter: str = "auto",
    tag_column: Optional[int] = None,
    scheme: str = "auto",
) -> Dialect:
    """Work out how a file is written from its first lines.

    path (PathLike): The file, for messages.
    lines (Sequence[str]): Its first lines, decoded, without line ends.
    format (str): "auto", "wikiser" or "conll".
    delimiter (str): "auto", "tab" or "space".
    tag_column (Optional[int]): 1-based tag column (negative: from the end), None to detect.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    RETURNS (Dialect): The dialect.
    """
    path = str(path)
    content = [ln for ln in lines if ln.strip()]
    if not content:
        raise BIOError(path, 1, "empty file: no tokens")
    if format == "auto":
        format = _detect_format(content)
    delim = _delimiter(delimiter)
    # Line numbers of token lines; 0 marks a sentence or document break.
    numbered = [(i if _is_token_line(ln) else 0, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    rows = [_split_columns(ln, delim) for i, ln in numbered if i]
    n_columns = max((len(r) for r in rows), default=2)
    if tag_column is not None:
        col = _given_tag_column(path, tag_column)
    else:
        col = _detect_tag_column(path, rows, n_columns, len(lines))
    if scheme == "auto":
        scheme = _detect_scheme(path, _sample_tags(numbered, delim, col))
    return Dialect(format, delim, col, scheme, n_columns)


def _detect_format(content: Sequence[str]) -> str:
    """WikiSER files open their first sentence with `<s>`; anything else is CoNLL."""
    return "wikiser" if content[0].strip() == "<s>" else "conll"


def _delimiter(delimiter: str) -> Optional[str]:
    """The delimiter a `--delimiter` choice reads with: "auto" stays, to be decided on
    each line (a tab on lines that hold one, else any run of whitespace)."""
    return {"auto": "auto", "tab": "\t", "space": None}[delimiter]


def _given_tag_column(path: str, tag_column: int) -> int:
    """The 0-based index of a 1-based `--tag-column` (negative counts from the end)."""
    if tag_column == 0:
        raise BIOError(path, 0, "--tag-column counts from 1 (or from -1 at the end)")
    return tag_column - 1 if tag_column > 0 else tag_column


def _detect_tag_column(path: str, rows: Sequence[List[str]], n_columns: int, n_lines: int) -> int:
    """The one column after the token that holds only BIO tags in every sampled row: the
    second of two columns, else stop when none or several do."""
    if n_columns == 2:
        return 1
    candidates = [
        j
        for j in range(1, n_columns)
        if all(len(r) > j and _looks_like_tag(r[j].strip()) for r in rows)
    ]
    if len(candidates) > 1:
        examples = "; ".join(
            f"column {j + 1}: "
            + ", ".join(clip(t, 40) for t in sorted({r[j].strip() for r in rows} - {"O"})[:3])
            for j in candidates
        )
        raise BIOError(
            path,
            0,
            f"columns {_column_names(candidates)} all look like BIO tags ({examples});"
            " pass --tag-column N to pick one",
        )
    if not candidates:
        raise BIOError(
            path,
            0,
            f"none of columns 2-{n_columns} holds only BIO tags in the first "
            f"{n_lines} lines; pass --tag-column N",
        )
    return candidates[0]


def _sample_tags(
    numbered: Sequence[Tuple[int, str]], delim: Optional[str], col: int
) -> List[Tuple[int, str]]:
    """The tag of each sampled line, as `_detect_scheme` takes them: a break (line 0)
    or a row without the tag column reads as O."""
    tags: List[Tuple[int, str]] = []
    for i, ln in numbered:
        r = _split_columns(ln, delim) if i else []
        tags.append((i, r[col].strip() if len(r) > abs(col) and r[col].strip() else "O"))
    return tags


def _is_token_line(line: str) -> bool:
    stripped = line.strip()
    return stripped not in ("<s>", "</s>") and stripped.split(None, 1)[0] != DOCSTART


def _detect_scheme(path: str, tags: Sequence[Tuple[int, str]]) -> str:
    """Decide between BIOES and IOB from the evidence of every tag: BIOES shows E-, S-,
    L- and U- tags, IOB shows entities that end without them (a lone B-, a last I-).
    The scheme with more evidence wins when the other has at most `SCHEME_MINORITY`
    as much (its tags are then repaired one by one and reported); closer than that,
    stop and name lines of both.

    path (str): The file, for messages.
    tags (Sequence[Tuple[int, str]]): Line number and tag; line 0 is a sentence break.
    RETURNS (str): "bioes", "iob1" or "iob2".
    """
    split = [(line, *_split_tag(tag)) for line, tag in tags]
    bioes: List[int] = []
    iob: List[int] = []
    for (line, pre, label), (_, nxt, nxt_label) in zip(split, split[1:] + [(0, "O", "")]):
        if pre in ("E", "S", "L", "U"):
            bioes.append(line)
        elif pre in ("B", "I") and not (nxt in ("I", "E", "L") and nxt_label == label):
            iob.append(line)
    if bioes and len(bioes) > SCHEME_MINORITY * len(iob):
        if len(iob) > SCHEME_MINORITY * len(bioes):
            raise BIOError(
                path,
                0,
                f"the tags mix schemes: {len(bioes)} BIOES tags (lines "
                f"{_first_lines(bioes)}) and {len(iob)} IOB entities ending without E-/S- "
                f"(lines {_first_lines(iob)}); pass --scheme",
            )
        return "bioes"
    return _detect_iob1([tag for line, tag in tags if line])


def _first_lines(lines: Sequence[int], n: int = 3) -> str:
    more = ", ..." if len(lines) > n else ""
    return ", ".join(str(x) for x in lines[:n]) + more


def _detect_iob1(tags: Sequence[str]) -> str:
    # IOB1 starts entities with I- and uses B- only between two entities of one type.
    starts_with_i = False
    b_after_same = True
    prev = ("O", "")
    for tag in tags:
        pre, label = _split_tag(tag)
        if pre == "I" and (prev[0] == "O" or prev[1] != label):
            starts_with_i = True
        if pre == "B" and not (prev[0] in "BI" and prev[1] == label and prev[0] != "O"):
            b_after_same = False
        prev = (pre, label)
    return "iob1" if starts_with_i and b_after_same else "iob2"


class _TagDecoder:
    """Turns a sentence's tags into ENT_IOB codes and labels, repairing what is ill-formed.

    path (str): The file, for messages.
    scheme (str): "iob2", "iob1" or "bioes".
    on_invalid (str): "repair", or "error" to raise at the first repair instead.
    on_repair (Callable[[Repair], None]): Called for every repair.
    """

    def __init__(
        self,
        path: str,
        scheme: str,
        on_invalid: str,
        on_repair: Callable[[Repair], None],
    ) -> None:
        self.path = path
        self.scheme = scheme
        self.bioes = scheme == "bioes"
        self.iob1 = scheme == "iob1"
        self.strict = on_invalid == "error"
        self.on_repair = on_repair
        # (prefix, label) of every tag seen that needs no repair of its own.
        self._cache: Dict[str, Tuple[str, str]] = {}

    def _problem(self, line: int, kind: str, message: str) -> None:
        if self.strict:
            raise BIOError(self.path, line, message)
        self.on_repair(Repair(self.path, line, kind, message))

    def decode(self, tags: Sequence[str], lines: Sequence[int]) -> Tuple[List[int], List[str]]:
        """Turn one sentence's tags into ENT_IOB codes (B 3, I 1, O 2) and labels ("" for
        O), repairing what is ill-formed. Each repair is reported once, as a `Repair`
        whose `kind` is given in quotes below, at the line named; with
        on_invalid="error" the first one is raised as a `BIOError` instead.

        First each tag on its own (in any scheme):
        - A tag other than O with no label (`B-`, `B`) or with no B/I/E/S/L/U prefix
          (`Foo`, `X-Foo`) is read as O: "unknown tag", at its line.
        - In a file read as IOB2 or IOB1, E-/L- is read as I- and S-/U- as B-: "BIOES tag
          in IOB file", at its line. The rules below then apply as well, so `O E-X`
          counts both this and "E- without B-".

        Then the sequence. An entity is "open" after each of its tokens; in BIOES it
        also "awaits its end" after its B- or I-, until an E-/L- closes it.
        - O ends the open entity.
        - B-X (S-X, U-X) always starts an entity, without a repair of its own.
        - I-X (E-X, L-X) continues the open entity if that is an X entity and, in BIOES,
          awaits its end. Otherwise it starts an entity, which counts "I- without B-"
          ("E- without B-", "L- without B-") at its line: after O or the sentence
          start, after an entity of another label, and in BIOES after an X entity
          already closed by E-/L- or S-/U-. In IOB1 an I- that starts an entity is
          well-formed (IOB1 writes B- only between two entities of one label) and
          counts nothing; B- after O is accepted there too.
        - In BIOES, an entity that awaits its end when O (or an unknown tag), B-, S-,
          U- or the end of the sentence comes is closed at its last token: "entity
          without E-", at that token's line. An entity started by a repaired I- awaits
          its end like one started by B-; one started by a repaired E-/L- is closed at
          once. When I-/E-/L- of another label comes instead, only that tag's "I- without
          B-" is counted, not the missing E- before it.
        So a file read as IOB2 or IOB1 never counts "entity without E-", and a lone B-X,
        or B-X right after an X entity, is never a repair in itself.

        tags (Sequence[str]): The tags, as in the file.
        lines (Sequence[int]): The line of each tag.
        RETURNS (Tuple[List[int], List[str]]): ENT_IOB codes and labels, one per tag.
        """
        cache = self._cache
        bioes = self.bioes
        iob: List[int] = []
        labels: List[str] = []
        open_label = ""  # label of the entity the previous token belongs to
        pending_end = False  # BIOES: the open entity still needs its E-/L-
        for i, tag in enumerate(tags):
            split = cache.get(tag)
            prefix, label = split if split is not None else self._read_tag(tag, lines[i])
            if prefix == "O":
                if pending_end:
                    self._unclosed(lines[i - 1], open_label)
                iob.append(IOB_O)
                labels.append("")
                open_label = ""
                pending_end = False
                continue
            if prefix in "IEL":
                if open_label == label and (pending_end or not bioes):
                    iob.append(IOB_I)
                else:
                    self._start_without_b(tag, prefix, label, open_label, lines[i])
                    iob.append(IOB_B)
                pending_end = bioes and prefix == "I"
            else:  # B, S, U
                if pending_end:
                    self._unclosed(lines[i - 1], open_label)
                iob.append(IOB_B)
                pending_end = bioes and prefix == "B"
            open_label = label
            labels.append(label)
        if pending_end:
            self._unclosed(lines[-1], open_label)
        return iob, labels

    def _read_tag(self, tag: str, line: int) -> Tuple[str, str]:
        """Split a tag not seen before, or one that needs a repair of its own (see
        `decode`), and report that repair. A tag that needs none is cached.

        tag (str): The tag.
        line (int): Its line.
        RETURNS (Tuple[str, str]): Its prefix ("O", "B", "I", "E", "S", "L", "U") and label.
        """
        prefix, label = _split_tag(tag)
        if prefix != "O" and (not label or not prefix):
            what = (
                f"tag '{clip(tag)}' has no entity label"
                if not label
                else f"tag '{clip(tag)}' has no B-/I-/E-/S- prefix"
            )
            self._problem(line, "unknown tag", f"{what}; read as O")
            return "O", ""
        if prefix in "ESLU" and not self.bioes:
            self._problem(
                line,
                "BIOES tag in IOB file",
                f"'{clip(tag)}' is a BIOES tag in a file read as {self.scheme.upper()}",
            )
        else:
            self._cache[tag] = (prefix, label)
        return prefix, label

    def _start_without_b(
        self, tag: str, prefix: str, label: str, open_label: str, line: int
    ) -> None:
        """Report an I-/E-/L- tag that starts an entity, unless IOB1 starts entities so."""
        if self.iob1 and prefix == "I":
            return
        after = "O" if not open_label else f"a {clip(open_label)} entity"
        if open_label == label:
            after = f"the end of a {clip(label)} entity"
        self._problem(
            line,
            f"{prefix}- without B-",
            f"'{clip(tag)}' follows {after}; read as the start of an entity",
        )

    def _unclosed(self, line: int, label: str) -> None:
        self._problem(
            line,
            "entity without E-",
            f"{clip(label)} entity ends without an E-/L- tag; closed here",
        )


def open_bio(path: PathLike) -> IO[bytes]:
    """Open a BIO file for reading, with a clear error when it cannot be. A `.gz` file
    is decompressed as it is read.

    path (PathLike): The file.
    RETURNS (IO[bytes]): The open file.
    """
    p = Path(path)
    if not p.exists():
        raise BIOError(path, 0, "no such file")
    if p.is_dir():
        raise BIOError(path, 0, "is a directory")
    try:
        return cast(IO[bytes], gzip.open(p, "rb")) if p.suffix == ".gz" else p.open("rb")
    except OSError as err:
        raise BIOError(path, 0, f"cannot be read ({err.strerror})") from None


def read_sentences(
    path: PathLike,
    *,
    format: str = "auto",
    delimiter: str = "auto",
    tag_column: Optional[int] = None,
    scheme: str = "auto",
    on_invalid: str = "repair",
    on_repair: Optional[Callable[[Repair], None]] = None,
    on_progress: Optional[Callable[[int], None]] = None,
) -> Iterator[Sentence]:
    """Stream the sentences of one BIO file.

    path (PathLike): The file.
    format (str): "auto", "wikiser" or "conll".
    delimiter (str): "auto", "tab" or "space".
    tag_column (Optional[int]): 1-based tag column, or None to detect it.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    on_invalid (str): "repair" ill-formed tag sequences, or raise at the first ("error").
    on_repair (Optional[Callable[[Repair], None]]): Called for every repair.
    on_progress (Optional[Callable[[int], None]]): Called with the bytes read, now and then.
    YIELDS (Sentence): The sentences, in order.
    """
    _check_choice("format", format, FORMATS)
    _check_choice("delimiter", delimiter, DELIMITERS)
    _check_choice("scheme", scheme, SCHEMES)
    _check_choice("on_invalid", on_invalid, ON_INVALID)
    spath = str(path)
    with open_bio(path) as fh:
        dialect = detect_dialect(
            spath,
            _sample(spath, fh),
            format=format,
            delimiter=delimiter,
            tag_column=tag_column,
            scheme=scheme,
        )
        fh.seek(0)
        yield from _parse(spath, fh, dialect, on_invalid, on_repair, on_progress)


# What a line of a BIO file is (see `_classify`).
_TOKEN = 0
_BLANK = 1
_OPEN = 2
_CLOSE = 3
_DOCSTART = 4


def _classify(line: str) -> int:
    """Say what a line is: a block's `<s>` or `</s>`, blank, `-DOCSTART-`, or a token row.

    `<s>` and `</s>` may carry outer whitespace, and a line of only whitespace is blank,
    but only on a line without a tab or one that starts with a space or tab: a tab
    after the first character makes a line a token row (`<s>`, a tab and `O` is the
    token `<s>`), which spares the `strip` on nearly every row of a tab-separated file.
    `-DOCSTART-` counts at the very start of a line, alone or followed by whitespace.

    line (str): The line, without its line end.
    RETURNS (int): `_TOKEN`, `_BLANK`, `_OPEN`, `_CLOSE` or `_DOCSTART`.
    """
    if "\t" not in line or line[0] in " \t":
        stripped = line.strip()
        if not stripped:
            return _BLANK
        if stripped == "<s>":
            return _OPEN
        if stripped == "</s>":
            return _CLOSE
    if line.startswith(DOCSTART) and _is_docstart(line):
        return _DOCSTART
    return _TOKEN


class _SentenceReader:
    """The state of a file being read: the sentence so far, the open `<s>` block, and
    which `-DOCSTART-` section it is in. Each `on_*` method takes one classified line and
    returns the sentence that line completes, if any.

    path (str): The file, for messages.
    dialect (Dialect): How the file is written.
    decoder (_TagDecoder): Turns each sentence's tags into ENT_IOB codes and labels.
    """

    def __init__(self, path: str, dialect: Dialect, decoder: "_TagDecoder") -> None:
        self.path = path
        self.decoder = decoder
        self.wikiser = dialect.format == "wikiser"
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


def _parse(
    path: str,
    fh: IO[bytes],
    dialect: Dialect,
    on_invalid: str,
    on_repair: Optional[Callable[[Repair], None]],
    on_progress: Optional[Callable[[int], None]],
) -> Iterator[Sentence]:
    """Read a file's lines in a dialect already detected: classify each, and let a
    `_SentenceReader` build the sentences (arguments as `read_sentences` takes them)."""
    decoder = _TagDecoder(path, dialect.scheme, on_invalid, on_repair or (lambda r: None))
    reader = _SentenceReader(path, dialect, decoder)
    on_marker = {
        _BLANK: reader.on_blank,
        _OPEN: reader.on_open,
        _CLOSE: reader.on_close,
        _DOCSTART: reader.on_docstart,
    }
    on_token = reader.on_token
    reported = fh.tell()  # where the last progress report left off
    lineno = 0
    for lineno, raw in enumerate(fh, 1):
        if on_progress is not None and lineno % 65536 == 0:
            on_progress(fh.tell() - reported)
            reported = fh.tell()
        line = _decode_line(raw, path, lineno)
        if "\t" in line and line[0] not in " \t" and not line.startswith(DOCSTART):
            # What `_classify` says of nearly every line of a tab-separated file, without
            # a call per line (measured: 4% of the reader's time on WikiSER's dev file).
            kind = _TOKEN
        else:
            kind = _classify(line)
        if kind == _TOKEN:
            on_token(line, lineno)
            continue
        sent = on_marker[kind](lineno)
        if sent is not None:
            yield sent
    sent = reader.on_end()
    if sent is not None:
        yield sent
    if on_progress is not None:
        on_progress(fh.tell() - reported)
    if not reader.any_token:
        raise BIOError(path, max(lineno, 1), "empty file: no tokens")


def _is_docstart(line: str) -> bool:
    rest = line[len(DOCSTART) :]
    return not rest or rest[0].isspace()


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def iter_files(
    inputs: Sequence[PathLike], glob: str = "*", exclude: Collection[Path] = frozenset()
) -> Iterator[Tuple[Path, str]]:
    """List the files to read: files as given, and every file under a directory.

    inputs (Sequence[PathLike]): Files and directories.
    glob (str): Which files under a directory to take (a `Path.rglob` pattern).
    exclude (Collection[Path]): Resolved paths of files to skip under a directory (what
        an earlier conversion wrote into a folder that is also an input).
    YIELDS (Tuple[Path, str]): Each file, and the key naming its document: the file's
        path relative to its input directory, or "" for a file given directly.
    """
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob(glob)
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and not (exclude and f.resolve() in exclude)
            )
            if not files:
                raise BIOError(p, 0, f"directory holds no files matching {glob!r}")
            for f in files:
                yield f, f.relative_to(p).as_posix()
        elif p.exists():
            yield p, ""
        else:
            raise BIOError(p, 0, "no such file or directory")


def group_sentences(
    sentences: Iterable[Sentence],
    n_sents: int,
    doc_key: str,
    by_document: bool,
    plain_spaces: bool = False,
) -> Iterator[DocRecord]:
    """Group consecutive sentences of one document into Doc records.

    A Doc never spans two documents. Each record's `key` names its document
    (`doc_key#section`) when the sentences belong to one: always for a file read
    from a directory (`by_document`), and after a `-DOCSTART-` line otherwise. Else the
    key is left empty and the Doc is its own document.

    sentences (Iterable[Sentence]): Sentences of one file, in order.
    n_sents (int): Sentences per Doc; 0 puts each whole document in one Doc.
    doc_key (str): Names the file.
    by_document (bool): Whether the whole file is one document.
    plain_spaces (bool): A space after every token instead of reconstructed spacing.
    YIELDS (DocRecord): The records.
    """
    rec = DocRecord()
    current = -1
    for sent in sentences:
        if rec.words and (sent.doc_index != current or (n_sents and rec.n_sents >= n_sents)):
            rec.spaces[-1] = False
            yield rec
            rec = DocRecord()
        if not rec.words and (by_document or sent.marked):
            rec.key = f"{doc_key}#{sent.doc_index}"
        current = sent.doc_index
        rec.words.extend(sent.words)
        rec.spaces.extend([True] * len(sent.words) if plain_spaces else space_after(sent.words))
        rec.iob.extend(sent.iob)
        rec.labels.extend(sent.labels)
        rec.sent_starts.append(1)
        rec.sent_starts.extend([-1] * (len(sent.words) - 1))
        rec.n_sents += 1
    if rec.words:
        rec.spaces[-1] = False
        yield rec


def doc_to_tags(iob: Sequence[int], labels: Sequence[str]) -> List[str]:
    """Write ENT_IOB codes and labels as IOB2 tags.

    iob (Sequence[int]): ENT_IOB codes (0 and 2 both become "O").
    labels (Sequence[str]): Entity labels.
    RETURNS (List[str]): The tags.
    """
    return [
        f"B-{label}" if code == IOB_B else f"I-{label}" if code == IOB_I else "O"
        for code, label in zip(iob, labels)
    ]


def write_sentences(
    fh: IO[str], sentences: Iterable[Tuple[Sequence[str], Sequence[str]]], format: str
) -> int:
    """Write sentences as token-per-line BIO text.

    fh (IO[str]): Where to write.
    sentences (Iterable[Tuple[Sequence[str], Sequence[str]]]): (tokens, tags) pairs.
    format (str): "wikiser" (`<s>`/`</s>` blocks) or "conll" (blank lines).
    RETURNS (int): The number of sentences written.
    """
    _check_choice("format", format, ("wikiser", "conll"))
    n = 0
    for words, tags in sentences:
        for word in words:
            problem = token_problem(word)
            if problem:
                raise UserError(f"sentence {n + 1}: {problem}")
        body = "".join(f"{w}\t{t}\n" for w, t in zip(words, tags))
        fh.write(f"<s>\n{body}</s>\n" if format == "wikiser" else f"{body}\n")
        n += 1
    return n
