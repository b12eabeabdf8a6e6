"""The tag layout of a label set: tags, allowed transitions, and the mapping between
spaCy's IOB annotation, tag indices and entities. The one place that knows the layout.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, NamedTuple, Sequence, Tuple

import numpy

from ...corpus.iob import IOB_B, IOB_I, IOB_MISSING, IOB_O


class Entities(NamedTuple):
    """Entities found in decoded paths, one element per entity, in order.

    doc (Ints1d): The doc (row) of the entity.
    first (Ints1d): Its first token.
    last (Ints1d): Its last token (inclusive).
    label (Ints1d): Its label index.
    """

    doc: Any
    first: Any
    last: Any
    label: Any


class StepPlan(NamedTuple):
    """How a step of the CRF's recursions reaches each tag from its neighbours, the tags
    allowed next to it (before it, or after it for the backward recursion), and from
    no other tag. Most tags share one set of neighbours (under BILUO, `B-`, `U-` and `O`
    follow `O`, `L-` and `U-`); a step computes those as one product over that set, and
    each of the others from its own few neighbours (`I-X` and `L-X` follow `B-X` and
    `I-X`): a quarter of the K x K work of a dense step. Neighbours are listed by
    ascending tag, so sums and maxima take their terms in the order a dense step does.

    order (Ints1d): `(K,)` the tags in the order a step computes them: the `n_wide`
        tags that share one set of neighbours, then the others.
    position (Ints1d): `(K,)` each tag's place in `order`.
    wide (Ints1d): `(W,)` the shared neighbours.
    narrow (Ints2d): `(K - n_wide, w)` the neighbours of each other tag; a tag with
        fewer than w repeats its last one.
    real (Bools2d): `(K - n_wide, w)`: False at those repeats.
    n_wide (int): The number of tags computed from `wide`.
    dense (bool): Whether every tag is computed from every tag, in tag order (the plan
        where no shared set saves work).
    """

    order: Any
    position: Any
    wide: Any
    narrow: Any
    real: Any
    n_wide: int
    dense: bool

    @classmethod
    def build(cls, allowed: numpy.ndarray) -> "StepPlan":
        """The cheapest plan for a pattern of allowed transitions.

        allowed (numpy.ndarray): `(K, K)` bool, `allowed[i, j]`: j may be reached from i.
        RETURNS (StepPlan): The plan (on the CPU).
        """
        K = allowed.shape[0]
        sources = [tuple(numpy.flatnonzero(allowed[:, j]).tolist()) for j in range(K)]
        best, cost = None, K * K
        for shared in sorted(set(sources)):
            others = [len(s) for s in sources if s != shared]
            shared_cost = (K - len(others)) * len(shared) + len(others) * max(others, default=0)
            if shared and min(others, default=1) > 0 and shared_cost < cost:
                best, cost = shared, shared_cost
        if best is None:
            return cls.build_dense(K)
        wide = [j for j in range(K) if sources[j] == best]
        rest = [sources[j] for j in range(K) if sources[j] != best]
        width = max(map(len, rest), default=1)
        shape = (len(rest), width)
        narrow = [s + (s[-1],) * (width - len(s)) for s in rest]
        real = [[k < len(s) for k in range(width)] for s in rest]
        order = numpy.asarray(wide + [j for j in range(K) if sources[j] != best])
        return cls(
            order=order,
            position=numpy.argsort(order),
            wide=numpy.asarray(best, dtype="int64"),
            narrow=numpy.asarray(narrow, dtype="int64").reshape(shape),
            real=numpy.asarray(real, dtype=bool).reshape(shape),
            n_wide=len(wide),
            dense=False,
        )

    @classmethod
    def build_dense(cls, K: int) -> "StepPlan":
        """RETURNS (StepPlan): The plan that computes every tag from every tag."""
        every = numpy.arange(K, dtype="int64")
        none = numpy.zeros((0, 1), dtype="int64")
        return cls(every, every, every, none, none.astype(bool), K, True)

    def on(self, xp: Any) -> "StepPlan":
        """RETURNS (StepPlan): The plan with its arrays in `xp`."""
        return self._replace(**{f: xp.asarray(getattr(self, f)) for f in _PLAN_ARRAYS})


_PLAN_ARRAYS = ("order", "position", "wide", "narrow", "real")


class DeviceMasks(NamedTuple):
    """A scheme's masks and step plans as arrays on one device."""

    allowed: Any
    allowed_f: Any
    start: Any
    end: Any
    inside: Any
    viterbi: StepPlan
    recursions: Tuple[StepPlan, StepPlan]


