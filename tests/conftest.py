import os
from typing import List, Optional

import pytest
from hypothesis import settings

# Under CI the property tests draw the same examples every run, so a red CI is a real
# regression, not a new random draw; elsewhere they explore new examples each run.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

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
