"""A linear-chain CRF over entity tags, written once for numpy and cupy.

Every function takes the array module `xp` (thinc's `ops.xp`) and works on padded
batches: emissions `(B, T, K)` with `lengths (B,)`. The only Python loops run over
positions (the recursions themselves), each step a batched matrix product, so the
cost does not grow with the number of docs in Python.

The forward and backward recursions run in the probability domain, rescaled at
every step: `alpha_t = log(exp(alpha_{t-1} - m) @ exp(T)) + m + E_t`. That is one
`(B, K) @ (K, K)` product per step where log-space needs a `(B, K, K)` logsumexp.
Disallowed transitions are zeros of `exp(T)`.
"""

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

import numpy

# Log-score of something impossible: finite, so no NaN from `-inf - -inf`.
NEG = -1e4
# Log-probabilities below this are clipped in the agreement loss.
LOG_EPS = -27.0
# Rescaled log-scores are clipped here before exp(): far below float32's smallest normal
# number lie denormals, which make the matrix products many times slower. exp(-60) is
# 1e-26, nothing next to the 1.0 of the largest term.
CLIP = -60.0


def _exp(xp: Any, x: Any) -> Any:
    return xp.exp(xp.maximum(x, CLIP))


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


def _masked(xp: Any, logits: Any, allowed: Any) -> Any:
    return xp.where(allowed, logits, NEG)


def forward(
    xp: Any, E: Any, lengths: Any, trans: Any, start: Any, end: Any, scheme: TagScheme
) -> Tuple[Any, Any]:
    """Forward recursion.

    xp (module): numpy or cupy.
    E (Floats3d): Emission scores `(B, T, K)`.
    lengths (Ints1d): Tokens per doc, all at least 1.
    trans (Floats2d): Transition scores `(K, K)`; start, end (Floats1d): `(K,)`.
    scheme (TagScheme): Which transitions are allowed.
    RETURNS (Tuple[Floats3d, Floats1d]): `alpha (B, T, K)` and `log Z (B,)`.
    """
    B, T, K = E.shape
    exp_t = xp.exp(trans) * xp.asarray(scheme.allowed)
    alpha = xp.empty_like(E)
    a = E[:, 0] + _masked(xp, start, xp.asarray(scheme.start))
    alpha[:, 0] = a
    for t in range(1, T):
        m = a.max(axis=1, keepdims=True)
        nxt = xp.log(_exp(xp, a - m) @ exp_t + 1e-30) + m + E[:, t]
        live = (t < lengths)[:, None]
        a = xp.where(live, nxt, a)
        alpha[:, t] = a
    final = a + _masked(xp, end, xp.asarray(scheme.end))
    m = final.max(axis=1)
    log_z = xp.log(xp.exp(final - m[:, None]).sum(axis=1)) + m
    return alpha, log_z


def backward(xp: Any, E: Any, lengths: Any, trans: Any, end: Any, scheme: TagScheme) -> Any:
    """Backward recursion: `beta[b, t, i]`, the log-score of all continuations after
    tag i at position t (emissions after t, transitions, end score).

    RETURNS (Floats3d): `beta (B, T, K)`.
    """
    B, T, K = E.shape
    exp_t_T = (xp.exp(trans) * xp.asarray(scheme.allowed)).T
    end_score = xp.broadcast_to(_masked(xp, end, xp.asarray(scheme.end)), (B, K))
    beta = xp.empty_like(E)
    b = end_score.copy()
    beta[:, T - 1] = b
    for t in range(T - 2, -1, -1):
        nxt_scores = E[:, t + 1] + b
        m = nxt_scores.max(axis=1, keepdims=True)
        nxt = xp.log(_exp(xp, nxt_scores - m) @ exp_t_T + 1e-30) + m
        inside = (t < lengths - 1)[:, None]
        b = xp.where(inside, nxt, end_score)
        beta[:, t] = b
    return beta


