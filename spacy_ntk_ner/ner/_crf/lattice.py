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

A step reads each tag's allowed neighbours only (`tag_scheme.StepPlan`): under BILUO a
quarter of the K x K products and candidates. The terms it leaves out are the zeros
of `exp(T)`, which add nothing to a sum, and the NEG-scored transitions, which win a
maximum only where every allowed predecessor is out of reach too (a dense step's
path never passes there); it takes the others in tag order, so it computes what a
dense step computes, bit for bit. Decoding reads the recursions only where the entities'
probabilities need them (`recursions`), not the whole arrays of `marginals`.

On the CPU the products are `einsum`s, not `@` (`_product`): a BLAS product sums in an
order that depends on how many rows it gets, so a doc's scores would change in their
last bits with the other docs of its batch. numpy's `einsum` sums each row in the same
order whatever the batch, and is as fast at these sizes, so on the CPU a doc scores
the same bit for bit in any batch. On a GPU, cupy's `einsum` costs more Python per
step than the product: `@` stays.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

from .tag_scheme import Entities, StepPlan, TagScheme

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

    def prefix_at(self, doc: Any, t: Any) -> Any:
        """RETURNS (Floats2d): `(n, K)`, the forward variables of docs `doc` at positions `t`."""
        return self.log_prefix[doc, t]

    def suffix_at(self, doc: Any, t: Any) -> Any:
        """RETURNS (Floats2d): `(n, K)`, the backward variables of docs `doc` at positions `t`."""
        return self.log_suffix[doc, t]


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


def _scan(xp: Any, expE: Any, mats: Any, p0: Any, plans: Any) -> Tuple[Any, Any]:
    """The recursion `p_t ∝ (p_{t-1} @ mats) * expE_t`, each step divided by its
    maximum; time-major, so each step reads and writes contiguous slices. Each group
    runs in its plan's step order, and each tag sums over its neighbours only (the
    other terms of the product are zeros, which leave a sum as it is).

    expE (Floats4d): `(T, G, B, K)`: exp of the emissions less their maximum per
        position, for G groups of B chains, in step order.
    mats (Floats3d): `(G, K, K)`: exp of each group's transition scores.
    p0 (Floats3d): `(G, B, K)`: the relative scores at position 0, in step order.
    plans (List[StepPlan]): Each group's plan, all of one shape.
    RETURNS (Tuple[Floats4d, Floats3d]): `rel (T, G, B, K)`, the relative scores (max
        1, none below FLOOR) in step order, and `divisors (T, G, B)`, each step's
        divisor (1 at position 0).
    """
    T, G, B, K = expE.shape
    rel = xp.empty_like(expE)
    divisors = xp.ones(expE.shape[:3], dtype=expE.dtype)
    rel[0] = p0
    plan = plans[0]
    n_wide, width = plan.n_wide, plan.narrow.shape[1]
    if plan.dense:
        m_wide = mats
    else:
        # Each step gathers the neighbours from the flattened `(G, B, K)` scores of the
        # step before: `row + place` for each group and chain.
        row = (xp.arange(G * B) * K).reshape(G, B, 1)
        wide_at = row + xp.stack([p.position[p.wide] for p in plans])[:, None, :]
        narrow_at = row[..., None] + xp.stack([p.position[p.narrow].T for p in plans])[:, None]
        # m_wide[g, i, j]: from the i-th shared neighbour to the j-th wide tag;
        # m_narrow[g, 0, k, j]: from the k-th neighbour of the j-th other tag (0 at
        # repeats, which add nothing).
        m_wide = xp.stack([m[p.wide[:, None], p.order[None, :n_wide]] for m, p in zip(mats, plans)])
        m_narrow = xp.stack(
            [(m[p.narrow, p.order[n_wide:, None]] * p.real).T for m, p in zip(mats, plans)]
        )[:, None]
    for t in range(1, T):
        prev, p = rel[t - 1], rel[t]
        if plan.dense:
            xp.multiply(_product(xp, "gbk,gkj->gbj", prev, m_wide), expE[t], out=p)
        else:
            wide = _product(xp, "gbk,gkj->gbj", xp.take(prev, wide_at), m_wide)
            xp.multiply(wide, expE[t, :, :, :n_wide], out=p[:, :, :n_wide])
            # A sum in the order of the tags, as the product's.
            terms = xp.take(prev, narrow_at) * m_narrow
            narrow = terms[:, :, 0]
            for k in range(1, width):
                narrow = narrow + terms[:, :, k]
            xp.multiply(narrow, expE[t, :, :, n_wide:], out=p[:, :, n_wide:])
        p.max(axis=2, out=divisors[t])
        xp.divide(p, divisors[t][:, :, None], out=p)
        xp.maximum(p, FLOOR, out=p)
    return rel, divisors


