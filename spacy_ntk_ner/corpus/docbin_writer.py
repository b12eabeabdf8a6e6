"""Write spaCy `DocBin` files straight from token lists, without importing spaCy.

`DocBin.add` walks every token of a `Doc` in Python; building the `Doc` first costs as
much again. The converter already holds each token's text, entity code and label in
plain lists, so it writes the DocBin's columns (ORTH, ENT_IOB, ENT_TYPE, SENT_START),
spaces, lengths and strings itself, in the layout `DocBin.from_bytes` reads. The ids
are spaCy's (`strings`): its fixed ids for the strings that are symbols (a plain hash
of those fails to load with E018), the hash of the others.
"""

import zlib
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Union

import numpy
import srsly

from .grouping import DocRecord
from .strings import ENT_IOB, ENT_TYPE, ORTH, SENT_START, string_ids

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
        ordered = sorted(strings)
        ids: Dict[str, int] = dict(zip(ordered, string_ids(ordered)))
        tokens = token_columns(self.words, self.labels, self.iob, self.sent_starts, ids.__getitem__)
        msg = {
            "version": "0.1",
            "attrs": ATTRS,
            "tokens": tokens.tobytes("C"),
            "spaces": numpy.asarray(self.spaces, dtype=bool).tobytes("C"),
            "lengths": numpy.asarray(self.lengths, dtype="int32").tobytes("C"),
            "strings": ordered,
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
