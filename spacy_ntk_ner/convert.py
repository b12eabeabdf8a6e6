"""The converter's public names at the path the README gives them
(`spacy_ntk_ner.convert.read_bio`); they live in `spacy_ntk_ner.corpus`."""

from .corpus.convert import convert
from .corpus.options import ReadOptions
from .corpus.readers import read_bio

__all__ = ["ReadOptions", "convert", "read_bio"]
