import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

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


# cudaErrorInsufficientDriver (35) and cudaErrorNoDevice (100): no usable GPU here.
NO_DEVICE = (35, 100)


def missing_gpu() -> Optional[str]:
    """Why the `gpu` tests cannot run here, or None. Only a missing cupy or a missing
    device skips them; any other cupy error is raised, so those tests fail."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as err:
        if err.status in NO_DEVICE:
            return f"no CUDA device ({err})"
        raise
    return None if n > 0 else "no CUDA device"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    reason = missing_gpu()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
