"""A linear-chain CRF over entity tags, written once for numpy and cupy.

Every function takes the array module `xp` (thinc's `ops.xp`) and works on padded
batches: emissions `(B, T, K)` with `lengths (B,)`. Emissions enter as float32 at least
(`promote`: float16 cannot hold the recursions' range). The only Python loops run over
positions, and on a GPU each array operation in them is a kernel launch, which bounds
the speed: so a step is a handful of batched operations, everything that does not
change between steps is computed before the loop, the scheme's masks are made once per
device (`TagScheme.on`), and callers stack every lattice of an update into one batch.

The forward recursion runs in the probability domain, divided by its maximum at every
step: `p_t ∝ (p_{t-1} @ exp(T)) * exp(E_t - max E_t)`; the logs of the divisors are
summed afterwards in one cumulative sum. Disallowed transitions are zeros of `exp(T)`.
The backward recursion is the forward one of the reversed docs with the transposed
transitions, so `marginals` runs both in one loop, one batched product per step.
Padding positions score NEG, so nothing flows through them.
"""

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, NamedTuple, Sequence, Tuple

import numpy

from ...corpus.iob import IOB_B, IOB_I, IOB_MISSING, IOB_O

# Log-score of something impossible: finite, so no NaN from `-inf - -inf`.
NEG = -1e4
# Log-probabilities below this are clipped in the agreement loss.
LOG_EPS = -27.0
# Rescaled log-scores are clipped here before exp(): far below float32's smallest normal
# number lie denormals, which make the matrix products many times slower. exp(-60) is
# 1e-26, nothing next to the 1.0 of the largest term.
CLIP = -60.0
# The recursions keep every relative score at least FLOOR and read transition scores
# below TRANS_CLIP as TRANS_CLIP, so the largest term of a step is at least
# 1e-20 * exp(-30) = 1e-33, a normal float32: no division by zero, no denormals.
FLOOR = 1e-20
TRANS_CLIP = -30.0


class Params(NamedTuple):
    """The CRF's learned scores (in the model, params of these names), or their
    gradients.

    transitions (Floats2d): `(K, K)`, the score of tag j following tag i.
    start (Floats1d): `(K,)`, the score of each tag opening a doc.
    end (Floats1d): `(K,)`, the score of each tag closing a doc.
    """

    transitions: Any
    start: Any
    end: Any


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


@dataclass(frozen=True)
class ForwardBackward:
    """What forward-backward computes over a batch of lattices `(B, T, K)`; every
    array is NEG at padding.

    log_marginals (Floats3d): `(B, T, K)`, the log-probability of each tag at each
        position.
    log_z (Floats1d): `(B,)`, the log-score of all tag sequences (the partition
        function).
    log_prefix (Floats3d): `(B, T, K)`, the forward variables: the log-score of all
        tag sequences from the doc's start up to position t that end in tag i
        (start score, emissions up to t, transitions).
    log_suffix (Floats3d): `(B, T, K)`, the backward variables: the log-score of all
        continuations after tag i at position t (transitions, emissions after t, end
        score).
    """

    log_marginals: Any
    log_z: Any
    log_prefix: Any
    log_suffix: Any


class Loss(NamedTuple):
    """The negative log-likelihood of gold tags and its gradients.

    loss (Floats0d): The weighted sum over the docs, on the arrays' device.
    d_emissions (Floats3d): `(B, T, K)`, its gradient for the emissions (0 at padding).
    d_params (Params): Its gradients for the CRF's scores.
    log_marginals (Floats3d): `(B, T, K)`, the tag marginals of the free lattices.
    """

    loss: Any
    d_emissions: Any
    d_params: Params
    log_marginals: Any


class DeviceMasks(NamedTuple):
    """A scheme's masks as arrays on one device."""

    allowed: Any
    allowed_f: Any
    start: Any
    end: Any
    inside: Any


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
            )
        return masks


def _prefixes(name: str) -> str:
    return "BILU" if name == "BILUO" else "BI"


def promote(xp: Any, E: Any) -> Any:
    """Emissions as the CRF computes them: float16 becomes float32; float32 and
    float64 stay as they are.

    xp (module): numpy or cupy.
    E (FloatsXd): Emission scores.
    RETURNS (FloatsXd): `E`, or a float32 copy of it.
    """
    return E.astype("float32") if E.dtype.itemsize < 4 else E


