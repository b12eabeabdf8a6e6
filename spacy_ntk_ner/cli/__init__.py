"""The `spacy-ntk-ner` command line (`python -m spacy_ntk_ner`)."""

from .app import main

__all__ = ["main"]
