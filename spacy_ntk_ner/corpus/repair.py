"""Turn a sentence's BIO tags into spaCy's ENT_IOB codes and labels, repairing
ill-formed sequences and reporting each repair (the rules: docs/converting.md,
"Repairs")."""

from dataclasses import dataclass
from typing import AbstractSet, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .files import BIOError, clip
from .iob import IOB_B, IOB_I, IOB_O
from .syntax import split_tag


@dataclass
class Repair:
    """One repaired tag.

    path (str): The file.
    line (int): The line of the tag.
    kind (str): A short, stable description used to count repairs.
    message (str): What was wrong and what was done.
    """

    path: str
    line: int
    kind: str
    message: str


class TagDecoder:
    """Turns a sentence's tags into ENT_IOB codes and labels, repairing what is ill-formed.

    path (str): The file, for messages.
    scheme (str): "iob2", "iob1" or "bioes".
    on_invalid (str): "repair", or "error" to raise at the first repair instead.
    on_repair (Callable[[Repair], None]): Called for every repair.
    """

    def __init__(
        self,
        path: str,
        scheme: str,
        on_invalid: str,
        on_repair: Callable[[Repair], None],
    ) -> None:
        self.path = path
        self.scheme = scheme
        self.bioes = scheme == "bioes"
        self.iob1 = scheme == "iob1"
        self.strict = on_invalid == "error"
        self.on_repair = on_repair
        # (prefix, label) of every tag seen that needs no repair of its own.
        self._well_formed: Dict[str, Tuple[str, str]] = {}
        # IOB2 only: each such tag's ENT_IOB code where it is well placed, and its label.
        self._codes: Dict[str, int] = {}
        self._labels: Dict[str, str] = {}
        # Whether a tag may follow another: `_fits` of the pairs seen.
        self._pairs: Dict[Tuple[str, str], bool] = {}

    def _report(self, line: int, kind: str, message: str) -> None:
        if self.strict:
            raise BIOError(self.path, line, message)
        self.on_repair(Repair(self.path, line, kind, message))

    def decode(self, tags: Sequence[str], lines: Sequence[int]) -> Tuple[List[int], List[str]]:
        """Turn one sentence's tags into ENT_IOB codes (B 3, I 1, O 2) and labels ("" for
        O). An ill-formed tag or sequence is repaired and reported once as a `Repair`, or
        with on_invalid="error" raised as a `BIOError`; docs/converting.md ("Repairs")
        lists each case, what is done and what is reported.

        tags (Sequence[str]): The tags, as in the file.
        lines (Sequence[int]): The line of each tag.
        RETURNS (Tuple[List[int], List[str]]): ENT_IOB codes and labels, one per tag.
        """
        if tags:
            decoded = self._decode_iob2(tags)
            if decoded is not None:
                return decoded
        well_formed = self._well_formed
        bioes = self.bioes
        iob: List[int] = []
        labels: List[str] = []
        open_label = ""  # label of the entity the previous token belongs to
        pending_end = False  # BIOES: the open entity still needs its E-/L-
        for i, tag in enumerate(tags):
            split = well_formed.get(tag)
            prefix, label = split if split is not None else self._read_tag(tag, lines[i])
            if prefix == "O":
                if pending_end:
                    self._unclosed(lines[i - 1], open_label)
                iob.append(IOB_O)
                labels.append("")
                open_label = ""
                pending_end = False
                continue
            if prefix in "IEL":
                if open_label == label and (pending_end or not bioes):
                    iob.append(IOB_I)
                else:
                    self._start_without_b(tag, prefix, label, open_label, lines[i])
                    iob.append(IOB_B)
                pending_end = bioes and prefix == "I"
            else:  # B, S, U
                if pending_end:
                    self._unclosed(lines[i - 1], open_label)
                iob.append(IOB_B)
                pending_end = bioes and prefix == "B"
            open_label = label
            labels.append(label)
        if pending_end:
            self._unclosed(lines[-1], open_label)
        return iob, labels

    def _decode_iob2(self, tags: Sequence[str]) -> Optional[Tuple[List[int], List[str]]]:
        """What `decode` returns for IOB2 tags it has all seen and that need no repair,
        found per distinct tag and pair of neighbours rather than per tag; None for a
        sentence with a new tag or one that `decode` would repair."""
        if not self.need_no_repair(tags, set(tags), tags[:1]):
            return None
        return self.decode_well_formed(tags)

    def need_no_repair(
        self, tags: Sequence[str], distinct: AbstractSet[str], firsts: Iterable[str]
    ) -> bool:
        """Whether IOB2 sentences decode without a repair, from tags seen before: then
        `decode_well_formed` decodes each. Pairs of tags across two sentences are
        checked too, which is no loss: the second tag of such a pair starts a
        sentence, so it may not be an I- anyway.

        tags (Sequence[str]): The sentences' tags, one sentence after the other.
        distinct (AbstractSet[str]): The set of them.
        firsts (Iterable[str]): The first tag of each sentence.
        RETURNS (bool): Whether `decode` would repair none of them.
        """
        codes = self._codes
        if self.scheme != "iob2" or not codes.keys() >= distinct:
            return False
        if IOB_I in map(codes.__getitem__, firsts):
            return False
        pairs = self._pairs
        for pair in set(zip(tags, tags[1:])):
            fits = pairs.get(pair)
            if fits is None:
                fits = pairs[pair] = self._fits(*pair)
            if not fits:
                return False
        return True

    def decode_well_formed(self, tags: Sequence[str]) -> Tuple[List[int], List[str]]:
        """`decode` of a sentence that `need_no_repair` passed.

        tags (Sequence[str]): The tags.
        RETURNS (Tuple[List[int], List[str]]): ENT_IOB codes and labels, one per tag.
        """
        return list(map(self._codes.__getitem__, tags)), list(map(self._labels.__getitem__, tags))

    def _fits(self, before: str, tag: str) -> bool:
        """Whether IOB2 `tag` may follow `before` as it is: an I- continues its label."""
        prefix, label = self._well_formed[tag]
        return prefix != "I" or self._well_formed[before] in (("B", label), ("I", label))

    def _read_tag(self, tag: str, line: int) -> Tuple[str, str]:
        """Split a tag not seen before, or one that needs a repair of its own, and report
        that repair. A tag that needs none is remembered.

        tag (str): The tag.
        line (int): Its line.
        RETURNS (Tuple[str, str]): Its prefix ("O", "B", "I", "E", "S", "L", "U") and label.
        """
        prefix, label = split_tag(tag)
        if prefix != "O" and (not label or not prefix):
            what = (
                f"tag '{clip(tag)}' has no entity label"
                if not label
                else f"tag '{clip(tag)}' has no B-/I-/E-/S- prefix"
            )
            self._report(line, "unknown tag", f"{what}; read as O")
            return "O", ""
        if prefix in "ESLU" and not self.bioes:
            self._report(
                line,
                "BIOES tag in IOB file",
                f"'{clip(tag)}' is a BIOES tag in a file read as {self.scheme.upper()}",
            )
        else:
            self._well_formed[tag] = (prefix, label)
            if self.scheme == "iob2":
                self._codes[tag] = {"B": IOB_B, "I": IOB_I}.get(prefix, IOB_O)
                self._labels[tag] = label
        return prefix, label

    def _start_without_b(
        self, tag: str, prefix: str, label: str, open_label: str, line: int
    ) -> None:
        """Report an I-/E-/L- tag that starts an entity, unless IOB1 starts entities so."""
        if self.iob1 and prefix == "I":
            return
        after = "O" if not open_label else f"a {clip(open_label)} entity"
        if open_label == label:
            after = f"the end of a {clip(label)} entity"
        self._report(
            line,
            f"{prefix}- without B-",
            f"'{clip(tag)}' follows {after}; read as the start of an entity",
        )

    def _unclosed(self, line: int, label: str) -> None:
        self._report(
            line,
            "entity without E-",
            f"{clip(label)} entity ends without an E-/L- tag; closed here",
        )
