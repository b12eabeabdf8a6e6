"""The converter's public names at the path the README gives them
(`spacy_ntk_ner.convert.read_bio`); they live in `spacy_ntk_ner.corpus.convert`."""

from .corpus.convert import ReadOptions, convert, read_bio

__all__ = ["ReadOptions", "convert", "read_bio"]