def _device_key(xp: Any) -> Tuple[str, int]:
    cuda = getattr(xp, "cuda", None)
    return xp.__name__, int(cuda.runtime.getDevice()) if cuda is not None else -1


@dataclass(frozen=True)
class TagScheme:
    """The tags of a label set, which tag may follow which, and the mapping between
    spaCy's IOB annotation and tag indices: the one place that knows the layout.

    tags (List[str]): `O` (index OUTSIDE), then per label one tag per prefix:
        `B- I- L- U-` (BILUO) or `B- I-` (BIO), so label l's tag with prefix p is
        `1 + l * len(prefixes) + prefixes.index(p)`.
    allowed (numpy.ndarray): `(K, K)` bool, `allowed[i, j]`: tag j may follow tag i.
    start (numpy.ndarray): `(K,)` bool, tags that may open a doc.
    end (numpy.ndarray): `(K,)` bool, tags that may close a doc.
    inside (numpy.ndarray): `(K,)` int, for each B- tag the index of its I- tag (else -1).
    """

    # The tag index of O in every scheme.
    OUTSIDE: ClassVar[int] = 0
    NAMES: ClassVar[Tuple[str, ...]] = ("BILUO", "BIO")

    name: str
    labels: Tuple[str, ...]
    tags: Tuple[str, ...]
    allowed: numpy.ndarray
    start: numpy.ndarray
    end: numpy.ndarray
    inside: numpy.ndarray
    _on_device: Dict[Tuple[str, int], DeviceMasks] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(cls, name: str, labels: Sequence[str]) -> "TagScheme":
        """Make the tags and allowed transitions of a scheme.

        name (str): "BILUO" or "BIO".
        labels (Sequence[str]): The entity labels.
        RETURNS (TagScheme): The scheme.
        """
        prefixes = _prefixes(name)
        tags = ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]
        index = {t: i for i, t in enumerate(tags)}
        k = len(tags)
        allowed = numpy.zeros((k, k), dtype=bool)
        start = numpy.zeros(k, dtype=bool)
        end = numpy.zeros(k, dtype=bool)
        inside = numpy.full(k, -1, dtype="int64")
        # Tags that may follow O or the end of an entity.
        first = "BU" if name == "BILUO" else "B"
        openers = [index["O"]] + [index[f"{p}-{lb}"] for lb in labels for p in first]
        for i, tag in enumerate(tags):
            prefix, _, label = tag.partition("-")
            if name == "BILUO":
                continues = prefix in "BI" and tag != "O"
            else:
                continues = False
            if continues:
                allowed[i, index[f"I-{label}"]] = True
                allowed[i, index[f"L-{label}"]] = True
            else:
                allowed[i, openers] = True
                if name == "BIO" and prefix in "BI" and tag != "O":
                    allowed[i, index[f"I-{label}"]] = True
            end[i] = not continues
            if prefix == "B":
                inside[i] = index[f"I-{label}"]
        start[openers] = True
        return cls(name, tuple(labels), tuple(tags), allowed, start, end, inside)

    @property
    def prefixes(self) -> str:
        """RETURNS (str): The prefixes of each label's tags, in their order."""
        return _prefixes(self.name)

    def tags_from_iob(self, iob: numpy.ndarray, label: numpy.ndarray) -> numpy.ndarray:
        """Tag indices of one doc's spaCy annotation, -1 where there is no gold.

        iob (numpy.ndarray): `(n,)` ENT_IOB codes (missing, I, O or B; `bio.IOB_*`).
        label (numpy.ndarray): `(n,)` the label index of each token's entity, -1 for a
            label not in the scheme (any value at O).
        RETURNS (numpy.ndarray): `(n,)` tag indices: -1 at missing annotation and at
            entities of unknown labels.
        """
        iob = iob.astype("int64")
        pos = {p: i for i, p in enumerate(self.prefixes)}
        begins = iob == IOB_B
        continued = numpy.zeros(len(iob), dtype=bool)
        continued[:-1] = iob[1:] == IOB_I
        if self.name == "BILUO":
            # B then I: B; B alone: U; I then I: I; I last: L.
            prefix = numpy.where(
                begins,
                numpy.where(continued, pos["B"], pos["U"]),
                numpy.where(continued, pos["I"], pos["L"]),
            )
        else:
            prefix = numpy.where(begins, pos["B"], pos["I"])
        tags = numpy.where(iob == IOB_O, self.OUTSIDE, 1 + label * len(pos) + prefix)
        return numpy.where((iob == IOB_MISSING) | ((iob != IOB_O) & (label < 0)), -1, tags)

    def entities(self, paths: numpy.ndarray, lengths: numpy.ndarray) -> Entities:
        """The entities of valid decoded tag paths, vectorized over the batch.

        paths (numpy.ndarray): `(B, T)` tag indices.
        lengths (numpy.ndarray): `(B,)` tokens per path; what follows is padding.
        RETURNS (Entities): The entities, in order.
        """
        B, T = paths.shape
        pos = {p: i for i, p in enumerate(self.prefixes)}
        live = numpy.arange(T)[None, :] < lengths[:, None]
        is_ent = (paths != self.OUTSIDE) & live
        offset = numpy.where(is_ent, paths - 1, 0)
        prefix = offset % len(pos)
        label = offset // len(pos)
        if self.name == "BILUO":
            begins = is_ent & ((prefix == pos["B"]) | (prefix == pos["U"]))
            finishes = is_ent & ((prefix == pos["L"]) | (prefix == pos["U"]))
        else:
            # A valid path continues an entity only with its own I- tag.
            next_inside = numpy.zeros_like(is_ent)
            next_inside[:, :-1] = is_ent[:, 1:] & (prefix[:, 1:] == pos["I"])
            begins = is_ent & (prefix == pos["B"])
            finishes = is_ent & ~next_inside
        doc, first = numpy.nonzero(begins)
        _, last = numpy.nonzero(finishes)
        return Entities(doc, first, last, label[doc, first])

    def gold_index(self, biluo: Sequence[Any]) -> List[int]:
        """Map BILUO tags from spaCy's alignment to tag indices, -1 where gold is missing.

        biluo (Sequence[Optional[str]]): `Example.get_aligned_ner()`.
        RETURNS (List[int]): One index per token.
        """
        index = {t: i for i, t in enumerate(self.tags)}
        if self.name == "BIO":
            index.update({f"L-{lb}": index[f"I-{lb}"] for lb in self.labels})
            index.update({f"U-{lb}": index[f"B-{lb}"] for lb in self.labels})
        return [index.get(t, -1) if t not in (None, "-", "") else -1 for t in biluo]

    @property
    def viterbi_plan(self) -> StepPlan:
        """RETURNS (StepPlan): How a Viterbi step reaches each tag from its predecessors."""
        return StepPlan.build(self.allowed)

    @property
    def recursion_plans(self) -> Tuple[StepPlan, StepPlan]:
        """RETURNS (Tuple[StepPlan, StepPlan]): The plans of the forward recursion (from
        predecessors) and the backward one (from successors), which run as one batch:
        both sparse if their shapes agree, else both dense."""
        forward, backward = StepPlan.build(self.allowed), StepPlan.build(self.allowed.T)
        shapes = [(p.n_wide, p.wide.shape, p.narrow.shape) for p in (forward, backward)]
        if shapes[0] != shapes[1]:
            dense = StepPlan.build_dense(len(self.tags))
            return dense, dense
        return forward, backward

    def on(self, xp: Any) -> DeviceMasks:
        """The masks as arrays of `xp` on its current device, copied there once.

        xp (module): numpy or cupy.
        RETURNS (DeviceMasks): The masks.
        """
        key = _device_key(xp)
        masks = self._on_device.get(key)
        if masks is None:
            masks = self._on_device[key] = DeviceMasks(
                allowed=xp.asarray(self.allowed),
                allowed_f=xp.asarray(self.allowed, dtype="float32"),
                start=xp.asarray(self.start),
                end=xp.asarray(self.end),
                inside=xp.asarray(self.inside),
                viterbi=self.viterbi_plan.on(xp),
                recursions=tuple(plan.on(xp) for plan in self.recursion_plans),  # type: ignore[arg-type]
            )
        return masks


def _prefixes(name: str) -> str:
    return "BILU" if name == "BILUO" else "BI"