def marginals(
    xp: Any, E: Any, lengths: Any, trans: Any, start: Any, end: Any, scheme: TagScheme
) -> Tuple[Any, Any, Any, Any]:
    """Log-marginals of every tag at every position, by forward-backward.

    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Floats3d]): log-marginals `(B, T, K)`
        (padding positions hold garbage), `log Z`, `alpha` and `beta`.
    """
    alpha, log_z = forward(xp, E, lengths, trans, start, end, scheme)
    beta = backward(xp, E, lengths, trans, end, scheme)
    return alpha + beta - log_z[:, None, None], log_z, alpha, beta


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

    weights (Floats1d): `(B,)`, each doc's weight in the sum.
    RETURNS (Floats2d): `(K, K)` expected counts.
    """
    B, T, K = E.shape
    if T < 2:
        return xp.zeros((K, K), dtype=E.dtype)
    exp_t = xp.exp(trans) * xp.asarray(scheme.allowed)
    prev = alpha[:, :-1]
    nxt = E[:, 1:] + beta[:, 1:]
    m1 = prev.max(axis=2, keepdims=True)
    m2 = nxt.max(axis=2, keepdims=True)
    live = position_mask(xp, lengths, T)[:, 1:, None] * weights[:, None, None]
    scale = xp.exp(m1 + m2 - log_z[:, None, None]) * live
    left = (_exp(xp, prev - m1) * scale).reshape(-1, K)
    right = _exp(xp, nxt - m2).reshape(-1, K)
    return exp_t * (left.T @ right)


def boundary_counts(xp: Any, log_marg: Any, lengths: Any, weights: Any) -> Tuple[Any, Any]:
    """Expected start and end tags: marginals at the first and the last token.

    weights (Floats1d): `(B,)`, each doc's weight in the sum.
    RETURNS (Tuple[Floats1d, Floats1d]): `(K,)` each.
    """
    B = log_marg.shape[0]
    w = weights[:, None]
    first = (xp.exp(log_marg[:, 0]) * w).sum(axis=0)
    last = (xp.exp(log_marg[xp.arange(B), lengths - 1]) * w).sum(axis=0)
    return first, last


def viterbi(
    xp: Any, E: Any, lengths: Any, trans: Any, start: Any, end: Any, scheme: TagScheme
) -> Any:
    """The best tag sequence of each doc, using only allowed transitions.

    RETURNS (Ints2d): `(B, T)` tag indices (padding positions hold garbage).
    """
    B, T, K = E.shape
    t_scores = _masked(xp, trans, xp.asarray(scheme.allowed))
    back = xp.zeros((B, T, K), dtype="int32")
    score = E[:, 0] + _masked(xp, start, xp.asarray(scheme.start))
    for t in range(1, T):
        cand = score[:, :, None] + t_scores[None]
        best = cand.argmax(axis=1)
        nxt = cand.max(axis=1) + E[:, t]
        live = (t < lengths)[:, None]
        back[:, t] = xp.where(live, best, xp.arange(K)[None, :])
        score = xp.where(live, nxt, score)
    score = score + _masked(xp, end, xp.asarray(scheme.end))
    path = xp.zeros((B, T), dtype="int32")
    cur = score.argmax(axis=1).astype("int32")
    rows = xp.arange(B)
    for t in range(T - 1, -1, -1):
        path[:, t] = cur
        cur = back[rows, t, cur]
    return path


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
) -> Any:
    """Log-probability that each entity is exactly right: its tags from its first to
    its last token are the decoded ones, and no entity continues it.

    doc_idx, starts, ends (Ints1d): For each entity, its doc and its first and last
        token (inclusive).
    RETURNS (Floats1d): One log-probability per entity.
    """
    B, T, K = E.shape
    t_scores = _masked(xp, trans, xp.asarray(scheme.allowed))
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
    opening = xp.where(starts > 0, opening, _masked(xp, start, xp.asarray(scheme.start))[first_tag])
    if scheme.name == "BILUO":
        # L- and U- tags end the entity by themselves.
        closing = beta[doc_idx, ends, last_tag]
    else:
        # A B-/I- tag ends the entity only if the next tag is not its I- tag.
        inside = xp.asarray(scheme.inside)
        i_tag = xp.where(inside[first_tag] >= 0, inside[first_tag], 0)
        nxt = xp.minimum(ends + 1, T - 1)
        after = t_scores[last_tag] + E[doc_idx, nxt] + beta[doc_idx, nxt]
        after[xp.arange(len(i_tag)), i_tag] = NEG
        m2 = after.max(axis=1)
        closing = xp.log(xp.exp(after - m2[:, None]).sum(axis=1)) + m2
        at_end = ends >= lengths[doc_idx] - 1
        closing = xp.where(at_end, _masked(xp, end, xp.asarray(scheme.end))[last_tag], closing)
    return xp.minimum(opening + inner + closing - log_z[doc_idx], 0.0)
