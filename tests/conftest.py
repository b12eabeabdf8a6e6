import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest


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


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
