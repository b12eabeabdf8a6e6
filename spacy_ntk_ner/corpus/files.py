"""Input files: which to read, opening them (plain or `.gz`), decoding their lines as
UTF-8, and the error that names a problem's `FILE:LINE`.

The BIO reader and `annotate`'s inputs both read through these functions, so a file
that cannot be opened or a line that is not UTF-8 reads the same everywhere.
"""

import gzip
from pathlib import Path
from typing import IO, Collection, Iterator, Sequence, Tuple, Union, cast

from ..errors import UserError

PathLike = Union[str, Path]

# Tokens, tags and lines longer than this are shortened in messages.
MAX_ECHO = 200


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
        location = f"{self.path}:{self.line}" if self.line else self.path
        return f"{location}: {self.message}"


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """Shorten what a message echoes.

    text (str): A token, tag or line.
    limit (int): The most characters kept.
    RETURNS (str): `text`, or its start and how long it is.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


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


def open_file(path: PathLike) -> IO[bytes]:
    """Open an input file for reading bytes, with a clear error when it cannot be. A
    `.gz` file is decompressed as it is read.

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


def numbered_lines(path: PathLike) -> Iterator[Tuple[int, bytes]]:
    """Stream a file's raw lines with their 1-based numbers. A truncated or corrupt `.gz`,
    which only shows itself while it is read, and a file whose lines end with CR only
    raise a `BIOError` naming the file.

    path (PathLike): The file.
    YIELDS (Tuple[int, bytes]): Line number and the line's bytes, line end included.
    """
    with open_file(path) as fh:
        yield from number_lines(path, fh)


def number_lines(path: PathLike, fh: IO[bytes]) -> Iterator[Tuple[int, bytes]]:
    """Stream an open file's raw lines with their 1-based numbers, as `numbered_lines`.

    path (PathLike): The file, for messages.
    fh (IO[bytes]): The file, open at its start.
    YIELDS (Tuple[int, bytes]): Line number and the line's bytes, line end included.
    """
    try:
        lines = enumerate(fh, 1)
        first = next(lines, None)
        second = next(lines, None)
        # A file with CR-only line ends (old Mac) reads as one line holding every CR.
        if first is not None and second is None and b"\r" in first[1].strip():
            raise BIOError(
                path, 0, "lines end with CR only (old Mac line ends); convert them to LF first"
            )
        yield from (line for line in (first, second) if line is not None)
        yield from lines
    except (OSError, EOFError) as err:
        raise BIOError(path, 0, f"cannot be read ({err})") from None


def decode_line(raw: bytes, path: str, lineno: int, *, allow_nul: bool = False) -> str:
    """Decode one line as UTF-8, without its line end (and the first line without a
    byte order mark).

    raw (bytes): The line as read.
    path (str): The file, for messages.
    lineno (int): Its 1-based number.
    allow_nul (bool): Accept NUL bytes; else a NUL says the file is binary.
    RETURNS (str): The text.
    """
    if not allow_nul and b"\x00" in raw:
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
