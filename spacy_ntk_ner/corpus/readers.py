"""BIO files as spaCy objects: `read_bio` yields Docs, and the `spacy_ntk_ner.BIOCorpus.v1`
reader trains straight from BIO files, without converting first."""

from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from spacy.vocab import Vocab

from .docbin_writer import ATTRS, token_columns
from .files import PathLike
from .grouping import DocRecord, iter_records
from .options import ReadOptions
from .repair import Repair


def read_bio(
    path: PathLike,
    vocab: Optional[Vocab] = None,
    options: ReadOptions = ReadOptions(),
    on_repair: Optional[Callable[[Repair], None]] = None,
) -> Iterator[Doc]:
    """Read a BIO file or directory as spaCy Docs with entities and sentence starts.

    path (PathLike): A file or a directory.
    vocab (Optional[Vocab]): The vocab for the Docs; a new one if None.
    options (ReadOptions): How to read it.
    on_repair (Optional[Callable[[Repair], None]]): Called for every repaired tag.
    YIELDS (Doc): The Docs.
    """
    vocab = vocab if vocab is not None else Vocab()
    for rec in iter_records([path], options, on_repair):
        yield record_to_doc(rec, vocab)


def record_to_doc(rec: DocRecord, vocab: Vocab) -> Doc:
    """Build a Doc from a record.

    rec (DocRecord): The record.
    vocab (Vocab): The vocab.
    RETURNS (Doc): The Doc.
    """
    doc = Doc(vocab, words=rec.words, spaces=rec.spaces)
    add = vocab.strings.add

    def string_id(s: str) -> int:
        return add(s) if s else 0

    columns = token_columns(rec.words, rec.labels, rec.iob, rec.sent_starts, string_id)
    return doc.from_array(ATTRS, columns)  # type: ignore[arg-type]


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
    format (str): "auto", "wikiser" or "conll" (named as the config key and `--format`).
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
