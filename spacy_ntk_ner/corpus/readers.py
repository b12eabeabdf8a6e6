"""A corpus reader that trains straight from BIO files, without converting first."""

from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from spacy.language import Language
from spacy.training import Example
from spacy.util import registry

from .convert import ReadOptions, iter_records, record_to_doc


@registry.readers("spacy_ntk_ner.BIOCorpus.v1")
def create_bio_corpus(
    path: Union[str, Path],
    format: str = "auto",
    tag_column: Optional[int] = None,
    scheme: str = "auto",
    n_sents: int = 1,
    glob: str = "*",
) -> Callable[[Language], Iterator[Example]]:
    """Read a BIO file or directory as training examples (for `[corpora]`).

    Ill-formed tags are repaired as the converter repairs them; other problems stop
    with `FILE:LINE: what is wrong`. For large corpora, convert once with
    `python -m spacy_ntk_ner convert` and use `spacy.Corpus.v1` instead.

    path (Union[str, Path]): A BIO file or a directory of them.
    format (str): "auto", "wikiser" or "conll".
    tag_column (Optional[int]): 1-based tag column, or None to detect it.
    scheme (str): "auto", "iob2", "iob1" or "bioes".
    n_sents (int): Sentences per Doc.
    glob (str): Which files to take under a directory.
    RETURNS (Callable[[Language], Iterator[Example]]): The reader.
    """
    options = ReadOptions(
        format=format, tag_column=tag_column, scheme=scheme, n_sents=n_sents, glob=glob
    )

    def read(nlp: Language) -> Iterator[Example]:
        for rec in iter_records([path], options):
            reference = record_to_doc(rec, nlp.vocab)
            yield Example(nlp.make_doc(reference.text), reference)

    return read