def boundary_scores(xp: Any, scores: Any, allowed: Any, cut: Any = None) -> Any:
    """Start or end scores of each chain: the scheme's, where a chain begins or ends
    a doc; 0 for every tag where it was cut out of a longer doc (a window), whose tag
    there may be any.

    scores (Floats1d): `(K,)` learned start or end scores.
    allowed (Bools1d): `(K,)` tags that may begin (end) a doc.
    cut (Optional[Bools1d]): `(B,)` chains cut at that side; None: none.
    RETURNS (Floats1d or Floats2d): `(K,)`, or `(B, K)` if `cut` is given.
    """
    masked = xp.where(allowed, scores, NEG)
    return masked if cut is None else xp.where(cut[:, None], 0.0, masked)


def _logsumexp(xp: Any, x: Any) -> Any:
    m = x.max(axis=-1)
    return xp.log(xp.exp(x - m[..., None]).sum(axis=-1)) + m


def _scan(xp: Any, expE: Any, mats: Any, p0: Any) -> Tuple[Any, Any]:
    """The recursion `p_t ∝ (p_{t-1} @ mats) * expE_t`, each step divided by its
    maximum; time-major, so each step reads and writes contiguous slices.

    expE (Floats4d): `(T, G, B, K)`: exp of the emissions less their maximum per
        position, for G groups of B chains.
    mats (Floats3d): `(G, K, K)`: exp of each group's transition scores.
    p0 (Floats3d): `(G, B, K)`: the relative scores at position 0.
    RETURNS (Tuple[Floats4d, Floats3d]): `rel (T, G, B, K)`, the relative scores (max
        1, none below FLOOR), and `divisors (T, G, B)`, each step's divisor (1 at
        position 0).
    """
    T = expE.shape[0]
    rel = xp.empty_like(expE)
    divisors = xp.ones(expE.shape[:3], dtype=expE.dtype)
    rel[0] = p0
    for t in range(1, T):
        p = rel[t]
        xp.multiply(rel[t - 1] @ mats, expE[t], out=p)
        p.max(axis=2, out=divisors[t])
        xp.divide(p, divisors[t][:, :, None], out=p)
        xp.maximum(p, FLOOR, out=p)
    return rel, divisors


def _log_forward(xp: Any, X: Any, mats: Any, first: Any) -> Tuple[Any, Any]:
    """Forward scores of G groups of chains.

    X (Floats4d): `(T, G, B, K)` emissions, NEG at padding.
    mats (Floats3d): `(G, K, K)`: exp of each group's transition scores.
    first (Floats3d): `(G, B, K)`: log-scores at position 0 (emission and start score).
    RETURNS (Tuple[Floats4d, Floats3d]): `rel (T, G, B, K)` and `log_offset (T, G, B)`:
        the log-score of every prefix ending in each tag is `log(rel) + log_offset`.
    """
    top = X.max(axis=3)
    expE = xp.exp(xp.maximum(X - top[..., None], CLIP))
    m0 = first.max(axis=2)
    rel, divisors = _scan(xp, expE, mats, xp.maximum(xp.exp(first - m0[..., None]), FLOOR))
    log_divisors = xp.log(divisors) + top
    log_divisors[0] = m0
    return rel, xp.cumsum(log_divisors, axis=0)


