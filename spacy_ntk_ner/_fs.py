"""Write outputs so that a failed or interrupted command leaves the old ones as they were.

A file is written under a temporary name beside its target and renamed over it when
complete; a folder is written beside its target and swapped in; the outputs of one run
are put in place together (`staged`); a folder that one
command writes into at a time is locked with `flock`, which the system drops when the
process ends, however it ends. This module imports nothing of the package.
"""

import fcntl
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import UserError

# Prefix of the temporary files and folders this package writes beside its outputs.
TMP_PREFIX = ".ntk-tmp-"
# The signals a run ends on (the command line raises `Terminated` for the last two).
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A run ended by SIGTERM or SIGHUP, cleaned up as after Ctrl-C; or by any of the
    run's signals held back while files were put in place (`deferred_sigint`).

    signum (int): The signal.
    written (bool): It was held back until the files being put in place all were.
    """

    def __init__(self, signum: int, written: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.written = written


class Staged:
    """Outputs written under temporary names beside their targets, and put in place all
    together when complete (`staged`), so that a run ended part-way, by an error or a
    signal, leaves every target as it was: not some new and some old.
    """

    def __init__(self) -> None:
        self._files: List[Tuple[Path, Path]] = []  # (temporary file, target)
        self._folders: List[Tuple[Path, Path]] = []  # (temporary folder, target)
        self._old: List[Path] = []  # replaced folders, removed once all is in place

    @contextmanager
    def file(self, target: Path, mode: str = "w") -> Iterator[IO[Any]]:
        """Open a temporary file beside `target`, put in place with the rest.

        target (Path): The file to write.
        mode (str): "w" (text, UTF-8) or "wb".
        YIELDS (IO): The open temporary file.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=target.parent)
        tmp = Path(name)
        self._files.append((tmp, target))
        encoding = None if "b" in mode else "utf8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _keep_mode(target, tmp)

    def folder(self, target: Path, write: Callable[[Path], None]) -> None:
        """Write a folder with `write(tmp)` into a temporary folder beside `target`, put
        in place of `target` (replaced as a whole) with the rest."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
        self._folders.append((tmp, target))
        # mkdtemp makes the folder 0700; the folder swapped in gets the mode a new folder
        # gets (the umask's), or keeps the one it replaces.
        _keep_mode(target, tmp, 0o777)
        write(tmp)

    def commit(self) -> None:
        """Put every output in place, with the run's signals held back meanwhile. A
        folder that cannot be swapped in puts back the folders swapped before it."""
        with deferred_sigint():
            swapped: List[Tuple[Path, Path, Optional[Path]]] = []
            try:
                for tmp, target in self._folders:
                    old = None
                    if target.exists():
                        old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
                        os.rmdir(old)
                        os.rename(target, old)
                    swapped.append((tmp, target, old))
                    os.rename(tmp, target)
            except BaseException:
                for tmp, target, old in reversed(swapped):
                    if not tmp.exists() and target.exists():
                        os.rename(target, tmp)  # swapped in: back to its temporary name
                    if old is not None:
                        os.rename(old, target)
                raise
            self._old = [old for _, _, old in swapped if old is not None]
            self._folders = []
            for tmp, target in self._files:
                os.replace(tmp, target)
            self._files = []

    def discard(self) -> None:
        """Remove what was not put in place, and the folders that were replaced."""
        for tmp, _ in self._files + self._folders:
            _remove(tmp)
        for old in self._old:
            _remove(old)
        self._files, self._folders, self._old = [], [], []


# How many `staged` blocks are open (one inside another: a folder's own files).
_open_stages = 0


@contextmanager
def staged() -> Iterator[Staged]:
    """Write outputs with the `Staged` this yields; when the block ends without an
    error they are put in place together, otherwise (KeyboardInterrupt too) removed."""
    global _open_stages
    stage = Staged()
    _open_stages += 1
    try:
        yield stage
        stage.commit()
    except Terminated as err:
        if err.written and _open_stages > 1:
            # Put in place inside an output not yet in place (a folder's manifest):
            # the run's outputs were not written.
            raise Terminated(err.signum) from None
        raise
    finally:
        _open_stages -= 1
        stage.discard()


@contextmanager
def atomic_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `target`; rename it to `target` when the block ends
    without an error, remove it otherwise (also on KeyboardInterrupt).

    target (Path): The file to write.
    mode (str): "w" (text, UTF-8) or "wb".
    YIELDS (IO): The open temporary file.
    """
    with staged() as stage, stage.file(target, mode) as fh:
        yield fh


def _keep_mode(target: Path, tmp: Path, new: int = 0o666) -> None:
    # mkstemp makes the file 0600; a replaced file keeps its mode, a new one gets the
    # umask's (of `new`: 0o666 for a file, 0o777 for a folder).
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = new & ~umask
    os.chmod(tmp, mode)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder with `write(tmp)` into a temporary folder beside `target`, then swap
    it in for `target`. If `write` fails or is interrupted, `target` is left as it was.

    target (Path): The folder to write (it may exist; it is replaced as a whole).
    write (Callable[[Path], None]): Writes the folder's contents into the path it gets.
    """
    with staged() as stage:
        stage.folder(Path(target), write)


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold back Ctrl-C (and SIGTERM, SIGHUP where they end a run) during a few renames
    that must all happen, and raise it after, as a `Terminated` that says so."""
    caught: List[int] = []
    previous: Dict[int, Any] = {}
    try:
        for signum in INTERRUPTS:
            handler = signal.getsignal(signum)
            if signum == signal.SIGINT or callable(handler):
                previous[signum] = signal.signal(signum, lambda n, _f: caught.append(n))
    except ValueError:  # not the main thread: signals go elsewhere anyway
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if caught:
        raise Terminated(caught[0], written=True)


class FolderLock:
    """An exclusive `flock` on a folder, so two runs never write into it at once.

    folder (Path): The folder (it must exist).
    what (str): Names the command, for the message when the folder is taken.
    lock_file (Optional[str]): A file in the folder to lock instead of the folder itself
        (made if missing and left there: the lock ends with the process that holds it,
        not with the file). On NFS, `flock` is a byte-range lock, which needs a file
        open for writing: a folder's own descriptor cannot hold it there.
    """

    def __init__(self, folder: Path, what: str, lock_file: Optional[str] = None) -> None:
        self.folder = folder
        self.what = what
        self.lock_file = lock_file
        self._fd: Optional[int] = None

    def __enter__(self) -> "FolderLock":
        if self.lock_file is None:
            fd = os.open(self.folder, os.O_RDONLY)
        else:
            fd = os.open(
                self.folder / self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            held = "" if self.lock_file is None else f" (it holds {self.lock_file})"
            raise UserError(
                f"{self.folder}: another {self.what} is writing into this folder{held}; "
                "wait for it to finish"
            ) from None
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
