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

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy

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
    """The tags of a label set and which tag may follow which.

    tags (List[str]): `O`, then per label `B- I- L- U-` (BILUO) or `B- I-` (BIO).
    allowed (numpy.ndarray): `(K, K)` bool, `allowed[i, j]`: tag j may follow tag i.
    start (numpy.ndarray): `(K,)` bool, tags that may open a doc.
    end (numpy.ndarray): `(K,)` bool, tags that may close a doc.
    inside (numpy.ndarray): `(K,)` int, for each B- tag the index of its I- tag (else -1).
    """

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
        prefixes = "BILU" if name == "BILUO" else "BI"
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
    RETURNS (Tuple[Floats4d, Floats3d]): `P (T, G, B, K)`, the relative scores (max 1,
        none below FLOOR), and `C (T, G, B)`, each step's divisor (1 at position 0).
    """
    T = expE.shape[0]
    P = xp.empty_like(expE)
    C = xp.ones(expE.shape[:3], dtype=expE.dtype)
    P[0] = p0
    for t in range(1, T):
        p = P[t]
        xp.multiply(P[t - 1] @ mats, expE[t], out=p)
        p.max(axis=2, out=C[t])
        xp.divide(p, C[t][:, :, None], out=p)
        xp.maximum(p, FLOOR, out=p)
    return P, C


def _log_forward(xp: Any, X: Any, mats: Any, first: Any) -> Tuple[Any, Any]:
    """Forward scores of G groups of chains.

    X (Floats4d): `(T, G, B, K)` emissions, NEG at padding.
    mats (Floats3d): `(G, K, K)`: exp of each group's transition scores.
    first (Floats3d): `(G, B, K)`: log-scores at position 0 (emission and start score).
    RETURNS (Tuple[Floats4d, Floats3d]): `P (T, G, B, K)` and `L (T, G, B)`: the
        log-score of every prefix ending in each tag is `log(P) + L`.
    """
    top = X.max(axis=3)
    expE = xp.exp(xp.maximum(X - top[..., None], CLIP))
    m0 = first.max(axis=2)
    P, C = _scan(xp, expE, mats, xp.maximum(xp.exp(first - m0[..., None]), FLOOR))
    D = xp.log(C) + top
    D[0] = m0
    return P, xp.cumsum(D, axis=0)


def _recursions(
    xp: Any,
    E: Any,
    lengths: Any,
    trans: Any,
    start: Any,
    end: Any,
    scheme: TagScheme,
    directions: str,
    cuts: Tuple[Any, Any] = (None, None),
) -> Tuple[Any, Any, Any, Any]:
    """Run the forward recursion ("f"), the backward one ("b"), or both ("fb") in one
    loop. `cuts`: the chains cut at their start and at their end (`boundary_scores`).

    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Bools3d]): `alpha`, `log Z` (of the
        forward direction), `beta` (None for a direction not run) and the mask of real
        positions `(B, T, 1)`.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    masks = scheme.on(xp)
    rows = xp.arange(B)
    last = lengths - 1
    steps = xp.arange(T)[None, :]
    live = (steps < lengths[:, None])[:, :, None]
    E = xp.where(live, E, NEG)
    exp_t = xp.exp(xp.maximum(trans, TRANS_CLIP)) * masks.allowed_f
    end_scores = boundary_scores(xp, end, masks.end, cuts[1])
    chains, mats, firsts = [], [], []
    if "f" in directions:
        chains.append(E.transpose(1, 0, 2))
        mats.append(exp_t)
        firsts.append(E[:, 0] + boundary_scores(xp, start, masks.start, cuts[0]))
    if "b" in directions:
        # The reversed docs: position s holds position n-1-s; padding stays in place.
        rev = xp.where(live[:, :, 0], last[:, None] - steps, steps)
        chains.append(E[rows[:, None], rev].transpose(1, 0, 2))
        mats.append(exp_t.T)
        firsts.append(E[rows, last] + end_scores)
    mats_g = xp.stack(mats)
    P, L = _log_forward(xp, xp.stack(chains, axis=1), mats_g, xp.stack(firsts))
    alpha = log_z = beta = None
    if "f" in directions:
        alpha = xp.where(live, (xp.log(P[:, 0]) + L[:, 0, :, None]).transpose(1, 0, 2), NEG)
        log_z = _logsumexp(xp, alpha[rows, last] + end_scores)
    if "b" in directions:
        # Reversed position s is position t = n-1-s, and beta_t sums over the tags at
        # t+1 = reversed s-1: the reversed chain's score there times the transitions.
        # (Not its score at s less E_t: that would undo the floor of a tag at NEG.)
        after = xp.log(P[:-1, -1] @ mats_g[-1]) + L[:-1, -1, :, None]
        ends = xp.broadcast_to(end_scores, (1,) + after.shape[1:])
        rev_beta = xp.concatenate([ends, after])
        beta = xp.where(live, rev_beta.transpose(1, 0, 2)[rows[:, None], rev], NEG)
    return alpha, log_z, beta, live


