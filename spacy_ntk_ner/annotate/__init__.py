"""Annotation at scale: a pipeline over corpora, on this machine or a Ray cluster,
resumably. `annotate` is the entry point the README documents."""

from .inputs import INPUT_FORMATS, ON_ERROR, InputOptions
from .job import annotate, run_annotation
from .options import AnnotateOptions, Settings
from .report import format_annotate_report

__all__ = [
    "annotate",
    "run_annotation",
    "AnnotateOptions",
    "Settings",
    "InputOptions",
    "INPUT_FORMATS",
    "ON_ERROR",
    "format_annotate_report",
]
