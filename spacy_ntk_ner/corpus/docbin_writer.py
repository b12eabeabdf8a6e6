"""Write spaCy `DocBin` files straight from token lists, without importing spaCy.

`DocBin.add` walks every token of a `Doc` in Python; building the `Doc` first costs as
much again. The converter already holds each token's text, entity code and label in
plain lists, so it writes the DocBin's columns (ORTH, ENT_IOB, ENT_TYPE, SENT_START),
spaces, lengths and strings itself, in the layout `DocBin.from_bytes` reads. The ids
are spaCy's (`strings`): its fixed ids for the strings that are symbols (a plain hash
of those fails to load with E018), the hash of the others.
"""

import zlib
from array import array
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


class _Numbering(Dict[str, int]):
    """Numbers strings in the order they are first seen."""

    def __missing__(self, key: str) -> int:
        self[key] = number = len(self)
        return number


class DocBinWriter:
    """Collects Doc records and writes them as one DocBin file.

    Holds each distinct string once and a few bytes per token (arrays of numbers), so
    memory is bounded by what one shard holds and is small beside its text.
    """

    def __init__(self) -> None:
        self._strings = _Numbering()  # every token and label
        self._orth = array("I")  # the number of each token's text
        self._ent_type = array("I")  # and of its label
        # bytearray.extend takes a list of small ints at C speed, array.extend does not.
        self._iob = bytearray()
        self._sent_starts: List[int] = []  # 1 and -1 (shared int objects)
        self._spaces = bytearray()
        self._lengths: List[int] = []

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def n_tokens(self) -> int:
        """RETURNS (int): The tokens held."""
        return len(self._orth)

    def add(self, record: DocRecord) -> None:
        """Add one Doc's annotation.

        record (DocRecord): The Doc.
        """
        number = self._strings.__getitem__
        self._orth.extend(map(number, record.words))
        self._ent_type.extend(map(number, record.labels))
        self._iob.extend(record.iob)
        self._sent_starts.extend(record.sent_starts)
        self._spaces.extend(record.spaces)
        self._lengths.append(len(record.words))

    def to_bytes(self) -> bytes:
        """Serialize what was added, as `DocBin.to_bytes` would.

        RETURNS (bytes): The DocBin's bytes.
        """
        strings = list(self._strings)
        ids = numpy.array(string_ids(strings), dtype="uint64")
        tokens = numpy.empty((len(self._orth), len(ATTRS)), dtype="uint64")
        tokens[:, _COLUMN[ORTH]] = ids[numpy.frombuffer(self._orth, dtype=numpy.uintc)]
        tokens[:, _COLUMN[ENT_TYPE]] = ids[numpy.frombuffer(self._ent_type, dtype=numpy.uintc)]
        tokens[:, _COLUMN[ENT_IOB]] = numpy.frombuffer(self._iob, dtype=numpy.uint8)
        # SENT_START is -1 for "not a start"; the uint64 columns hold it wrapped.
        starts = numpy.asarray(self._sent_starts, dtype="int64")
        tokens[:, _COLUMN[SENT_START]] = starts.view("uint64")
        msg = {
            "version": "0.1",
            "attrs": ATTRS,
            # The array's own memory: a copy as bytes would double the largest part.
            "tokens": tokens.data.cast("B"),
            "spaces": bytes(self._spaces),
            "lengths": numpy.asarray(self._lengths, dtype="int32").tobytes("C"),
            # "" stays in the strings, as spaCy's DocBin keeps it (the label of O tokens).
            "strings": sorted(strings),
            "cats": [{} for _ in self._lengths],
            "flags": [{"has_unknown_spaces": False} for _ in self._lengths],
            "span_groups": [_NO_SPAN_GROUPS for _ in self._lengths],
        }
        return zlib.compress(srsly.msgpack_dumps(msg))

    def to_disk(self, path: Union[str, Path]) -> None:
        """Write the DocBin file.

        path (Union[str, Path]): The `.spacy` file to write.
        """
        Path(path).write_bytes(self.to_bytes())