def _recursions(
    xp: Any,
    E: Any,
    lengths: Any,
    params: Params,
    scheme: TagScheme,
    directions: str,
    cuts: Tuple[Any, Any] = (None, None),
) -> Tuple[Any, Any, Any, Any]:
    """Run the forward recursion ("f"), the backward one ("b"), or both ("fb") in one
    loop. `cuts`: the chains cut at their start and at their end (`boundary_scores`).

    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Bools3d]): the forward variables,
        `log Z` (of the forward direction), the backward variables (None for a
        direction not run) and the mask of real positions `(B, T, 1)`.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    masks = scheme.on(xp)
    rows = xp.arange(B)
    last = lengths - 1
    steps = xp.arange(T)[None, :]
    live = (steps < lengths[:, None])[:, :, None]
    E = xp.where(live, E, NEG)
    exp_trans = xp.exp(xp.maximum(params.transitions, TRANS_CLIP)) * masks.allowed_f
    end_scores = boundary_scores(xp, params.end, masks.end, cuts[1])
    chains, mats, firsts = [], [], []
    if "f" in directions:
        chains.append(E.transpose(1, 0, 2))
        mats.append(exp_trans)
        firsts.append(E[:, 0] + boundary_scores(xp, params.start, masks.start, cuts[0]))
    if "b" in directions:
        # The reversed docs: position s holds position n-1-s; padding stays in place.
        rev = xp.where(live[:, :, 0], last[:, None] - steps, steps)
        chains.append(E[rows[:, None], rev].transpose(1, 0, 2))
        mats.append(exp_trans.T)
        firsts.append(E[rows, last] + end_scores)
    mats_g = xp.stack(mats)
    rel, log_offset = _log_forward(xp, xp.stack(chains, axis=1), mats_g, xp.stack(firsts))
    prefix = log_z = suffix = None
    if "f" in directions:
        prefix = xp.where(
            live, (xp.log(rel[:, 0]) + log_offset[:, 0, :, None]).transpose(1, 0, 2), NEG
        )
        log_z = _logsumexp(xp, prefix[rows, last] + end_scores)
    if "b" in directions:
        # Reversed position s is position t = n-1-s, and the suffix score at t sums
        # over the tags at t+1 = reversed s-1: the reversed chain's score there times
        # the transitions. (Not its score at s less E_t: that would undo the floor of
        # a tag at NEG.)
        after = xp.log(rel[:-1, -1] @ mats_g[-1]) + log_offset[:-1, -1, :, None]
        ends = xp.broadcast_to(end_scores, (1,) + after.shape[1:])
        rev_suffix = xp.concatenate([ends, after])
        suffix = xp.where(live, rev_suffix.transpose(1, 0, 2)[rows[:, None], rev], NEG)
    return prefix, log_z, suffix, live


def forward(xp: Any, E: Any, lengths: Any, params: Params, scheme: TagScheme) -> Tuple[Any, Any]:
    """Forward recursion.

    xp (module): numpy or cupy.
    E (Floats3d): Emission scores `(B, T, K)`.
    lengths (Ints1d): Tokens per doc, all at least 1.
    params (Params): The transition, start and end scores.
    scheme (TagScheme): Which transitions are allowed.
    RETURNS (Tuple[Floats3d, Floats1d]): the forward variables `(B, T, K)` (as
        `ForwardBackward.log_prefix`) and `log Z (B,)`.
    """
    prefix, log_z, _, _ = _recursions(xp, E, lengths, params, scheme, "f")
    return prefix, log_z


def backward(xp: Any, E: Any, lengths: Any, params: Params, scheme: TagScheme) -> Any:
    """Backward recursion: the log-score of all continuations after tag i at
    position t (emissions after t, transitions, end score).

    RETURNS (Floats3d): The backward variables `(B, T, K)` (as
        `ForwardBackward.log_suffix`).
    """
    return _recursions(xp, E, lengths, params, scheme, "b")[2]


def marginals(
    xp: Any,
    E: Any,
    lengths: Any,
    params: Params,
    scheme: TagScheme,
    cuts: Tuple[Any, Any] = (None, None),
) -> ForwardBackward:
    """Log-marginals of every tag at every position, by forward-backward (both
    recursions in one loop).

    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): `(B,)` each: the chains that
        are windows cut out of a longer doc at their start, and at their end: any tag
        may stand there, with no start or end score (`boundary_scores`).
    RETURNS (ForwardBackward): The marginals, log Z and both recursions' variables.
    """
    prefix, log_z, suffix, live = _recursions(xp, E, lengths, params, scheme, "fb", cuts)
    log_m = xp.where(live, prefix + suffix - log_z[:, None, None], NEG)
    return ForwardBackward(log_m, log_z, prefix, suffix)


def position_mask(xp: Any, lengths: Any, T: int) -> Any:
    """RETURNS (Floats2d): `(B, T)`, 1.0 at real tokens and 0.0 at padding."""
    return (xp.arange(T)[None, :] < lengths[:, None]).astype("float32")


def transition_counts(
    xp: Any,
    E: Any,
    lengths: Any,
    params: Params,
    fb: ForwardBackward,
    scheme: TagScheme,
    weights: Any,
) -> Any:
    """Expected number of times each transition is taken, summed over the batch.

    The pairwise marginal at step t is
    `exp(prefix[t-1, i] + T[i, j] + E[t, j] + suffix[t, j] - log Z)`; with each
    factor rescaled by its maximum, the sum over all steps and docs is one matrix
    product.

    fb (ForwardBackward): `marginals` of these lattices.
    weights (Floats1d): `(B,)`, each doc's weight in the sum (any sign).
    RETURNS (Floats2d): `(K, K)` expected counts.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    if T < 2:
        return xp.zeros((K, K), dtype=E.dtype)
    exp_trans = xp.exp(xp.maximum(params.transitions, TRANS_CLIP)) * scheme.on(xp).allowed_f
    before = fb.log_prefix[:, :-1]
    after = E[:, 1:] + fb.log_suffix[:, 1:]
    top_before = before.max(axis=2, keepdims=True)
    top_after = after.max(axis=2, keepdims=True)
    live = position_mask(xp, lengths, T)[:, 1:, None] * weights[:, None, None]
    scale = xp.exp(top_before + top_after - fb.log_z[:, None, None]) * live
    left = (xp.exp(xp.maximum(before - top_before, CLIP)) * scale).reshape(-1, K)
    right = xp.exp(xp.maximum(after - top_after, CLIP)).reshape(-1, K)
    return exp_trans * (left.T @ right)


