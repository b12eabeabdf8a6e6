"""Work out how a BIO file is written from its first lines: its block format (`<s>`
blocks or blank lines), column delimiter, tag column and tag scheme.
"""

from dataclasses import dataclass
from typing import IO, Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .files import BIOError, PathLike, clip, decode_line, number_lines
from .syntax import DOCSTART, looks_like_tag, split_columns, split_tag

# How many lines detection looks at before it decides.
SAMPLE_LINES = 2000
# The scheme a file's tags show least may be at most this share of the other's evidence;
# closer than that, detection stops and names lines of both.
SCHEME_MINORITY = 0.1


@dataclass(frozen=True)
class Dialect:
    """How one file is written.

    block_format (str): "wikiser" (`<s>`/`</s>` blocks) or "conll" (blank lines).
    delimiter (Optional[str]): "\\t", None for any run of whitespace, or "auto": a tab
        on lines that hold one, else any run of whitespace.
    tag_column (int): 0-based index of the tag column (negative counts from the end).
    scheme (str): "iob2", "iob1" or "bioes".
    n_columns (int): Columns seen in the sample (for messages).
    evidence (Tuple[Tuple[str, str], ...]): For each of the four, what decided it: the
        option that set it, or what the sample showed.
    """

    block_format: str
    delimiter: Optional[str]
    tag_column: int
    scheme: str
    n_columns: int = 2
    evidence: Tuple[Tuple[str, str], ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): The dialect as `stats.json` records it, with the
        tag column 1-based (-1: the last) and the evidence for each setting."""
        delimiter = {"\t": "tab", None: "whitespace", "auto": "tab, else whitespace"}
        column = self.tag_column + 1 if self.tag_column >= 0 else self.tag_column
        return {
            "block_format": self.block_format,
            "delimiter": delimiter[self.delimiter],
            "tag_column": column,
            "scheme": self.scheme,
            "evidence": dict(self.evidence),
        }

    def describe(self) -> str:
        """RETURNS (str): One short line: each setting and, in brackets, what decided it."""
        values = self.to_dict()
        why = values["evidence"]
        shown = {
            "block_format": "<s> blocks" if self.block_format == "wikiser" else "blank lines",
            "delimiter": values["delimiter"],
            "tag_column": f"tags in column {values['tag_column']}",
            "scheme": self.scheme.upper(),
        }
        return ", ".join(f"{v} ({why[k]})" if k in why else v for k, v in shown.items())


def read_sample(path: str, fh: IO[bytes]) -> List[str]:
    """Read the first `SAMPLE_LINES` lines of an open file, decoded, for `detect_dialect`.

    path (str): The file, for messages.
    fh (IO[bytes]): The file, at its start.
    RETURNS (List[str]): The lines, without line ends.
    """
    lines = []
    for lineno, raw in number_lines(path, fh):
        lines.append(decode_line(raw, path, lineno))
        if lineno >= SAMPLE_LINES:
            break
    return lines


def detect_dialect(
    path: PathLike,
    lines: Sequence[str],
    *,
    block_format: str = "auto",
    delimiter: str = "auto",
    tag_column: Optional[int] = None,
    scheme: str = "auto",
) -> Dialect:
    """Work out how a file is written from its first lines.

    path (PathLike): The file, for messages.
    lines (Sequence[str]): Its first lines, decoded, without line ends.
    block_format (str): "auto", "wikiser" or "conll".
    delimiter (str): "auto", "tab" or "space".
    tag_column (Optional[int]): 1-based tag column (negative: from the end), None to detect.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    RETURNS (Dialect): The dialect.
    """
    path = str(path)
    content = [ln for ln in lines if ln.strip()]
    if not content:
        raise BIOError(path, 1, "empty file: no tokens")
    evidence = {}
    if block_format == "auto":
        block_format = _detect_block_format(content)
        evidence["block_format"] = "first line <s>" if block_format == "wikiser" else "no <s>"
    else:
        evidence["block_format"] = "--format"
    delim = _delimiter(delimiter)
    # Line numbers of token lines; 0 marks a sentence or document break.
    numbered = [(i if _is_token_line(ln) else 0, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    token_lines = [ln for i, ln in numbered if i]
    rows = [split_columns(ln, delim) for ln in token_lines]
    n_columns = max((len(r) for r in rows), default=2)
    if delimiter == "auto":
        with_tab = sum("\t" in ln for ln in token_lines)
        evidence["delimiter"] = f"tabs on {with_tab:,} of {len(token_lines):,} token lines"
    else:
        evidence["delimiter"] = "--delimiter"
    if tag_column is not None:
        col = _given_tag_column(path, tag_column)
        evidence["tag_column"] = "--tag-column"
    else:
        col = _detect_tag_column(path, rows, n_columns, len(lines))
        evidence["tag_column"] = f"the only tag column of {n_columns}"
    tags = _sample_tags(numbered, delim, col)
    if scheme == "auto":
        scheme = _detect_scheme(path, tags)
        evidence["scheme"] = _scheme_evidence(scheme, tags)
    else:
        evidence["scheme"] = "--scheme"
    return Dialect(block_format, delim, col, scheme, n_columns, tuple(evidence.items()))


def _scheme_evidence(scheme: str, tags: Sequence[Tuple[int, str]]) -> str:
    """What the sampled tags showed for the scheme detection chose."""
    prefixes = [split_tag(tag)[0] for line, tag in tags if line]
    n_bioes = sum(p in ("E", "S", "L", "U") for p in prefixes)
    if scheme == "bioes":
        return f"{n_bioes:,} E-/S-/L-/U- tags in {len(prefixes):,} lines"
    if scheme == "iob1":
        return "I- starts entities, B- only between two of one label"
    return f"{n_bioes:,} E-/S- tags in {len(prefixes):,} lines"


def _detect_block_format(content: Sequence[str]) -> str:
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


def _column_names(indexes: Iterable[int]) -> str:
    return ", ".join(str(i + 1) for i in indexes)


def _detect_tag_column(path: str, rows: Sequence[List[str]], n_columns: int, n_lines: int) -> int:
    """The one column after the token that holds only BIO tags in every sampled row: the
    second of two columns, else stop when none or several do."""
    if n_columns == 2:
        return 1
    candidates = [
        j
        for j in range(1, n_columns)
        if all(len(r) > j and looks_like_tag(r[j].strip()) for r in rows)
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
        r = split_columns(ln, delim) if i else []
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
    split = [(line, *split_tag(tag)) for line, tag in tags]
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
        pre, label = split_tag(tag)
        if pre == "I" and (prev[0] == "O" or prev[1] != label):
            starts_with_i = True
        if pre == "B" and not (prev[0] in "BI" and prev[1] == label and prev[0] != "O"):
            b_after_same = False
        prev = (pre, label)
    return "iob1" if starts_with_i and b_after_same else "iob2"
