"""Annotation at scale: a pipeline over corpora, on this machine or a Ray cluster,
resumably. `annotate` is the entry point the README documents."""

from .job import annotate

__all__ = ["annotate"]
