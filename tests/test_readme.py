"""The README's quickstart runs as written: convert a BIO file, train with spaCy,
evaluate, and read entities and scores from the saved model."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from util import REPO

README = (REPO / "README.md").read_text(encoding="utf8")


def quickstart_blocks(lang: str) -> List[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def shell_commands(block: str) -> List[List[str]]:
    """The block's commands, continuation lines joined, `python` as this interpreter."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            assert words[0] == "python", line
            commands.append([sys.executable, *words[1:]])
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


@pytest.mark.slow
def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(REPO / "assets", tmp_path / "assets")
    (block,) = quickstart_blocks("bash")
    for command in shell_commands(block):
        res = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, (command, res.stderr[-2000:])
    assert re.search(r"^\| \*\*all\*\* +\|", res.stdout, re.M)
    (code,) = quickstart_blocks("python")
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    # One line per decoded entity ("TEXT LABEL SCORE"), then doc.ents.
    assert len(lines) >= 2 and lines[-1].startswith("(")
    for line in lines[:-1]:
        text, label, score = line.rsplit(" ", 2)
        assert text and label and len(score.split(".")[-1]) <= 3
