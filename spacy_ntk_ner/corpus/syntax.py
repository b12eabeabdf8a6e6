"""The syntax of BIO text: what kind of line a line is, its columns, and a tag's parts."""

import re
from typing import List, Optional, Tuple

DOCSTART = "-DOCSTART-"
# Prefixes are read in either case: `b-Language` is `B-Language`, `o` is `O`.
_TAG_RE = re.compile(r"^([Oo]|[BIESLUbieslu]-\S.*)$")
_PREFIXES = frozenset("BIESLUbieslu")

# What a line of a BIO file is (see `classify_line`).
LINE_TOKEN = 0
LINE_BLANK = 1
LINE_OPEN = 2
LINE_CLOSE = 3
LINE_DOCSTART = 4


def is_docstart(line: str) -> bool:
    """Whether a line that starts with `-DOCSTART-` is one: alone or followed by whitespace.

    line (str): A line that starts with `DOCSTART`.
    RETURNS (bool): Whether it marks a document.
    """
    rest = line[len(DOCSTART) :]
    return not rest or rest[0].isspace()


def classify_line(line: str) -> int:
    """Say what a line is: a block's `<s>` or `</s>`, blank, `-DOCSTART-`, or a token row.

    `<s>` and `</s>` may carry outer whitespace, and a line of only whitespace is blank,
    but only on a line without a tab or one that starts with a space or tab: a tab
    after the first character makes a line a token row (`<s>`, a tab and `O` is the
    token `<s>`), which spares the `strip` on nearly every row of a tab-separated file.
    `-DOCSTART-` counts at the very start of a line, alone or followed by whitespace.

    line (str): The line, without its line end.
    RETURNS (int): `LINE_TOKEN`, `LINE_BLANK`, `LINE_OPEN`, `LINE_CLOSE` or `LINE_DOCSTART`.
    """
    if "\t" not in line or line[0] in " \t":
        stripped = line.strip()
        if not stripped:
            return LINE_BLANK
        if stripped == "<s>":
            return LINE_OPEN
        if stripped == "</s>":
            return LINE_CLOSE
    if line.startswith(DOCSTART) and is_docstart(line):
        return LINE_DOCSTART
    return LINE_TOKEN


def split_columns(line: str, delimiter: Optional[str]) -> List[str]:
    """Split a token row into its columns.

    line (str): The row.
    delimiter (Optional[str]): "\\t", None for any run of whitespace, or "auto": a tab on
        a row that holds one, else any run of whitespace.
    RETURNS (List[str]): The columns.
    """
    if delimiter == "auto":
        return line.split("\t" if "\t" in line.strip() else None)
    return line.split(delimiter)


def split_tag(tag: str) -> Tuple[str, str]:
    """Split a tag into its prefix (upper case) and label: `b-Foo_Bar` -> (`B`, `Foo_Bar`).

    tag (str): The tag.
    RETURNS (Tuple[str, str]): Prefix and label; ("O", "") for O, ("", tag) for a tag
        without a known prefix.
    """
    if tag == "O" or tag == "o":
        return "O", ""
    if tag[:1] in _PREFIXES and (len(tag) == 1 or tag[1] in "-_"):
        return tag[0].upper(), tag[2:]
    return "", tag


def looks_like_tag(value: str) -> bool:
    """Whether a column value is written as a BIO tag (`O`, or a prefix, `-` and a label).

    value (str): The value.
    RETURNS (bool): Whether it looks like a tag.
    """
    return bool(_TAG_RE.match(value))
