"""The CRF's training losses: the negative log-likelihood of gold tags with its
gradients, and the agreement loss between forward passes.

The agreement loss is the self-regularization of Nguyen et al. (ASE 2023) for noisy
labels: several forward passes with their own dropout, and a loss that pulls each
pass's tag marginals towards their mean.
"""

import math
from typing import Any, NamedTuple, Tuple

from .lattice import (
    CLIP,
    NEG,
    TRANS_CLIP,
    ForwardBackward,
    Lattice,
    Params,
    marginals,
    position_mask,
)
from .tag_scheme import TagScheme

# Log-probabilities below this are clipped in the agreement loss.
LOG_EPS = -27.0


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


def transition_counts(lattice: Lattice, fb: ForwardBackward, weights: Any) -> Any:
    """Expected number of times each transition is taken, summed over the batch.

    The pairwise marginal at step t is
    `exp(prefix[t-1, i] + T[i, j] + E[t, j] + suffix[t, j] - log Z)`; with each
    factor rescaled by its maximum, the sum over all steps and docs is one matrix
    product.

    lattice (Lattice): The lattices.
    fb (ForwardBackward): `marginals` of these lattices.
    weights (Floats1d): `(B,)`, each doc's weight in the sum (any sign).
    RETURNS (Floats2d): `(K, K)` expected counts.
    """
    xp, E, lengths, params = lattice.xp, lattice.emissions, lattice.lengths, lattice.params
    B, T, K = E.shape
    if T < 2:
        return xp.zeros((K, K), dtype=E.dtype)
    exp_trans = xp.exp(xp.maximum(params.transitions, TRANS_CLIP)) * lattice.scheme.on(xp).allowed_f
    before = fb.log_prefix[:, :-1]
    after = E[:, 1:] + fb.log_suffix[:, 1:]
    top_before = before.max(axis=2, keepdims=True)
    top_after = after.max(axis=2, keepdims=True)
    live = position_mask(xp, lengths, T)[:, 1:, None] * weights[:, None, None]
    scale = xp.exp(top_before + top_after - fb.log_z[:, None, None]) * live
    left = (xp.exp(xp.maximum(before - top_before, CLIP)) * scale).reshape(-1, K)
    right = xp.exp(xp.maximum(after - top_after, CLIP)).reshape(-1, K)
    return exp_trans * (left.T @ right)


def boundary_counts(lattice: Lattice, fb: ForwardBackward, weights: Any) -> Tuple[Any, Any]:
    """Expected start and end tags: marginals at the first and the last token.

    lattice (Lattice): The lattices.
    fb (ForwardBackward): `marginals` of these lattices.
    weights (Floats1d): `(B,)`, each doc's weight in the sum (any sign).
    RETURNS (Tuple[Floats1d, Floats1d]): `(K,)` each.
    """
    xp, log_marg, lengths = lattice.xp, fb.log_marginals, lattice.lengths
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
    lattice: Lattice, gold: Any, o_unknown_weight: float = 0.0, divisor: float = 1.0
) -> Loss:
    """The negative log-likelihood of the gold tags, `log Z - log Z_gold` summed over
    the docs and divided by `divisor`, and its gradients. The free and the
    gold-constrained lattices (`constrain`) go through the recursions as one batch. A
    doc whose partial gold admits no valid tag sequence teaches nothing (weight 0).

    lattice (Lattice): The free lattices (not cut).
    gold (Ints3d): `(B, T, 1)` gold tag indices, -1 where there is none.
    o_unknown_weight (float): As for `constrain`.
    divisor (float): Divides the loss and every gradient (the number of passes).
    RETURNS (Loss): The loss, its gradients and the free lattices' marginals.
    """
    xp, E, lengths = lattice.xp, lattice.emissions, lattice.lengths
    B, T, K = E.shape
    both = Lattice(
        xp,
        xp.concatenate([E, constrain(xp, E, gold, o_unknown_weight)]),
        xp.concatenate([lengths, lengths]),
        lattice.params,
        lattice.scheme,
    )
    fb = marginals(both)
    free_z, gold_z = fb.log_z.reshape(2, B)
    ok = (gold_z > NEG / 2).astype(E.dtype)
    loss = ((free_z - gold_z) * ok).sum() / divisor
    # Expected counts under the free lattices less those under the constrained ones.
    weights = xp.concatenate([ok, -ok]) / divisor
    first, last = boundary_counts(both, fb, weights)
    counts = transition_counts(both, fb, weights)
    d_params = Params(counts, first, last)
    probs = xp.exp(fb.log_marginals).reshape(2, B, T, K)
    pos = position_mask(xp, lengths, T)
    d_E = (probs[0] - probs[1]) * (ok[:, None] * pos)[..., None] / divisor
    return Loss(loss, d_E, d_params, fb.log_marginals[:B])


