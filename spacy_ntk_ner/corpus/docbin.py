"""Read spaCy `DocBin` files back: the `.spacy` files of a file or folder in shard order,
as BIO sentences (`export`) or as training examples for a pipeline (`evaluate`,
`calibrate`). They are written by `docbin_writer`.
"""

import re
from pathlib import Path
from typing import Any, Iterator, List, Tuple

from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Corpus, Example
from spacy.vocab import Vocab

from ..errors import UserError
from .docbin_writer import DocBinWriter as DocBinWriter
from .files import BIOError
from .iob import IOB_I
from .writer import doc_to_tags, label_problem, token_problem


def _shard_order(path: Path) -> List[Any]:
    # Numbers compare as numbers: shard-99999 comes before shard-100000.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def docbin_files(path: Path) -> List[Path]:
    """List a `.spacy` file, or the `.spacy` files under a directory in shard order.

    path (Path): A `.spacy` file or a directory.
    RETURNS (List[Path]): The files.
    """
    if path.is_dir():
        files = sorted(path.rglob("*.spacy"), key=lambda f: _shard_order(f.relative_to(path)))
        if not files:
            raise BIOError(path, 0, "directory holds no .spacy files")
        return files
    if path.exists():
        return [path]
    raise BIOError(path, 0, "no such file or directory")


def iter_docbin_sentences(path: Path) -> Iterator[Tuple[List[str], List[str]]]:
    """Read the sentences of a DocBin file, or of every `.spacy` file under a directory.
    A token or label that BIO text cannot hold (a whitespace token, a tab or line
    break, a `-DOCSTART-` token), or an entity that runs across a sentence start (BIO
    text would read it back as two), stops with an error naming the file and doc.

    path (Path): A `.spacy` file or a directory.
    YIELDS (Tuple[List[str], List[str]]): Tokens and IOB2 tags of each sentence.
    """
    vocab = Vocab()
    for f in docbin_files(path):
        try:
            docbin = DocBin().from_disk(f)
        except ValueError as err:
            raise BIOError(f, 0, f"not a DocBin file ({err})") from None
        for i, doc in enumerate(docbin.get_docs(vocab)):
            iob = doc.to_array("ENT_IOB").tolist()
            labels = [t.ent_type_ for t in doc]
            words = [t.text for t in doc]
            _check_writable(f, i, words, labels)
            tags = doc_to_tags(iob, labels)
            starts = [k for k, t in enumerate(doc) if k == 0 or t.is_sent_start]
            _check_sentences(f, i, starts, iob)
            for a, b in zip(starts, starts[1:] + [len(doc)]):
                yield words[a:b], tags[a:b]


def _check_writable(path: Path, doc_index: int, words: List[str], labels: List[str]) -> None:
    for j, (word, label) in enumerate(zip(words, labels)):
        problem = token_problem(word) or (label_problem(label) if label else None)
        if problem:
            raise BIOError(
                path, 0, f"doc {doc_index + 1}, token {j + 1}: {problem}; nothing was written"
            )


def _check_sentences(path: Path, doc_index: int, starts: List[int], iob: List[int]) -> None:
    for k in starts[1:]:
        if iob[k] == IOB_I:
            raise BIOError(
                path,
                0,
                f"doc {doc_index + 1}, token {k + 1}: an entity runs across the start of a "
                "sentence, which BIO text cannot hold; nothing was written",
            )


def load_examples(nlp: Language, data: Path, limit: int = 0) -> List[Example]:
    """Read the examples of a `.spacy` file or folder, with a clear error if there are none.

    nlp (Language): The pipeline whose tokenizer makes the predicted docs.
    data (Path): A `.spacy` file or a folder of them.
    limit (int): At most this many (0: all).
    RETURNS (List[Example]): The examples.
    """
    if not data.exists():
        raise UserError(f"{data}: no such file or directory")
    if data.is_dir() and not any(data.rglob("*.spacy")):
        raise UserError(f"{data}: holds no .spacy files")
    for f in docbin_files(data):
        # Each file is read before any is used: a bad last file is named in one line,
        # before anything is evaluated or written.
        try:
            DocBin().from_disk(f)
        except ValueError as err:
            raise BIOError(f, 0, f"not a DocBin file ({err})") from None
    examples = list(Corpus(data, limit=limit)(nlp))
    if not examples:
        raise UserError(f"{data}: holds no documents")
    return examples