def _log_forward(xp: Any, X: Any, mats: Any, first: Any, plans: Any) -> Tuple[Any, Any]:
    """Forward scores of G groups of chains.

    X (Floats4d): `(T, G, B, K)` emissions, NEG at padding, in step order.
    mats (Floats3d): `(G, K, K)`: exp of each group's transition scores.
    first (Floats3d): `(G, B, K)`: log-scores at position 0 (emission and start
        score), in step order.
    plans (List[StepPlan]): Each group's plan.
    RETURNS (Tuple[Floats4d, Floats3d]): `rel (T, G, B, K)` (in step order) and
        `log_offset (T, G, B)`: the log-score of every prefix ending in each tag is
        `log(rel) + log_offset`.
    """
    top = X.max(axis=3)
    expE = xp.exp(xp.maximum(X - top[..., None], CLIP))
    m0 = first.max(axis=2)
    p0 = xp.maximum(xp.exp(first - m0[..., None]), FLOOR)
    rel, divisors = _scan(xp, expE, mats, p0, plans)
    log_divisors = xp.log(divisors) + top
    log_divisors[0] = m0
    return rel, xp.cumsum(log_divisors, axis=0)


class _Scans(NamedTuple):
    """What `_scans` leaves: the loop's relative scores and offsets, in step order."""

    rel: Any
    log_offset: Any
    plans: Any
    mats: Any
    live: Any
    end_scores: Any


def _scans(lattice: Lattice, directions: str) -> _Scans:
    """Run the forward recursion ("f"), the backward one ("b"), or both ("fb") in one
    loop: the backward one is the forward one of the reversed docs (position s holds
    position n-1-s; padding stays in place) with the transposed transitions."""
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    masks = lattice.scheme.on(xp)
    rows = xp.arange(B)
    steps = xp.arange(T)[None, :]
    live = (steps < lengths[:, None])[:, :, None]
    E = xp.where(live, E, NEG)
    exp_trans = xp.exp(xp.maximum(params.transitions, TRANS_CLIP)) * masks.allowed_f
    end_scores = lattice.end_scores()
    chains, mats, firsts, plans = [], [], [], []
    if "f" in directions:
        plan = masks.recursions[0]
        chains.append(xp.take(E, plan.order, axis=2).transpose(1, 0, 2))
        mats.append(exp_trans)
        firsts.append(xp.take(E[:, 0] + lattice.start_scores(), plan.order, axis=-1))
        plans.append(plan)
    if "b" in directions:
        plan = masks.recursions[1]
        rev = _reversed_positions(xp, lengths, T)
        chains.append(xp.take(E[rows[:, None], rev], plan.order, axis=2).transpose(1, 0, 2))
        mats.append(exp_trans.T)
        firsts.append(xp.take(E[rows, lengths - 1] + end_scores, plan.order, axis=-1))
        plans.append(plan)
    mats_g = xp.stack(mats)
    rel, log_offset = _log_forward(xp, xp.stack(chains, axis=1), mats_g, xp.stack(firsts), plans)
    return _Scans(rel, log_offset, plans, mats_g, live, end_scores)


def _reversed_positions(xp: Any, lengths: Any, T: int) -> Any:
    """RETURNS (Ints2d): `(B, T)`: the position of each doc's reversed chain that holds
    each position (n-1-t; padding stays in place)."""
    steps = xp.arange(T)[None, :]
    return xp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)


def _in_tag_order(xp: Any, rel: Any, plan: StepPlan) -> Any:
    """RETURNS (FloatsXd): `rel`'s last axis (in the plan's step order) in tag order."""
    return rel if plan.dense else xp.take(rel, plan.position, axis=-1)


def _recursions(lattice: Lattice, directions: str) -> Tuple[Any, Any, Any, Any]:
    """Run the forward recursion ("f"), the backward one ("b"), or both ("fb") in one
    loop, and read every position of them.

    RETURNS (Tuple[Floats3d, Floats1d, Floats3d, Bools3d]): the forward variables,
        `log Z` (of the forward direction), the backward variables (None for a
        direction not run) and the mask of real positions `(B, T, 1)`.
    """
    xp, lengths = lattice.xp, lattice.lengths
    B, T, K = lattice.emissions.shape
    scans = _scans(lattice, directions)
    live, end_scores = scans.live, scans.end_scores
    rel = xp.stack(
        [_in_tag_order(xp, scans.rel[:, g], plan) for g, plan in enumerate(scans.plans)],
        axis=1,
    )
    log_offset = scans.log_offset
    rows = xp.arange(B)
    last = lengths - 1
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
        after = xp.log(_product(xp, "tbk,kj->tbj", rel[:-1, -1], scans.mats[-1]))
        after += log_offset[:-1, -1, :, None]
        ends = xp.broadcast_to(end_scores, (1,) + after.shape[1:])
        rev_suffix = xp.concatenate([ends, after])
        rev = _reversed_positions(xp, lengths, T)
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


