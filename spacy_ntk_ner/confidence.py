"""Score math of entity confidence: Platt scaling and the calibration error.

Plain numpy on lists of scores. Nothing here imports the rest of the package, so the
component (`ner.py`), the fitting of a pipeline's calibration (`calibration.py`) and
the reports (`report.py`) all build on it.

Platt scaling maps each score p to `sigmoid(a * logit(p) + b)`, with a and b fitted by
logistic regression of "the entity is exactly right" on `logit(p)`. The map is
monotone, so it keeps the ranking of entities.
"""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

IDENTITY = (1.0, 0.0)
# Fewer predicted entities than this, or all right, or all wrong: too little to fit.
MIN_ENTITIES = 20
_EPS = 1e-6


def logit(p: numpy.ndarray) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): log(p / (1 - p)), with p kept inside (0, 1)."""
    p = numpy.clip(p, _EPS, 1 - _EPS)
    return numpy.log(p) - numpy.log1p(-p)


def apply_platt(scores: numpy.ndarray, params: Sequence[float]) -> numpy.ndarray:
    """Map scores through `sigmoid(a * logit(p) + b)`.

    scores (numpy.ndarray): Scores in [0, 1].
    params (Sequence[float]): (a, b).
    RETURNS (numpy.ndarray): The calibrated scores.
    """
    a, b = params
    if (a, b) == IDENTITY:
        return scores
    return 0.5 * (1.0 + numpy.tanh(0.5 * (a * logit(scores) + b)))


def fit_platt(
    scores: Sequence[float], correct: Sequence[bool], l2: float = 1e-3
) -> Optional[Tuple[float, float]]:
    """Fit Platt scaling by Newton's method on the L2-regularized log loss.

    scores (Sequence[float]): Uncalibrated scores of predicted entities.
    correct (Sequence[bool]): Whether each entity is exactly right.
    l2 (float): Pull of (a, b) towards the identity (1, 0).
    RETURNS (Optional[Tuple[float, float]]): (a, b), or None when the data cannot
        support a fit (too few entities, one class only, or a non-increasing map).
    """
    y = numpy.asarray(correct, dtype="float64")
    if len(y) < MIN_ENTITIES or y.min() == y.max():
        return None
    x = logit(numpy.asarray(scores, dtype="float64"))
    X = numpy.stack([x, numpy.ones_like(x)], axis=1)
    prior = numpy.array(IDENTITY)

    def loss(w: numpy.ndarray) -> float:
        z = X @ w
        # log(1 + e^z) - y z, written to stay finite for large |z|.
        return float(numpy.mean(numpy.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(
            ((w - prior) ** 2).sum()
        )

    w = prior.copy()
    current = loss(w)
    for _ in range(100):
        p = 0.5 * (1.0 + numpy.tanh(0.5 * (X @ w)))
        grad = X.T @ (p - y) / len(y) + l2 * (w - prior)
        hess = (X * (p * (1 - p))[:, None]).T @ X / len(y) + l2 * numpy.eye(2)
        step = numpy.linalg.solve(hess, grad)
        # Newton with backtracking: halve the step until the loss goes down.
        t = 1.0
        while t > 1e-6 and loss(w - t * step) > current:
            t /= 2
        w = w - t * step
        new = loss(w)
        if current - new < 1e-12:
            break
        current = new
    if not numpy.all(numpy.isfinite(w)) or w[0] <= 0:
        return None
    return float(w[0]), float(w[1])


N_BINS = 10


def expected_calibration_error(
    scores: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS
) -> Dict[str, Any]:
    """Expected calibration error of entity scores, with equal-width bins.

    ECE = sum over bins of (entities in bin / all entities) * |accuracy - mean score|.

    scores (Sequence[float]): Each predicted entity's score.
    correct (Sequence[bool]): Whether each is exactly right (span and label).
    n_bins (int): Number of bins over [0, 1].
    RETURNS (Dict[str, Any]): "ece", "n" and per-bin "bins" (lower edge, count,
        mean score, accuracy).
    """
    s = numpy.asarray(scores, dtype="float64")
    c = numpy.asarray(correct, dtype="float64")
    if s.size == 0:
        return {"ece": None, "n": 0, "bins": []}
    idx = numpy.minimum((s * n_bins).astype(int), n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        if not n:
            continue
        conf, acc = float(s[sel].mean()), float(c[sel].mean())
        ece += n / s.size * abs(acc - conf)
        bins.append({"from": b / n_bins, "n": n, "score": conf, "accuracy": acc})
    return {"ece": ece, "n": int(s.size), "bins": bins}


def scored_entities(
    pairs: Iterable[Tuple[Any, Any]], spans_key: str
) -> Tuple[List[float], List[bool]]:
    """Pair each predicted, scored entity with whether the reference has it exactly.

    pairs (Iterable[Tuple[Doc, Doc]]): Annotated docs and their reference docs.
    spans_key (str): Where the component put its scored spans.
    RETURNS (Tuple[List[float], List[bool]]): Scores and correctness.
    """
    scores: List[float] = []
    correct: List[bool] = []
    for predicted, reference in pairs:
        gold = {(e.start_char, e.end_char, e.label_) for e in reference.ents}
        group = predicted.spans.get(spans_key)
        if group is None:
            continue
        for span, score in zip(group, group.attrs.get("scores", [])):
            scores.append(float(score))
            correct.append((span.start_char, span.end_char, span.label_) in gold)
    return scores, correct
