"""scripts/gpu_check.sh and scripts/gpu_bench.py, run on the CPU: the check that gets one
call on a GPU must train for real, keep every stage's log and its JSON, and print its
table whatever failed."""

import warnings

import numpy
import pytest


def test_the_cupy_dlpack_deprecation_alone_is_not_an_error() -> None:
    """pyproject.toml ignores the warning cupy >= 13.4 gives at each `toDlpack` (thinc
    8.3's xp2torch calls it at every transformer call on a GPU), and no other."""
    dlpack = (
        "This function is deprecated and will be removed in a future release. "
        "Use the cupy.from_dlpack() array constructor instead."
    )
    warnings.warn(dlpack, numpy.exceptions.VisibleDeprecationWarning, stacklevel=1)
    with pytest.raises(numpy.exceptions.VisibleDeprecationWarning):
        warnings.warn("other", numpy.exceptions.VisibleDeprecationWarning, stacklevel=1)
    with pytest.raises(DeprecationWarning):
        warnings.warn(dlpack, DeprecationWarning, stacklevel=1)
