"""Helpers shared by the tests (conftest.py holds pytest's hooks only)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Set

REPO = Path(__file__).resolve().parent.parent


def write(folder: Path, name: str, text: str, encoding: str = "utf8") -> Path:
    """Write a fixture file and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def run_cli(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m spacy_ntk_ner ARGS` in a fresh process, outside the source tree."""
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.run(
        [sys.executable, "-m", "spacy_ntk_ner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def modules_after(code: str, cwd: Path) -> Set[str]:
    """Run CODE in a fresh `python -c` and return the modules it left imported."""
    script = f"{code}\nimport sys\nprint('\\n' + ' '.join(sorted(sys.modules)))\n"
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return set(res.stdout.splitlines()[-1].split())


def load_script(name: str) -> ModuleType:
    """Import `scripts/NAME.py` of the repository as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
