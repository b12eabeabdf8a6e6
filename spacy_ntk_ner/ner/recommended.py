"""The recommended training configs of `ntk_ner`, and `init-config`, which writes one.

The configs are package data (`spacy_ntk_ner/configs/cpu.cfg` and `trf.cfg`; the
repository's `configs/` links to them): complete configs as `spacy init config` writes
for spaCy's own components, with the calibration callback, the partial-label weight where
it was measured best (benchmarks/README.md) and the training block. This module imports
no spaCy.
"""

from importlib import resources
from pathlib import Path

from .._outputs import check_file_target, write_text
from ..errors import UserError

# The config file of each kind, by `gpu`.
CONFIG_FILES = {False: "cpu.cfg", True: "trf.cfg"}


def recommended_config(gpu: bool = False) -> str:
    """The text of a recommended config.

    gpu (bool): A transformer encoder with mixed precision, for a GPU (the `transformers`
        extra); otherwise spaCy's CNN tok2vec, for a CPU.
    RETURNS (str): The config, as `spacy train` reads it.
    """
    path = resources.files("spacy_ntk_ner") / "configs" / CONFIG_FILES[gpu]
    return path.read_text(encoding="utf8")


def init_config(output: Path, gpu: bool = False, overwrite: bool = False) -> None:
    """Write a recommended config to a file, under a temporary name and renamed. An
    existing file is replaced only when it holds one of the recommended configs as
    written (this command's own output, unedited), or when `overwrite` is set.

    output (Path): The config file to write; never a folder or a file in a pipeline.
    gpu (bool): See `recommended_config`.
    overwrite (bool): Replace a file that holds something else.
    """
    check_file_target(output, [])
    if output.exists() and not overwrite:
        ours = {recommended_config(kind).encode("utf8") for kind in CONFIG_FILES}
        if output.read_bytes() not in ours:
            raise UserError(
                f"{output}: exists and is not a config init-config wrote (or was edited "
                "since); add --overwrite to replace it, or name another file"
            )
    write_text(output, recommended_config(gpu))