class Recursions:
    """Both recursions of a batch, read only where they are asked for: what the span
    probabilities of decoded entities need (a few positions of each doc), without the
    whole `(B, T, K)` arrays of `marginals`. Each value is computed as `marginals`
    computes it, so the two agree bit for bit.

    log_z (Floats1d): `(B,)`, the log-score of all tag sequences.
    """

    def __init__(self, lattice: Lattice) -> None:
        """Run both recursions of `lattice` in one loop.

        lattice (Lattice): The lattices.
        """
        self.lattice = lattice
        self._scans = _scans(lattice, "fb")
        xp = lattice.xp
        last = lattice.lengths - 1
        prefix = self.prefix_at(xp.arange(len(last)), last)
        self.log_z = _logsumexp(xp, prefix + self._scans.end_scores)

    def prefix_at(self, doc: Any, t: Any) -> Any:
        """RETURNS (Floats2d): `(n, K)`, as `ForwardBackward.log_prefix[doc, t]`."""
        xp, scans = self.lattice.xp, self._scans
        rel = _in_tag_order(xp, scans.rel[t, 0, doc], scans.plans[0])
        prefix = xp.log(rel) + scans.log_offset[t, 0, doc][:, None]
        return xp.where((t < self.lattice.lengths[doc])[:, None], prefix, NEG)

    def suffix_at(self, doc: Any, t: Any) -> Any:
        """RETURNS (Floats2d): `(n, K)`, as `ForwardBackward.log_suffix[doc, t]`."""
        xp, scans, lengths = self.lattice.xp, self._scans, self.lattice.lengths
        live = t < lengths[doc]
        # Reversed position s holds position t; the suffix at t reads reversed s-1.
        s = xp.where(live, lengths[doc] - 1 - t, t)
        src = xp.maximum(s - 1, 0)
        rel = _in_tag_order(xp, scans.rel[src, 1, doc], scans.plans[1])
        after = xp.log(_product(xp, "tbk,kj->tbj", rel[None], scans.mats[1]))[0]
        after += scans.log_offset[src, 1, doc][:, None]
        ends = xp.broadcast_to(scans.end_scores, (len(lengths), after.shape[1]))[doc]
        suffix = xp.where((s == 0)[:, None], ends, after)
        return xp.where(live[:, None], suffix, NEG)


def recursions(lattice: Lattice) -> Recursions:
    """Both recursions in one loop, read where asked (`Recursions`): for scoring
    entities, which needs a few positions of each doc.

    lattice (Lattice): The lattices.
    RETURNS (Recursions): The recursions.
    """
    return Recursions(lattice)


def position_mask(xp: Any, lengths: Any, T: int) -> Any:
    """RETURNS (Floats2d): `(B, T)`, 1.0 at real tokens and 0.0 at padding."""
    return (xp.arange(T)[None, :] < lengths[:, None]).astype("float32")


