"""Option types and the options several commands share, each defined once."""

import argparse
from pathlib import Path
from typing import Any, Optional


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows an option's default, unless its help already says what the
    default does (as in "None: detect it")."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        if action.help and f"{action.default}:" in action.help:
            return action.help
        return super()._get_help_string(action)


def add_command(
    subparsers: Any, name: str, summary: str, description: str
) -> argparse.ArgumentParser:
    """Add a command.

    subparsers (Any): What `ArgumentParser.add_subparsers` returned.
    name (str): The command's name.
    summary (str): One line for the list of commands.
    description (str): The command's own help.
    RETURNS (argparse.ArgumentParser): The command's parser.
    """
    return subparsers.add_parser(
        name, help=summary, description=description, formatter_class=HelpFormatter
    )


def _whole_number(value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {n}")
    return n


def zero_or_more(value: str) -> int:
    """RETURNS (int): VALUE as a whole number of 0 or more."""
    return _whole_number(value, 0)


def one_or_more(value: str) -> int:
    """RETURNS (int): VALUE as a whole number of 1 or more."""
    return _whole_number(value, 1)


def number(value: str) -> float:
    """RETURNS (float): VALUE as a number."""
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None


def zero_to_one(value: str) -> float:
    """RETURNS (float): VALUE as a number from 0 to 1, both included."""
    n = number(value)
    if not 0.0 <= n <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return n


def between_zero_and_one(value: str) -> float:
    """RETURNS (float): VALUE as a number between 0 and 1, both excluded (a target)."""
    n = number(value)
    if not 0.0 < n < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (both excluded), not {value}")
    return n


def gpu_id(value: str) -> int:
    """RETURNS (int): VALUE as a GPU's number, or -1 for the CPU."""
    return _whole_number(value, -1)


def tag_column(value: str) -> int:
    """RETURNS (int): VALUE as the 1-based column of the tags (-1: the last)."""
    try:
        column = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a column number: {value!r}") from None
    if column == 0 or column == 1:
        raise argparse.ArgumentTypeError(
            "column 1 holds the tokens; tags are in column 2 or later (or -1 for the last)"
        )
    return column


def add_model(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add the positional MODEL: a package name or pipeline folder."""
    parser.add_argument("model", metavar="MODEL", help=help_text)


def add_docbins(parser: argparse.ArgumentParser, dest: str, help_text: str) -> None:
    """Add the positional DOCBIN_OR_DIR: a .spacy file or a folder of them."""
    parser.add_argument(dest, type=Path, metavar="DOCBIN_OR_DIR", help=help_text)


def add_glob(parser: argparse.ArgumentParser) -> None:
    """Add --glob: the files to take under an input folder."""
    parser.add_argument("--glob", default="*", help="files to take under a directory")


def add_shard_size(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add --shard-size: the documents per output file."""
    parser.add_argument(
        "--shard-size", type=one_or_more, default=10000, metavar="N", help=help_text
    )


def add_gpu_id(parser: argparse.ArgumentParser) -> None:
    """Add --gpu-id: the GPU to run the pipeline on."""
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU to run on; -1: the CPU")


def add_overwrite(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Add --overwrite: start over in an output folder an earlier run wrote."""
    parser.add_argument("--overwrite", action="store_true", help=help_text)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """Add --quiet: print no report."""
    parser.add_argument("--quiet", action="store_true", help="print no report")