def boundary_counts(xp: Any, log_marg: Any, lengths: Any, weights: Any) -> Tuple[Any, Any]:
    """Expected start and end tags: marginals at the first and the last token.

    weights (Floats1d): `(B,)`, each doc's weight in the sum (any sign).
    RETURNS (Tuple[Floats1d, Floats1d]): `(K,)` each.
    """
    B = log_marg.shape[0]
    w = weights[:, None]
    first = (xp.exp(log_marg[:, 0]) * w).sum(axis=0)
    last = (xp.exp(log_marg[xp.arange(B), lengths - 1]) * w).sum(axis=0)
    return first, last


def constrain(xp: Any, E: Any, gold: Any, o_unknown_weight: float = 0.0) -> Any:
    """The emissions of the gold-constrained lattice: at a token with gold only the
    gold tag, elsewhere any tag; with `o_unknown_weight` w > 0, a token tagged O also
    admits every other tag at weight w (log w added to its score).

    E (FloatsXd): `(..., T, K)` emission scores.
    gold (IntsXd): `(..., T, 1)` gold tag indices, -1 where there is none.
    o_unknown_weight (float): w, in [0, 1].
    RETURNS (FloatsXd): The constrained emissions.
    """
    allowed = (gold < 0) | (gold == xp.arange(E.shape[-1]))
    if o_unknown_weight <= 0.0:
        return xp.where(allowed, E, NEG)
    soft = (gold == TagScheme.OUTSIDE) & ~allowed
    return xp.where(allowed, E, xp.where(soft, E + math.log(o_unknown_weight), NEG))


