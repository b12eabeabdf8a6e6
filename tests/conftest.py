import os
from pathlib import Path
from typing import List, Optional

import pytest
from hypothesis import settings
from spacy.tokens import DocBin
from util import bio_examples, train_pipeline

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


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `model/` (a pipeline with one `ntk_ner`, trained until it gets its
    2 texts right) and `data.spacy` (those texts): for the commands' tests. Tests copy
    what they change."""
    folder = tmp_path_factory.mktemp("tiny")
    texts = [("Python runs on Linux", ["B-L", "O", "O", "B-O"]), ("I use Linux", ["O", "O", "B-O"])]
    nlp, examples = train_pipeline(lambda nlp: bio_examples(nlp, texts), steps=40)
    nlp.to_disk(folder / "model")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(folder / "data.spacy")
    return folder
