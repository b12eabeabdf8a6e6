"""The one output layer every command writes through: which targets it may write, what
an output folder holds, and what a rerun into it means.

- A target is refused when it is one of the command's inputs, lies inside a folder the
  command reads, holds one of its inputs, or is a pipeline folder or a file inside one
  (unless writing that pipeline is the command's job).
- An output folder records what it holds in `manifest.json`: the command, its inputs
  (paths, sizes, modification times), the settings that shape the output, and the
  files written. A rerun with the same inputs and settings replaces or resumes; one
  with other inputs or settings is refused, naming the difference, unless the command
  is told to overwrite, which removes only the files the manifest lists.
- Files are written under a temporary name and renamed (`_fs.atomic_file`).
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set

from ._fs import TMP_PREFIX, atomic_file
from .errors import UserError

MANIFEST = "manifest.json"
TOOL = "spacy-ntk-ner"
# How many files not written by the command an error message names.
N_NAMED = 5

Say = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


def pipeline_of(path: Path) -> Optional[Path]:
    """The spaCy pipeline folder that `path` is or lies in: the nearest folder, `path`
    itself included, that holds both `config.cfg` and `meta.json`.

    path (Path): A file or folder, existing or not.
    RETURNS (Optional[Path]): The pipeline folder, or None.
    """
    for folder in [path, *path.parents]:
        if (folder / "config.cfg").is_file() and (folder / "meta.json").is_file():
            return folder
    return None


def check_target(
    target: Path,
    inputs: Iterable[Path],
    option: Optional[str] = None,
    *,
    writes_pipeline: bool = False,
    inside_inputs: bool = False,
    kind: str = "target",
) -> None:
    """Refuse, with one line naming the target, one the command must not write: one of
    its inputs, a path inside a folder it reads or a folder holding one of its inputs,
    a pipeline folder or a file inside one.

    target (Path): The file or folder the command would write.
    inputs (Iterable[Path]): The files and folders the command reads.
    option (Optional[str]): The option that names the target ("--output"); None for a
        positional argument.
    writes_pipeline (bool): The command's job is to write a pipeline there.
    inside_inputs (bool): The target folder may be, lie in or hold an input folder: the
        command leaves its own output out of what it reads.
    kind (str): What the message calls the target ("file", "folder").
    """
    name = f"{option} {target}" if option else str(target)
    resolved = target.resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        if resolved == src and not (inside_inputs and src.is_dir()):
            raise UserError(f"{name}: is one of the inputs; name another {kind} to write")
        if inside_inputs:
            continue
        if src.is_dir() and src in resolved.parents:
            raise UserError(f"{name}: lies inside the input folder {inp}; name a target outside it")
        if resolved in src.parents:
            raise UserError(f"{name}: holds the input {inp}; name another {kind} to write")
    pipeline = pipeline_of(resolved)
    if pipeline is not None and not (writes_pipeline and pipeline == resolved):
        what = "is a pipeline" if pipeline == resolved else f"lies in the pipeline {pipeline}"
        raise UserError(f"{name}: {what}; name a target outside it")


def check_file_target(target: Path, inputs: Iterable[Path], option: Optional[str] = None) -> None:
    """Refuse a single-file target that is a folder, or that `check_target` refuses."""
    if target.is_dir():
        name = f"{option} {target}" if option else str(target)
        raise UserError(f"{name}: is a folder; name the file to write")
    check_target(target, inputs, option, kind="file")


def write_text(target: Path, text: str) -> None:
    """Write a single-file output under a temporary name and rename it into place."""
    with atomic_file(target) as fh:
        fh.write(text)


def fingerprint(files: Iterable[Path]) -> List[Dict[str, Any]]:
    """RETURNS (List[Dict[str, Any]]): Each file's resolved path, size and modification
    time (ns), sorted by path: what says that two runs read the same inputs."""
    rows = []
    for f in files:
        st = Path(f).stat()
        rows.append(
            {"path": str(Path(f).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        )
    return sorted(rows, key=lambda r: r["path"])


@dataclass
class Manifest:
    """What an output folder holds: who wrote it from what, and which files.

    command (str): The command that wrote it.
    inputs (Optional[List[Dict[str, Any]]]): `fingerprint` of its inputs (command-specific
        keys allowed); None when an earlier version did not record them.
    settings (Optional[Dict[str, Any]]): The settings that shape the output (JSON
        values); None when not recorded.
    files (List[str]): The files written, relative to the folder, `/`-separated.
    extra (Dict[str, Any]): What the command keeps besides (a model's fingerprint, the
        shards done so far).
    """

    command: str
    inputs: Optional[List[Dict[str, Any]]]
    settings: Optional[Dict[str, Any]]
    files: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            **self.extra,
            "tool": TOOL,
            "command": self.command,
            "inputs": self.inputs,
            "settings": self.settings,
            "files": sorted(set(self.files)),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Manifest":
        known = {"tool", "command", "inputs", "settings", "files"}
        inputs = data.get("inputs")
        settings = data.get("settings")
        files = data.get("files")
        return cls(
            command=str(data["command"]),
            inputs=list(inputs) if isinstance(inputs, list) else None,
            settings=dict(settings) if isinstance(settings, dict) else None,
            files=[str(f) for f in files] if isinstance(files, list) else [],
            extra={k: v for k, v in data.items() if k not in known},
        )

    def differences(self, new: "Manifest", contents: bool = True) -> List[str]:
        """What differs between this (earlier) run and `new`, in words: other inputs,
        and each setting with its old and new value. What was not recorded is not
        compared.

        new (Manifest): This run's manifest.
        contents (bool): Compare the inputs' sizes and modification times too, not only
            their paths (a run that resumes must; one that replaces reads them anew).
        RETURNS (List[str]): The differences; empty when the runs are the same job.
        """
        found = []
        if self.inputs is not None and new.inputs is not None:
            old_paths = sorted(str(r.get("path")) for r in self.inputs)
            new_paths = sorted(str(r.get("path")) for r in new.inputs)
            if old_paths != new_paths:
                gone = sorted(set(old_paths) - set(new_paths))
                added = sorted(set(new_paths) - set(old_paths))
                shown = (added or gone)[:1]
                found.append(
                    "other inputs"
                    + (f" ({'now ' if added else 'not '}{shown[0]}, ...)" if shown else "")
                )
            elif contents and self.inputs != new.inputs:
                found.append("other inputs (the same files, changed since)")
        if self.settings is not None and new.settings is not None:
            keys = sorted(set(self.settings) | set(new.settings))
            changed = [k for k in keys if self.settings.get(k) != new.settings.get(k)]
            if changed:
                pairs = ", ".join(
                    f"{k} {self.settings.get(k)!r} -> {new.settings.get(k)!r}" for k in changed
                )
                found.append(f"other settings ({pairs})")
        return found


def read_manifest(
    folder: Path,
    command: str,
    legacy: Optional[Callable[[Path], Optional[Manifest]]] = None,
    say: Say = _quiet,
) -> Optional[Manifest]:
    """Read the manifest of an output folder, or the record an earlier version of the
    command kept there (`legacy`), saying once (`say`) that it is upgraded.

    folder (Path): The output folder.
    command (str): The command that reads it: a manifest of another command is refused.
    legacy (Optional[Callable[[Path], Optional[Manifest]]]): Reads an older record.
    say (Callable[[str], None]): Where the upgrade notice goes.
    RETURNS (Optional[Manifest]): The manifest, or None for a folder without one.
    """
    path = folder / MANIFEST
    if path.is_file():
        try:
            data = json.loads(path.read_text("utf8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict) and data.get("tool") == TOOL and "command" in data:
            if data["command"] != command:
                raise UserError(
                    f"{folder}: written by {data['command']}, not {command}; use another folder"
                )
            return Manifest.from_dict(data)
    old = legacy(folder) if legacy is not None else None
    if old is None and path.is_file():
        raise UserError(f"{path}: not a manifest written by this command; use another folder")
    if old is not None:
        say(f"{folder}: written by an earlier version; its record is upgraded to {MANIFEST}")
    return old


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write `manifest.json` into `folder` under a temporary name, then rename it."""
    with atomic_file(folder / MANIFEST) as fh:
        fh.write(json.dumps(manifest.to_dict(), indent=2) + "\n")