def gold_loss(
    xp: Any,
    E: Any,
    gold: Any,
    lengths: Any,
    params: Params,
    scheme: TagScheme,
    o_unknown_weight: float = 0.0,
    divisor: float = 1.0,
) -> Loss:
    """The negative log-likelihood of the gold tags, `log Z - log Z_gold` summed over
    the docs and divided by `divisor`, and its gradients. The free and the
    gold-constrained lattices (`constrain`) go through the recursions as one batch. A
    doc whose partial gold admits no valid tag sequence teaches nothing (weight 0).

    E (Floats3d): `(B, T, K)` emission scores.
    gold (Ints3d): `(B, T, 1)` gold tag indices, -1 where there is none.
    lengths (Ints1d): `(B,)` tokens per doc.
    params (Params): The CRF's scores.
    scheme (TagScheme): The tags.
    o_unknown_weight (float): As for `constrain`.
    divisor (float): Divides the loss and every gradient (the number of passes).
    RETURNS (Loss): The loss, its gradients and the free lattices' marginals.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    lattices = xp.concatenate([E, constrain(xp, E, gold, o_unknown_weight)])
    both = xp.concatenate([lengths, lengths])
    fb = marginals(xp, lattices, both, params, scheme)
    free_z, gold_z = fb.log_z.reshape(2, B)
    ok = (gold_z > NEG / 2).astype(E.dtype)
    loss = ((free_z - gold_z) * ok).sum() / divisor
    # Expected counts under the free lattices less those under the constrained ones.
    weights = xp.concatenate([ok, -ok]) / divisor
    first, last = boundary_counts(xp, fb.log_marginals, both, weights)
    counts = transition_counts(xp, lattices, both, params, fb, scheme, weights)
    d_params = Params(counts, first, last)
    probs = xp.exp(fb.log_marginals).reshape(2, B, T, K)
    pos = position_mask(xp, lengths, T)
    d_E = (probs[0] - probs[1]) * (ok[:, None] * pos)[..., None] / divisor
    return Loss(loss, d_E, d_params, fb.log_marginals[:B])


def viterbi(
    xp: Any,
    E: Any,
    lengths: Any,
    params: Params,
    scheme: TagScheme,
    cuts: Tuple[Any, Any] = (None, None),
) -> Any:
    """The best tag sequence of each doc, using only allowed transitions.

    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): As for `marginals`.
    RETURNS (Ints2d): `(B, T)` tag indices (padding positions repeat the last tag).
    """
    E = promote(xp, E)
    B, T, K = E.shape
    masks = scheme.on(xp)
    t_scores = xp.where(masks.allowed, params.transitions, NEG)[None]
    Et = xp.ascontiguousarray(E.transpose(1, 0, 2))
    # Time-major: best[t], the best score of a prefix ending in each tag; back[t], its
    # tag at t-1.
    best = xp.empty_like(Et)
    back = xp.empty((T, B, K), dtype="int64")
    best[0] = Et[0] + boundary_scores(xp, params.start, masks.start, cuts[0])
    for t in range(1, T):
        cand = best[t - 1][:, :, None] + t_scores
        cand.argmax(axis=1, out=back[t])
        xp.add(cand.max(axis=1), Et[t], out=best[t])
    rows = xp.arange(B)
    final = best[lengths - 1, rows] + boundary_scores(xp, params.end, masks.end, cuts[1])
    # At padding the back-pointers keep the tag, so every doc's trace starts at T-1.
    live = (xp.arange(T)[:, None] < lengths[None, :])[:, :, None]
    back = xp.where(live, back, xp.arange(K)[None, None, :])
    path = xp.empty((T, B), dtype="int64")
    cur = final.argmax(axis=1)
    for t in range(T - 1, -1, -1):
        path[t] = cur
        cur = back[t, rows, cur]
    return path.T


def span_log_probs(
    xp: Any,
    E: Any,
    lengths: Any,
    params: Params,
    fb: ForwardBackward,
    paths: Any,
    entities: Entities,
    scheme: TagScheme,
    cuts: Tuple[Any, Any] = (None, None),
) -> Any:
    """Log-probability that each entity is exactly right: its tags from its first to
    its last token are the decoded ones, and no entity continues it.

    fb (ForwardBackward): `marginals` of these lattices.
    paths (Ints2d): `(B, T)`, the decoded tags.
    entities (Entities): The entities of `paths` to score (their labels unused).
    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): As for `marginals`.
    RETURNS (Floats1d): One log-probability per entity.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    masks = scheme.on(xp)
    doc, first, last = entities.doc, entities.first, entities.last
    t_scores = xp.where(masks.allowed, params.transitions, NEG)
    rows = xp.arange(B)[:, None]
    steps = xp.arange(T)[None, :]
    prev_tag = xp.concatenate([paths[:, :1], paths[:, :-1]], axis=1)
    step = E[rows, steps, paths] + t_scores[prev_tag, paths] * (steps > 0)
    cum = xp.cumsum(step, axis=1)
    first_tag = paths[doc, first]
    last_tag = paths[doc, last]
    inner = E[doc, first, first_tag] + cum[doc, last] - cum[doc, first]
    # Everything before the entity, ending in any tag that may precede its first tag.
    before = fb.log_prefix[doc, xp.maximum(first - 1, 0)] + t_scores[:, first_tag].T
    top = before.max(axis=1)
    opening = xp.log(xp.exp(before - top[:, None]).sum(axis=1)) + top
    start_s = xp.broadcast_to(boundary_scores(xp, params.start, masks.start, cuts[0]), (B, K))
    opening = xp.where(first > 0, opening, start_s[doc, first_tag])
    if scheme.name == "BILUO":
        # L- and U- tags end the entity by themselves.
        closing = fb.log_suffix[doc, last, last_tag]
    else:
        # A B-/I- tag ends the entity only if the next tag is not its I- tag.
        inside = masks.inside
        i_tag = xp.where(inside[first_tag] >= 0, inside[first_tag], 0)
        nxt = xp.minimum(last + 1, T - 1)
        after = t_scores[last_tag] + E[doc, nxt] + fb.log_suffix[doc, nxt]
        after[xp.arange(len(i_tag)), i_tag] = NEG
        top_after = after.max(axis=1)
        closing = xp.log(xp.exp(after - top_after[:, None]).sum(axis=1)) + top_after
        at_end = last >= lengths[doc] - 1
        end_s = xp.broadcast_to(boundary_scores(xp, params.end, masks.end, cuts[1]), (B, K))
        closing = xp.where(at_end, end_s[doc, last_tag], closing)
    return xp.minimum(opening + inner + closing - fb.log_z[doc], 0.0)
