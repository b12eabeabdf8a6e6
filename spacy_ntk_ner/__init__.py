"""spacy-ntk-ner: BIO corpora to trained, packaged spaCy NER pipelines.

Kept free of heavy imports: spaCy imports this package (through the `ntk_ner`
factory's entry point) every time it builds a `Language`.
"""

__version__ = "0.1.0"
