"""The command line: `python -m spacy_ntk_ner
init-config|convert|export|evaluate|calibrate|visualize|annotate`.

Input problems end the command with one line and exit status 1: `FILE:LINE: what is
wrong` about a line, `FILE: what is wrong` about a whole file, `--option: what is
wrong` about an option's value; a wrong option gives argparse's usage message and exit
status 2.
"""

import argparse
import importlib
import os
import signal
import sys
from typing import Any, Optional, Sequence

from .. import __version__
from .._fs import Terminated
from ..errors import UserError
from ._options import HelpFormatter
from .parsers import COMMAND_PARSERS

DESCRIPTION = (
    "BIO corpora to spaCy pipelines, and pipelines over corpora. Commands: init-config "
    "(the recommended training config), convert and "
    "export (BIO files to DocBin shards and back), evaluate, calibrate and visualize (a "
    "trained pipeline's entities and their scores), annotate (a pipeline over a corpus, "
    "on this machine or a Ray cluster). `COMMAND --help` says more."
)


def build_parser() -> argparse.ArgumentParser:
    """RETURNS (argparse.ArgumentParser): The parser of all commands."""
    parser = argparse.ArgumentParser(
        prog="python -m spacy_ntk_ner", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"spacy-ntk-ner {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMAND_PARSERS:
        add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a command.

    argv (Optional[Sequence[str]]): The arguments, without the program name.
    RETURNS (int): The exit status.
    """
    args = build_parser().parse_args(argv)
    end_on_termination()
    # Each command's handler is the module of its name, imported only now: the library
    # behind it imports spaCy, which `--help` and a wrong option do without.
    handler = importlib.import_module(f"{__package__}.{args.command.replace('-', '_')}")
    try:
        return int(handler.run(args))
    except BrokenPipeError:
        # The reader of our output (`| head`) has gone; the command itself succeeded.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UserError as err:
        # Bad input, files or settings: one line. Anything else is a bug and keeps its
        # traceback (a ValueError from deep inside is not the user's input).
        print(str(err), file=sys.stderr)
        return 1
    except OSError as err:
        print(os_error_message(err), file=sys.stderr)
        return 1
    except Terminated as err:
        name = signal.Signals(err.signum).name
        if err.written:
            print(
                f"interrupted ({name}) while files were put in place, once all of them were",
                file=sys.stderr,
            )
        else:
            print(f"interrupted ({name}); outputs were left as they were", file=sys.stderr)
        return 128 + err.signum
    except KeyboardInterrupt:
        print("interrupted; outputs were left as they were", file=sys.stderr)
        return 130


# Signals that end a run as Ctrl-C does: `kill`, `timeout`, a batch scheduler (SIGTERM)
# and a closed terminal or SSH session (SIGHUP).
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def end_on_termination() -> None:
    """Make SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt) in the main
    thread, so every command cleans up on them as on Ctrl-C. A signal the parent set to
    be ignored (`nohup`) stays ignored.
    """

    def raise_terminated(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    for signum in ENDING_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, raise_terminated)


def os_error_message(err: OSError) -> str:
    """RETURNS (str): `FILE: what is wrong` for a system error."""
    what = err.strerror or str(err)
    return f"{err.filename}: {what}" if err.filename else what
