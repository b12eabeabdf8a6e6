"""How BIO files may be read: the choices of each option, and `ReadOptions`.

It imports no spaCy, so a command line can offer these choices without loading it.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

from ..errors import UserError

FORMATS = ("auto", "wikiser", "conll")
SCHEMES = ("auto", "iob2", "iob1", "bioes")
DELIMITERS = ("auto", "tab", "space")
ON_INVALID = ("repair", "error")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Refuse a value that is not one of an option's choices.

    name (str): The option, for the message.
    value (str): What was given.
    choices (Sequence[str]): What may be given.
    """
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


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