def passes_loss(
    lattice: Lattice, gold: Any, n_passes: int, o_unknown_weight: float, agreement_weight: float
) -> Loss:
    """The loss of docs over several forward passes: the gold loss of every pass's
    lattices as one batch, divided by the number of passes, plus the agreement loss
    between the passes.

    lattice (Lattice): The passes' lattices, one pass after the other: `(P * B, T, K)`.
    gold (Ints3d): `(P * B, T, 1)` gold tag indices, -1 where there is none.
    n_passes (int): P.
    o_unknown_weight (float): As for `constrain`.
    agreement_weight (float): The agreement loss's weight (0: none).
    RETURNS (Loss): The loss, its gradients and the marginals.
    """
    xp = lattice.xp
    n_lattices, T, K = lattice.emissions.shape
    n_docs = n_lattices // n_passes
    result = gold_loss(lattice, gold, o_unknown_weight, n_passes)
    loss, grads = result.loss, result.d_emissions.reshape(n_passes, n_docs, T, K)
    if n_passes > 1 and agreement_weight > 0:
        log_m = result.log_marginals.reshape(n_passes, n_docs, T, K)
        pos = position_mask(xp, lattice.lengths[:n_docs], T)
        loss = loss + agreement_loss(xp, log_m, grads, pos, agreement_weight)
    return Loss(loss, grads.reshape(n_lattices, T, K), result.d_params, result.log_marginals)


def agreement_loss(xp: Any, log_m: Any, grads: Any, pos: Any, weight: float) -> Any:
    """Add weight * mean_i KL(mean ‖ p_i) over the passes' tag marginals, and its
    gradient, to `grads`.

    The gradient goes through each position's own marginals with the Jacobian of
    a softmax, `diag(p) - p pᵀ`: that is exactly the block of the CRF marginals'
    Jacobian for the position's own emissions. The cross-position blocks (and the
    transitions) are left out, which keeps it to one pass over the arrays.

    xp (module): numpy or cupy.
    log_m (Floats4d): `(P, B, T, K)`: each of the P passes' log-marginals.
    grads (Floats4d): `(P, B, T, K)`: each pass's gradient, added to in place.
    pos (Floats2d): `(B, T)`: 1.0 at real tokens.
    weight (float): The agreement loss's weight.
    RETURNS (Any): The loss, a scalar on the device.
    """
    n_passes = log_m.shape[0]
    log_p = xp.maximum(log_m, LOG_EPS)
    p = xp.exp(log_p)
    mean = p.mean(axis=0)
    log_mean = xp.log(mean)
    h = log_mean - log_p.mean(axis=0)
    mask = pos[:, :, None]
    p_dot_h = (p * h).sum(axis=3, keepdims=True)
    grads += (weight / n_passes) * (p * h - mean - p * (p_dot_h - 1.0)) * mask
    # The mean over passes of KL(mean ‖ p_i) is the sum of mean * h.
    return weight * (mean * h * mask).sum()
