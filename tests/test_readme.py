"""The README's quickstart runs as written, after `pip install .` into an empty
environment: write the config, convert a BIO file, train with spaCy, evaluate, and read
entities and scores from the saved model."""

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import List

import pytest
from util import REPO

README = (REPO / "README.md").read_text(encoding="utf8")


def quickstart_blocks(lang: str) -> List[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def shell_commands(block: str, python: str = sys.executable) -> List[List[str]]:
    """The block's commands, continuation lines joined, `python` as the given one."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert words[0] == "python", line
            commands.append([python, *words[1:]])
    return commands


def test_the_quickstart_has_one_shell_and_one_python_block() -> None:
    assert len(quickstart_blocks("bash")) == 1 and len(quickstart_blocks("python")) == 1
    (block,) = quickstart_blocks("bash")
    assert [c[1:3] for c in shell_commands(block)] == [
        ["-m", "spacy_ntk_ner"],
        ["-m", "spacy_ntk_ner"],
        ["-m", "spacy"],
        ["-m", "spacy_ntk_ner"],
    ]


def source_tree(folder: Path) -> Path:
    """A copy of the repository as a clone has it (tracked and new files, not what git
    ignores: no .venv, no build folder), for `pip install .` to build from."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src, dst = REPO / name, folder / name
        if src.exists() or src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    return folder


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new, empty virtual environment after `pip install .` of the
    repository and nothing else (no extras, no make targets): what the README's
    install line gives a user."""
    work = tmp_path_factory.mktemp("fresh")
    env = work / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source_tree(work / "src"))],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return python


@pytest.mark.slow
def test_the_quickstart_runs_as_written_after_pip_install(
    tmp_path: Path, fresh_python: Path
) -> None:
    """The README's quickstart, verbatim, with the `python` of an environment that has
    only `pip install .`: it needs no torch (the CPU config does not use it)."""
    res = subprocess.run(
        [str(fresh_python), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
        capture_output=True,
        text=True,
    )
    assert res.stdout.strip() == "None", res.stderr
    shutil.copytree(REPO / "assets", tmp_path / "assets")
    (block,) = quickstart_blocks("bash")
    for command in shell_commands(block, str(fresh_python)):
        res = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, (command, res.stderr[-2000:])
    assert re.search(r"^\| \*\*all\*\* +\|", res.stdout, re.M)
    (code,) = quickstart_blocks("python")
    res = subprocess.run(
        [str(fresh_python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    # One line per decoded entity ("TEXT LABEL SCORE"), then doc.ents.
    assert len(lines) >= 2 and lines[-1].startswith("(")
    for line in lines[:-1]:
        text, label, score = line.rsplit(" ", 2)
        assert text and label and len(score.split(".")[-1]) <= 3