def viterbi(lattice: Lattice) -> Any:
    """The best tag sequence of each chain, using only allowed transitions: each step
    takes each tag's best predecessor among those allowed before it (`StepPlan`),
    ties to the lowest tag.

    lattice (Lattice): The lattices.
    RETURNS (Ints2d): `(B, T)` tag indices (padding positions repeat the last tag).
    """
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    masks = lattice.scheme.on(xp)
    plan = masks.viterbi
    n_wide, (n_narrow, width) = plan.n_wide, plan.narrow.shape
    n_from = len(plan.wide)
    t_scores = xp.where(masks.allowed, params.transitions, NEG)
    # In step order (`plan.order`): the score of each wide tag from each shared
    # predecessor, and of each other tag from each of its own.
    t_wide = t_scores[plan.wide[None, :], plan.order[:n_wide, None]]
    t_narrow = t_scores[plan.narrow, plan.order[n_wide:, None]].T
    wide_at = plan.position[plan.wide]
    narrow_at = plan.position[plan.narrow].T
    # Time-major, in step order: best[t], the best score of a prefix ending in each tag;
    # back[t], which of its predecessors it took (an index into its row of `sources`).
    Et = xp.take(E.transpose(1, 0, 2), plan.order, axis=2)
    best = xp.empty_like(Et)
    back_wide = xp.zeros((T, B, n_wide), dtype="int64")
    back_narrow = xp.zeros((T, B, n_narrow), dtype="int64")
    # Where each row's candidates start in the flattened `(B, n_wide, n_from)` array.
    row_start = xp.arange(B * n_wide).reshape(B, n_wide) * n_from
    # Each step's best scores before its emissions, in the candidates' precision.
    top = xp.empty((B, K), dtype=xp.result_type(Et, t_scores))
    top_wide, top_narrow = top[:, :n_wide], top[:, n_wide:]
    best[0] = Et[0] + xp.take(lattice.start_scores(), plan.order, axis=-1)
    for t in range(1, T):
        prev = best[t - 1]
        cand = xp.take(prev, wide_at, axis=1)[:, None, :] + t_wide
        pick = back_wide[t]
        cand.argmax(axis=2, out=pick)
        # The maximum is read at the argmax: a reduction over so short an axis costs
        # several times a gather.
        xp.take(cand, row_start + pick, out=top_wide)
        if n_narrow:
            # Each other tag's few predecessors one at a time: the first best wins.
            cand = xp.take(prev, narrow_at, axis=1) + t_narrow
            if width == 1:
                top_narrow[...] = cand[:, 0]
            else:
                xp.greater(cand[:, 1], cand[:, 0], out=back_narrow[t])
                xp.maximum(cand[:, 1], cand[:, 0], out=top_narrow)
            for k in range(2, width):
                better = cand[:, k] > top_narrow
                back_narrow[t][better] = k
                xp.maximum(cand[:, k], top_narrow, out=top_narrow)
        xp.add(top, Et[t], out=best[t])
    back = xp.concatenate([back_wide, back_narrow], axis=2)
    rows = xp.arange(B)
    final = best[lengths - 1, rows] + xp.take(lattice.end_scores(), plan.order, axis=-1)
    sources = _step_sources(xp, plan)
    # At padding the back-pointers keep the tag, so every doc's trace starts at T-1.
    live = (xp.arange(T)[:, None] < lengths[None, :])[:, :, None]
    back = xp.where(live, sources[xp.arange(K), back], xp.arange(K)[None, None, :])
    path = xp.empty((T, B), dtype="int64")
    cur = final.argmax(axis=1)
    for t in range(T - 1, -1, -1):
        path[t] = cur
        cur = back[t, rows, cur]
    return plan.order[path.T]


def _step_sources(xp: Any, plan: StepPlan) -> Any:
    """RETURNS (Ints2d): `(K, max(W, w))`: the neighbours of each tag, all in step
    order (as places in `plan.order`)."""
    K, n_wide = len(plan.order), plan.n_wide
    width = max(len(plan.wide), plan.narrow.shape[1])
    sources = xp.zeros((K, width), dtype="int64")
    sources[:n_wide, : len(plan.wide)] = plan.position[plan.wide]
    sources[n_wide:, : plan.narrow.shape[1]] = plan.position[plan.narrow]
    return sources


def span_log_probs(lattice: Lattice, fb: Any, paths: Any, entities: Entities) -> Any:
    """Log-probability that each entity is exactly right: its tags from its first to
    its last token are the decoded ones, and no entity continues it.

    lattice (Lattice): The lattices.
    fb (Union[ForwardBackward, Recursions]): `marginals` or `recursions` of these
        lattices (both give the same numbers; `recursions` computes only those read).
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
    before = fb.prefix_at(doc, xp.maximum(first - 1, 0)) + t_scores[:, first_tag].T
    top = before.max(axis=1)
    opening = xp.log(xp.exp(before - top[:, None]).sum(axis=1)) + top
    start_s = xp.broadcast_to(lattice.start_scores(), (B, K))
    opening = xp.where(first > 0, opening, start_s[doc, first_tag])
    if lattice.scheme.name == "BILUO":
        # L- and U- tags end the entity by themselves.
        closing = fb.suffix_at(doc, last)[xp.arange(len(last)), last_tag]
    else:
        # A B-/I- tag ends the entity only if the next tag is not its I- tag.
        inside = masks.inside
        i_tag = xp.where(inside[first_tag] >= 0, inside[first_tag], 0)
        nxt = xp.minimum(last + 1, T - 1)
        after = t_scores[last_tag] + E[doc, nxt] + fb.suffix_at(doc, nxt)
        after[xp.arange(len(i_tag)), i_tag] = NEG
        top_after = after.max(axis=1)
        closing = xp.log(xp.exp(after - top_after[:, None]).sum(axis=1)) + top_after
        at_end = last >= lengths[doc] - 1
        end_s = xp.broadcast_to(lattice.end_scores(), (B, K))
        closing = xp.where(at_end, end_s[doc, last_tag], closing)
    return xp.minimum(opening + inner + closing - fb.log_z[doc], 0.0)
