"""A linear-chain CRF over entity tags, written once for numpy and cupy: forward-backward,
Viterbi and span probabilities.

Every function reads a `Lattice`: a padded batch of emissions `(B, T, K)` with
`lengths (B,)`, the CRF's scores, the tag scheme and the array module `xp` (thinc's
`ops.xp`). Emissions enter as float32 at least (`promote`: float16 cannot hold the
recursions' range). The only Python loops run over positions, and on a GPU each array
operation in them is a kernel launch, which bounds the speed: so a step is a handful of
batched operations, everything that does not change between steps is computed before
the loop, the scheme's masks are made once per device (`TagScheme.on`), and callers
stack every lattice of an update into one batch.

The forward recursion runs in the probability domain, divided by its maximum at every
step: `p_t ∝ (p_{t-1} @ exp(T)) * exp(E_t - max E_t)`; the logs of the divisors are
summed afterwards in one cumulative sum. Disallowed transitions are zeros of `exp(T)`.
The backward recursion is the forward one of the reversed docs with the transposed
transitions, so `marginals` runs both in one loop, one batched product per step.
Padding positions score NEG, so nothing flows through them.

On the CPU the products are `einsum`s, not `@` (`_product`): a BLAS product sums in an
order that depends on how many rows it gets, so a doc's scores would change in their
last bits with the other docs of its batch. numpy's `einsum` sums each row in the same
order whatever the batch, and is as fast at these sizes, so on the CPU a doc scores
the same bit for bit in any batch. On a GPU, cupy's `einsum` costs more Python per
step than the product: `@` stays.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

from .tag_scheme import Entities, TagScheme

# Log-score of something impossible: finite, so no NaN from `-inf - -inf`.
NEG = -1e4

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


@dataclass(frozen=True)
class Lattice:
    """A padded batch of tag lattices: what every CRF function reads.

    xp (module): numpy or cupy, the arrays' module.
    emissions (Floats3d): `(B, T, K)` emission scores, promoted to float32 at least.
    lengths (Ints1d): `(B,)` tokens per chain, all at least 1.
    params (Params): The transition, start and end scores.
    scheme (TagScheme): Which transitions are allowed.
    cuts (Tuple[Optional[Bools1d], Optional[Bools1d]]): `(B,)` each: the chains that
        are windows cut out of a longer doc at their start, and at their end: any tag
        may stand there, with no start or end score (`boundary_scores`). None: none.
    """

    xp: Any
    emissions: Any
    lengths: Any
    params: Params
    scheme: TagScheme
    cuts: Tuple[Any, Any] = (None, None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "emissions", promote(self.xp, self.emissions))

    def start_scores(self) -> Any:
        """RETURNS (Floats1d or Floats2d): The start scores (`boundary_scores`)."""
        masks = self.scheme.on(self.xp)
        return boundary_scores(self.xp, self.params.start, masks.start, self.cuts[0])

    def end_scores(self) -> Any:
        """RETURNS (Floats1d or Floats2d): The end scores (`boundary_scores`)."""
        masks = self.scheme.on(self.xp)
        return boundary_scores(self.xp, self.params.end, masks.end, self.cuts[1])


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


def _product(xp: Any, spec: str, a: Any, b: Any) -> Any:
    """`a @ b`; with numpy an `einsum` by `spec`, whose sums do not depend on the
    number of rows."""
    return xp.einsum(spec, a, b) if xp.__name__ == "numpy" else a @ b


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
        xp.multiply(_product(xp, "gbk,gkj->gbj", rel[t - 1], mats), expE[t], out=p)
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


def _recursions(lattice: Lattice, directions: str) -> Tuple[Any, Any, Any, Any]:
    """Run the forward recursion ("f"), the backward one ("b"), or both ("fb") in one
    loop.

    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Bools3d]): the forward variables,
        `log Z` (of the forward direction), the backward variables (None for a
        direction not run) and the mask of real positions `(B, T, 1)`.
    """
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    masks = lattice.scheme.on(xp)
    rows = xp.arange(B)
    last = lengths - 1
    steps = xp.arange(T)[None, :]
    live = (steps < lengths[:, None])[:, :, None]
    E = xp.where(live, E, NEG)
    exp_trans = xp.exp(xp.maximum(params.transitions, TRANS_CLIP)) * masks.allowed_f
    end_scores = lattice.end_scores()
    chains, mats, firsts = [], [], []
    if "f" in directions:
        chains.append(E.transpose(1, 0, 2))
        mats.append(exp_trans)
        firsts.append(E[:, 0] + lattice.start_scores())
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
        after = xp.log(_product(xp, "tbk,kj->tbj", rel[:-1, -1], mats_g[-1]))
        after += log_offset[:-1, -1, :, None]
        ends = xp.broadcast_to(end_scores, (1,) + after.shape[1:])
        rev_suffix = xp.concatenate([ends, after])
        suffix = xp.where(live, rev_suffix.transpose(1, 0, 2)[rows[:, None], rev], NEG)
    return prefix, log_z, suffix, live


def forward(lattice: Lattice) -> Tuple[Any, Any]:
    """Forward recursion.

    lattice (Lattice): The lattices.
    RETURNS (Tuple[Floats3d, Floats1d]): the forward variables `(B, T, K)` (as
        `ForwardBackward.log_prefix`) and `log Z (B,)`.
    """
    prefix, log_z, _, _ = _recursions(lattice, "f")
    return prefix, log_z


def backward(lattice: Lattice) -> Any:
    """Backward recursion: the log-score of all continuations after tag i at
    position t (emissions after t, transitions, end score).

    lattice (Lattice): The lattices.
    RETURNS (Floats3d): The backward variables `(B, T, K)` (as
        `ForwardBackward.log_suffix`).
    """
    return _recursions(lattice, "b")[2]


def marginals(lattice: Lattice) -> ForwardBackward:
    """Log-marginals of every tag at every position, by forward-backward (both
    recursions in one loop).

    lattice (Lattice): The lattices.
    RETURNS (ForwardBackward): The marginals, log Z and both recursions' variables.
    """
    prefix, log_z, suffix, live = _recursions(lattice, "fb")
    log_m = lattice.xp.where(live, prefix + suffix - log_z[:, None, None], NEG)
    return ForwardBackward(log_m, log_z, prefix, suffix)


def position_mask(xp: Any, lengths: Any, T: int) -> Any:
    """RETURNS (Floats2d): `(B, T)`, 1.0 at real tokens and 0.0 at padding."""
    return (xp.arange(T)[None, :] < lengths[:, None]).astype("float32")


def viterbi(lattice: Lattice) -> Any:
    """The best tag sequence of each chain, using only allowed transitions.

    lattice (Lattice): The lattices.
    RETURNS (Ints2d): `(B, T)` tag indices (padding positions repeat the last tag).
    """
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    masks = lattice.scheme.on(xp)
    t_scores = xp.where(masks.allowed, params.transitions, NEG)[None]
    Et = xp.ascontiguousarray(E.transpose(1, 0, 2))
    # Time-major: best[t], the best score of a prefix ending in each tag; back[t], its
    # tag at t-1.
    best = xp.empty_like(Et)
    back = xp.empty((T, B, K), dtype="int64")
    best[0] = Et[0] + lattice.start_scores()
    for t in range(1, T):
        cand = best[t - 1][:, :, None] + t_scores
        cand.argmax(axis=1, out=back[t])
        xp.add(cand.max(axis=1), Et[t], out=best[t])
    rows = xp.arange(B)
    final = best[lengths - 1, rows] + lattice.end_scores()
    # At padding the back-pointers keep the tag, so every doc's trace starts at T-1.
    live = (xp.arange(T)[:, None] < lengths[None, :])[:, :, None]
    back = xp.where(live, back, xp.arange(K)[None, None, :])
    path = xp.empty((T, B), dtype="int64")
    cur = final.argmax(axis=1)
    for t in range(T - 1, -1, -1):
        path[t] = cur
        cur = back[t, rows, cur]
    return path.T


def span_log_probs(lattice: Lattice, fb: ForwardBackward, paths: Any, entities: Entities) -> Any:
    """Log-probability that each entity is exactly right: its tags from its first to
    its last token are the decoded ones, and no entity continues it.

    lattice (Lattice): The lattices.
    fb (ForwardBackward): `marginals` of these lattices.
    paths (Ints2d): `(B, T)`, the decoded tags.
    entities (Entities): The entities of `paths` to score (their labels unused).
    RETURNS (Floats1d): One log-probability per entity.
    """
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    masks = lattice.scheme.on(xp)
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
    start_s = xp.broadcast_to(lattice.start_scores(), (B, K))
    opening = xp.where(first > 0, opening, start_s[doc, first_tag])
    if lattice.scheme.name == "BILUO":
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
        end_s = xp.broadcast_to(lattice.end_scores(), (B, K))
        closing = xp.where(at_end, end_s[doc, last_tag], closing)
    return xp.minimum(opening + inner + closing - fb.log_z[doc], 0.0)
