"""The `spacy-ntk-ner` command line (`python -m spacy_ntk_ner`)."""

from .main import main

__all__ = ["main"]
