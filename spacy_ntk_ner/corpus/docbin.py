"""Write spaCy `DocBin` files straight from token arrays, and read them back.

Writing: `DocBin.add` walks every token of a `Doc` in Python; building the `Doc` first costs
as much again. The converter already holds each token's text, entity code and
label in plain lists, so it writes the DocBin's columns (ORTH, ENT_IOB, ENT_TYPE,
SENT_START), spaces, lengths and strings itself, in the layout `DocBin.from_bytes`
reads. Ids come from `spacy.strings.get_string_id`, which gives spaCy's fixed ids
for the strings that are symbols (a plain hash of those fails to load with E018),
and adds nothing to a growing `StringStore`.

Reading: the `.spacy` files of a file or folder in shard order, as BIO sentences
(`export`) or as training examples for a pipeline (`evaluate`, `calibrate`).
"""

import re
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy
import srsly
from spacy.attrs import ENT_IOB, ENT_TYPE, ORTH, SENT_START
from spacy.language import Language
from spacy.strings import get_string_id
from spacy.tokens import DocBin
from spacy.training import Corpus, Example
from spacy.vocab import Vocab

from ..errors import UserError
from .files import BIOError
from .grouping import DocRecord
from .iob import IOB_I
from .writer import doc_to_tags, label_problem, token_problem

# DocBin requires ORTH first and the rest sorted, as `DocBin.__init__` orders them.
ATTRS = [ORTH] + sorted([ENT_IOB, ENT_TYPE, SENT_START])
_COLUMN = {attr: i for i, attr in enumerate(ATTRS)}
# What `Doc.spans.to_bytes()` gives for a Doc without span groups, as DocBin stores it.
_NO_SPAN_GROUPS = srsly.msgpack_dumps([])


def token_columns(
    words: Sequence[str],
    labels: Sequence[str],
    iob: Sequence[int],
    sent_starts: Sequence[int],
    string_id: Callable[[str], int],
) -> numpy.ndarray:
    """Encode tokens as the `(n, len(ATTRS))` uint64 array that `Doc.from_array` and a
    DocBin's "tokens" hold, in the column order of `ATTRS`.

    words (Sequence[str]): Tokens.
    labels (Sequence[str]): Entity labels ("" outside).
    iob (Sequence[int]): ENT_IOB codes.
    sent_starts (Sequence[int]): 1 where a sentence starts, -1 elsewhere.
    string_id (Callable[[str], int]): The id of a string (0 for "").
    RETURNS (numpy.ndarray): The columns.
    """
    n = len(words)
    tokens = numpy.empty((n, len(ATTRS)), dtype="uint64")
    tokens[:, _COLUMN[ORTH]] = numpy.fromiter(map(string_id, words), dtype="uint64", count=n)
    tokens[:, _COLUMN[ENT_TYPE]] = numpy.fromiter(map(string_id, labels), dtype="uint64", count=n)
    tokens[:, _COLUMN[ENT_IOB]] = numpy.asarray(iob, dtype="uint64")
    # SENT_START is -1 for "not a start"; the uint64 columns hold it wrapped.
    tokens[:, _COLUMN[SENT_START]] = numpy.asarray(sent_starts, dtype="int64").view("uint64")
    return tokens


class DocBinWriter:
    """Collects Doc records and writes them as one DocBin file.

    Holds flat per-token lists, so memory is bounded by what one shard holds.
    """

    def __init__(self) -> None:
        self.words: List[str] = []
        self.labels: List[str] = []
        self.iob: List[int] = []
        self.sent_starts: List[int] = []
        self.spaces: List[bool] = []
        self.lengths: List[int] = []

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        """RETURNS (int): The tokens held."""
        return len(self.words)

    def add(self, record: DocRecord) -> None:
        """Add one Doc's annotation.

        record (DocRecord): The Doc.
        """
        self.words.extend(record.words)
        self.labels.extend(record.labels)
        self.iob.extend(record.iob)
        self.sent_starts.extend(record.sent_starts)
        self.spaces.extend(record.spaces)
        self.lengths.append(len(record.words))

    def to_bytes(self) -> bytes:
        """Serialize what was added, as `DocBin.to_bytes` would.

        RETURNS (bytes): The DocBin's bytes.
        """
        strings = set(self.words)
        strings.update(self.labels)
        # "" stays in the strings, as spaCy's DocBin keeps it (the label of O tokens).
        ids: Dict[str, int] = {s: get_string_id(s) for s in strings}
        tokens = token_columns(self.words, self.labels, self.iob, self.sent_starts, ids.__getitem__)
        msg = {
            "version": "0.1",
            "attrs": ATTRS,
            "tokens": tokens.tobytes("C"),
            "spaces": numpy.asarray(self.spaces, dtype=bool).tobytes("C"),
            "lengths": numpy.asarray(self.lengths, dtype="int32").tobytes("C"),
            "strings": sorted(strings),
            "cats": [{} for _ in self.lengths],
            "flags": [{"has_unknown_spaces": False} for _ in self.lengths],
            "span_groups": [_NO_SPAN_GROUPS for _ in self.lengths],
        }
        return zlib.compress(srsly.msgpack_dumps(msg))

    def to_disk(self, path: Union[str, Path]) -> None:
        """Write the DocBin file.

        path (Union[str, Path]): The `.spacy` file to write.
        """
        Path(path).write_bytes(self.to_bytes())


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