def forward(
    xp: Any, E: Any, lengths: Any, trans: Any, start: Any, end: Any, scheme: TagScheme
) -> Tuple[Any, Any]:
    """Forward recursion.

    xp (module): numpy or cupy.
    E (Floats3d): Emission scores `(B, T, K)`.
    lengths (Ints1d): Tokens per doc, all at least 1.
    trans (Floats2d): Transition scores `(K, K)`; start, end (Floats1d): `(K,)`.
    scheme (TagScheme): Which transitions are allowed.
    RETURNS (Tuple[Floats3d, Floats1d]): `alpha (B, T, K)` (NEG at padding) and
        `log Z (B,)`.
    """
    alpha, log_z, _, _ = _recursions(xp, E, lengths, trans, start, end, scheme, "f")
    return alpha, log_z


def backward(xp: Any, E: Any, lengths: Any, trans: Any, end: Any, scheme: TagScheme) -> Any:
    """Backward recursion: `beta[b, t, i]`, the log-score of all continuations after
    tag i at position t (emissions after t, transitions, end score).

    RETURNS (Floats3d): `beta (B, T, K)` (NEG at padding).
    """
    return _recursions(xp, E, lengths, trans, end, end, scheme, "b")[2]


def marginals(
    xp: Any,
    E: Any,
    lengths: Any,
    trans: Any,
    start: Any,
    end: Any,
    scheme: TagScheme,
    cuts: Tuple[Any, Any] = (None, None),
) -> Tuple[Any, Any, Any, Any]:
    """Log-marginals of every tag at every position, by forward-backward (both
    recursions in one loop).

    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): `(B,)` each: the chains that
        are windows cut out of a longer doc at their start, and at their end: any tag
        may stand there, with no start or end score (`boundary_scores`).
    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Floats3d]): log-marginals `(B, T, K)`
        (NEG at padding), `log Z`, `alpha` and `beta`.
    """
    alpha, log_z, beta, live = _recursions(xp, E, lengths, trans, start, end, scheme, "fb", cuts)
    log_m = xp.where(live, alpha + beta - log_z[:, None, None], NEG)
    return log_m, log_z, alpha, beta


def position_mask(xp: Any, lengths: Any, T: int) -> Any:
    """RETURNS (Floats2d): `(B, T)`, 1.0 at real tokens and 0.0 at padding."""
    return (xp.arange(T)[None, :] < lengths[:, None]).astype("float32")


