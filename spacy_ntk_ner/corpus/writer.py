"""Write sentences as token-per-line BIO text, and say what such text cannot hold."""

import re
from typing import IO, Iterable, List, Optional, Sequence, Tuple

from ..errors import UserError
from .files import clip
from .iob import IOB_B, IOB_I
from .options import check_choice
from .syntax import DOCSTART, is_docstart

# What a token or label written as BIO text must not hold: it would break the columns.
_UNWRITABLE = re.compile(r"[\t\n\r\x00]")


def token_problem(word: str) -> Optional[str]:
    """Say why a token cannot be written as a line of BIO text that reads back the same.

    word (str): The token.
    RETURNS (Optional[str]): What is wrong, or None.
    """
    if not word.strip():
        return f"the whitespace token {word!r} cannot be written as a BIO line"
    if _UNWRITABLE.search(word):
        return f"token {clip(word)!r} holds a tab, line break or NUL, which would split its line"
    if word.startswith(DOCSTART) and is_docstart(word):
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
    fh: IO[str], sentences: Iterable[Tuple[Sequence[str], Sequence[str]]], block_format: str
) -> int:
    """Write sentences as token-per-line BIO text.

    fh (IO[str]): Where to write.
    sentences (Iterable[Tuple[Sequence[str], Sequence[str]]]): (tokens, tags) pairs.
    block_format (str): "wikiser" (`<s>`/`</s>` blocks) or "conll" (blank lines).
    RETURNS (int): The number of sentences written.
    """
    check_choice("format", block_format, ("wikiser", "conll"))
    n = 0
    for words, tags in sentences:
        for word in words:
            problem = token_problem(word)
            if problem:
                raise UserError(f"sentence {n + 1}: {problem}")
        body = "".join(f"{w}\t{t}\n" for w, t in zip(words, tags))
        fh.write(f"<s>\n{body}</s>\n" if block_format == "wikiser" else f"{body}\n")
        n += 1
    return n
