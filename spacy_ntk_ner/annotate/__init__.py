"""Annotation at scale: a pipeline over corpora, on this machine or a Ray cluster,
resumably. `annotate` is the entry point the README documents.

The public names load on first use (PEP 562), so that importing a light module of
this package, such as the option choices that `annotate --help` offers, imports no
spaCy pipeline.
"""

import importlib
from typing import Any

# Each public name and the module of this package that defines it.
_EXPORTS = {
    "annotate": "job",
    "run_annotation": "job",
    "AnnotateOptions": "options",
    "Settings": "options",
    "InputOptions": "inputs",
    "INPUT_FORMATS": "inputs",
    "ON_ERROR": "inputs",
    "format_annotate_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