def transition_counts(
    xp: Any,
    E: Any,
    lengths: Any,
    trans: Any,
    alpha: Any,
    beta: Any,
    log_z: Any,
    scheme: TagScheme,
    weights: Any,
) -> Any:
    """Expected number of times each transition is taken, summed over the batch.

    The pairwise marginal at step t is
    `exp(alpha[t-1, i] + T[i, j] + E[t, j] + beta[t, j] - log Z)`; with each factor
    rescaled by its maximum, the sum over all steps and docs is one matrix product.

    weights (Floats1d): `(B,)`, each doc's weight in the sum (any sign).
    RETURNS (Floats2d): `(K, K)` expected counts.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    if T < 2:
        return xp.zeros((K, K), dtype=E.dtype)
    exp_t = xp.exp(xp.maximum(trans, TRANS_CLIP)) * scheme.on(xp).allowed_f
    prev = alpha[:, :-1]
    nxt = E[:, 1:] + beta[:, 1:]
    m1 = prev.max(axis=2, keepdims=True)
    m2 = nxt.max(axis=2, keepdims=True)
    live = position_mask(xp, lengths, T)[:, 1:, None] * weights[:, None, None]
    scale = xp.exp(m1 + m2 - log_z[:, None, None]) * live
    left = (xp.exp(xp.maximum(prev - m1, CLIP)) * scale).reshape(-1, K)
    right = xp.exp(xp.maximum(nxt - m2, CLIP)).reshape(-1, K)
    return exp_t * (left.T @ right)


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


def viterbi(
    xp: Any,
    E: Any,
    lengths: Any,
    trans: Any,
    start: Any,
    end: Any,
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
    t_scores = xp.where(masks.allowed, trans, NEG)[None]
    Et = xp.ascontiguousarray(E.transpose(1, 0, 2))
    # Time-major: S[t], the best score of a prefix ending in each tag; back[t], its
    # tag at t-1.
    S = xp.empty_like(Et)
    back = xp.empty((T, B, K), dtype="int64")
    S[0] = Et[0] + boundary_scores(xp, start, masks.start, cuts[0])
    for t in range(1, T):
        cand = S[t - 1][:, :, None] + t_scores
        cand.argmax(axis=1, out=back[t])
        xp.add(cand.max(axis=1), Et[t], out=S[t])
    rows = xp.arange(B)
    final = S[lengths - 1, rows] + boundary_scores(xp, end, masks.end, cuts[1])
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
    trans: Any,
    start: Any,
    end: Any,
    alpha: Any,
    beta: Any,
    log_z: Any,
    lengths: Any,
    path: Any,
    doc_idx: Any,
    starts: Any,
    ends: Any,
    scheme: TagScheme,
    cuts: Tuple[Any, Any] = (None, None),
) -> Any:
    """Log-probability that each entity is exactly right: its tags from its first to
    its last token are the decoded ones, and no entity continues it.

    doc_idx, starts, ends (Ints1d): For each entity, its doc and its first and last
        token (inclusive).
    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): As for `marginals`.
    RETURNS (Floats1d): One log-probability per entity.
    """
    E = promote(xp, E)
    B, T, K = E.shape
    masks = scheme.on(xp)
    t_scores = xp.where(masks.allowed, trans, NEG)
    rows = xp.arange(B)[:, None]
    steps = xp.arange(T)[None, :]
    prev_tag = xp.concatenate([path[:, :1], path[:, :-1]], axis=1)
    step = E[rows, steps, path] + t_scores[prev_tag, path] * (steps > 0)
    cum = xp.cumsum(step, axis=1)
    first_tag = path[doc_idx, starts]
    last_tag = path[doc_idx, ends]
    inner = E[doc_idx, starts, first_tag] + cum[doc_idx, ends] - cum[doc_idx, starts]
    # Everything before the entity, ending in any tag that may precede its first tag.
    before = alpha[doc_idx, xp.maximum(starts - 1, 0)] + t_scores[:, first_tag].T
    m = before.max(axis=1)
    opening = xp.log(xp.exp(before - m[:, None]).sum(axis=1)) + m
    start_s = xp.broadcast_to(boundary_scores(xp, start, masks.start, cuts[0]), (B, K))
    opening = xp.where(starts > 0, opening, start_s[doc_idx, first_tag])
    if scheme.name == "BILUO":
        # L- and U- tags end the entity by themselves.
        closing = beta[doc_idx, ends, last_tag]
    else:
        # A B-/I- tag ends the entity only if the next tag is not its I- tag.
        inside = masks.inside
        i_tag = xp.where(inside[first_tag] >= 0, inside[first_tag], 0)
        nxt = xp.minimum(ends + 1, T - 1)
        after = t_scores[last_tag] + E[doc_idx, nxt] + beta[doc_idx, nxt]
        after[xp.arange(len(i_tag)), i_tag] = NEG
        m2 = after.max(axis=1)
        closing = xp.log(xp.exp(after - m2[:, None]).sum(axis=1)) + m2
        at_end = ends >= lengths[doc_idx] - 1
        end_s = xp.broadcast_to(boundary_scores(xp, end, masks.end, cuts[1]), (B, K))
        closing = xp.where(at_end, end_s[doc_idx, last_tag], closing)
    return xp.minimum(opening + inner + closing - log_z[doc_idx], 0.0)