def foreign_files(folder: Path, own: Iterable[str], keep: Iterable[str] = ()) -> List[str]:
    """The files in `folder` (recursively) that are neither in `own` nor `keep`, nor this
    package's temporary files, relative and sorted.

    folder (Path): The output folder.
    own (Iterable[str]): Relative paths the manifest lists.
    keep (Iterable[str]): Relative paths the folder's machinery keeps (a lock file) or
        the command allows there (its own inputs).
    RETURNS (List[str]): The files the command did not write.
    """
    allowed = set(own) | set(keep) | {MANIFEST}
    found = []
    root = folder.resolve()
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        for f in files:
            rel = Path(current, f).relative_to(root).as_posix()
            if rel not in allowed and not f.startswith(TMP_PREFIX):
                found.append(rel)
    return sorted(found)


def refuse_foreign(
    folder: Path, foreign: Sequence[str], command: str, option: Optional[str] = None
) -> None:
    """Raise a one-line `UserError` naming the first files `command` did not write.

    folder (Path): The output folder.
    foreign (Sequence[str]): What `foreign_files` found.
    command (str): The command, as the message names it.
    option (Optional[str]): The option that names the folder ("--report"); None for a
        positional argument.
    """
    if foreign:
        named = ", ".join(foreign[:N_NAMED])
        more = f" and {len(foreign) - N_NAMED} more" if len(foreign) > N_NAMED else ""
        name = f"{option} {folder}" if option else str(folder)
        raise UserError(
            f"{name}: holds files that {command} did not write ({named}{more}); "
            f"{command} into an empty or new folder, or move them away"
        )


def check_rerun(
    folder: Path, old: Optional[Manifest], new: Manifest, overwrite: bool, contents: bool = True
) -> bool:
    """Decide what a run into a folder with an earlier run's manifest means.

    folder (Path): The output folder.
    old (Optional[Manifest]): The earlier run's manifest, if any.
    new (Manifest): This run's.
    overwrite (bool): The user asked to start over.
    contents (bool): See `Manifest.differences`.
    RETURNS (bool): True when this run goes on from the earlier one (same inputs and
        settings, no overwrite); False when it starts over.
    """
    if old is None:
        return False
    differ = old.differences(new, contents)
    if differ and not overwrite:
        raise UserError(
            f"{folder}: an earlier {old.command} wrote it with {'; '.join(differ)}: rerun "
            "as it was, add --overwrite to replace it, or use another folder"
        )
    return not overwrite


def remove_listed(folder: Path, files: Iterable[str]) -> None:
    """Remove the listed files (and the folders they leave empty) from `folder`: only
    what a manifest lists, never anything else; a listed path outside it is skipped."""
    root = folder.resolve()
    emptied: Set[Path] = set()
    for rel in sorted(set(files)):
        p = (root / rel).resolve()
        if root not in p.parents or not p.is_file():
            continue
        p.unlink()
        emptied.update(q for q in p.parents if root in q.parents)
    for d in sorted(emptied, key=lambda q: len(q.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass
