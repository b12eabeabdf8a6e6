"""Score math of entity confidence: Platt scaling and the calibration error.

Plain numpy on lists of scores. Nothing here imports the rest of the package, so the
component (`ner.py`), the fitting of a pipeline's calibration (`calibration.py`) and
the reports (`report.py`) all build on it.

Platt scaling maps each score p to `sigmoid(a * logit(p) + b)`, with a and b fitted by
logistic regression of "the entity is exactly right" on `logit(p)`. The map is
monotone, so it keeps the ranking of entities.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

# Scores or flags as lists or numpy arrays.
Floats = Union[Sequence[float], numpy.ndarray]
Flags = Union[Sequence[bool], numpy.ndarray]

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


def fit_platt(scores: Floats, correct: Flags, l2: float = 1e-3) -> Optional[Tuple[float, float]]:
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
    scores: Floats, correct: Flags, n_bins: int = N_BINS
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
    scores, correct, _ = labelled_entities(pairs, spans_key)
    return scores, correct


def labelled_entities(
    pairs: Iterable[Tuple[Any, Any]], spans_key: str
) -> Tuple[List[float], List[bool], List[str]]:
    """Like `scored_entities`, with each entity's label too.

    pairs (Iterable[Tuple[Doc, Doc]]): Annotated docs and their reference docs.
    spans_key (str): Where the component put its scored spans.
    RETURNS (Tuple[List[float], List[bool], List[str]]): Scores, correctness, labels.
    """
    scores: List[float] = []
    correct: List[bool] = []
    labels: List[str] = []
    for predicted, reference in pairs:
        gold = {(e.start_char, e.end_char, e.label_) for e in reference.ents}
        group = predicted.spans.get(spans_key)
        if group is None:
            continue
        for span, score in zip(group, group.attrs.get("scores", [])):
            scores.append(float(score))
            correct.append((span.start_char, span.end_char, span.label_) in gold)
            labels.append(span.label_)
    return scores, correct, labels


# ---- calibration maps per label

# A label needs this many predicted dev entities for a Platt map of its own.
MIN_LABEL_ENTITIES = 200


def apply_calibration(
    scores: numpy.ndarray,
    label_idx: numpy.ndarray,
    labels: Sequence[str],
    shared: Sequence[float],
    per_label: Mapping[str, Sequence[float]],
) -> numpy.ndarray:
    """Calibrate entity scores: each label with a map of its own through that map,
    the others through the shared one.

    scores (numpy.ndarray): Uncalibrated scores in [0, 1].
    label_idx (numpy.ndarray): Each entity's label index into `labels`.
    labels (Sequence[str]): The component's labels.
    shared (Sequence[float]): (a, b) of the shared map.
    per_label (Dict[str, Sequence[float]]): (a, b) by label name.
    RETURNS (numpy.ndarray): The calibrated scores (a new array when any map is applied).
    """
    out = apply_platt(scores, shared)
    if not per_label:
        return out
    out = numpy.array(out, copy=True)
    label_idx = numpy.asarray(label_idx)
    for i, name in enumerate(labels):
        params = per_label.get(name)
        if params is not None:
            sel = label_idx == i
            out[sel] = apply_platt(scores[sel], params)
    return out


def _label_maps(
    scores: numpy.ndarray, correct: numpy.ndarray, labels: numpy.ndarray, min_entities: int
) -> Tuple[Optional[Tuple[float, float]], Dict[str, Tuple[float, float]]]:
    """Fit a map per label with at least `min_entities` entities, and one shared map on
    the rest (on all entities when the rest are too few to fit)."""
    own: Dict[str, Tuple[float, float]] = {}
    names, counts = numpy.unique(labels, return_counts=True)
    for name, n in zip(names.tolist(), counts.tolist()):
        if n >= min_entities:
            sel = labels == name
            params = fit_platt(scores[sel], correct[sel])
            if params is not None:
                own[name] = params
    rest = ~numpy.isin(labels, numpy.asarray(sorted(own), dtype=labels.dtype))
    shared = fit_platt(scores[rest], correct[rest]) or fit_platt(scores, correct)
    return shared, own


def _mapped(
    scores: numpy.ndarray,
    labels: numpy.ndarray,
    shared: Optional[Tuple[float, float]],
    own: Dict[str, Tuple[float, float]],
) -> numpy.ndarray:
    if not labels.size:
        return scores
    names = sorted(set(labels.tolist()))
    idx = numpy.searchsorted(numpy.asarray(names), labels)
    return apply_calibration(scores, idx, names, shared or IDENTITY, own)


def fit_calibration(
    scores: Sequence[float],
    correct: Sequence[bool],
    labels: Sequence[str],
    folds: Sequence[int],
    min_entities: int = MIN_LABEL_ENTITIES,
) -> Dict[str, Any]:
    """Fit a shared Platt map, and maps per label where a label has `min_entities`
    entities; keep the maps per label only if they lower the calibration error
    cross-fitted over two halves (fit on one, measure on the other, both ways).

    scores (Sequence[float]): Uncalibrated scores of predicted entities.
    correct (Sequence[bool]): Whether each is exactly right.
    labels (Sequence[str]): Each entity's label.
    folds (Sequence[int]): Each entity's half, 0 or 1 (by document).
    min_entities (int): Entities a label needs for a map of its own.
    RETURNS (Dict[str, Any]): "shared" (a, b) or None, "per_label" {label: (a, b)}
        (empty unless chosen), "ece_shared" and "ece_per_label" (cross-fitted, overall),
        and "labels": per label its "n", "own_map", "ece_shared", "ece_per_label".
    """
    s = numpy.asarray(scores, dtype="float64")
    c = numpy.asarray(correct, dtype=bool)
    lab = numpy.asarray(labels, dtype=str)
    fold = numpy.asarray(folds, dtype=int)
    held = {"shared": numpy.zeros_like(s), "per_label": numpy.zeros_like(s)}
    for f in (0, 1):
        fit, out = fold != f, fold == f
        shared_only = fit_platt(s[fit], c[fit])
        held["shared"][out] = apply_platt(s[out], shared_only or IDENTITY)
        # Half the data: half the entities per label, so half the minimum.
        shared, own = _label_maps(s[fit], c[fit], lab[fit], max(min_entities // 2, 1))
        held["per_label"][out] = _mapped(s[out], lab[out], shared, own)
    ece = {k: expected_calibration_error(v, c)["ece"] for k, v in held.items()}
    shared, own = _label_maps(s, c, lab, min_entities)
    use_own = bool(own) and ece["per_label"] is not None and ece["per_label"] < ece["shared"]
    per_label_report = {}
    for name in sorted(set(lab.tolist())):
        sel = lab == name
        per_label_report[name] = {
            "n": int(sel.sum()),
            "own_map": use_own and name in own,
            "ece_shared": expected_calibration_error(held["shared"][sel], c[sel])["ece"],
            "ece_per_label": expected_calibration_error(held["per_label"][sel], c[sel])["ece"],
        }
    return {
        "shared": shared if use_own else fit_platt(s, c),
        "per_label": own if use_own else {},
        "ece_shared": ece["shared"],
        "ece_per_label": ece["per_label"],
        "labels": per_label_report,
    }


def invert_calibration(
    scores: numpy.ndarray,
    label_idx: numpy.ndarray,
    labels: Sequence[str],
    shared: Sequence[float],
    per_label: Mapping[str, Sequence[float]],
) -> numpy.ndarray:
    """The uncalibrated scores behind calibrated ones (each map is monotone, so it can
    be undone: `logit(p) = (logit(q) - b) / a`), to draw both without annotating twice.

    RETURNS (numpy.ndarray): The scores before calibration (up to clipping at 1e-6).
    """
    inverse = {name: _inverse(p) for name, p in per_label.items()}
    return apply_calibration(
        numpy.asarray(scores, dtype="float64"), label_idx, labels, _inverse(shared), inverse
    )


def _inverse(params: Sequence[float]) -> Tuple[float, float]:
    a, b = params
    return (1.0 / a, -b / a)


# ---- thresholds


Z_95 = 1.959963984540054
# A chosen threshold is set this much below its score (at most half-way to the next
# lower one): the decoder computes scores in the model's float type, so a dev entity
# scored exactly at the threshold must not fall below it by a rounding.
ROUNDING = 1e-6


def wilson_lower(k: Any, n: Any, z: float = Z_95) -> numpy.ndarray:
    """Lower end of the Wilson score interval of a binomial proportion k / n.

    k (ArrayLike): Successes.
    n (ArrayLike): Trials (0 gives 0).
    z (float): The normal quantile (1.96: a 95% two-sided interval).
    RETURNS (numpy.ndarray): The lower bounds.
    """
    k = numpy.asarray(k, dtype="float64")
    n = numpy.asarray(n, dtype="float64")
    safe = numpy.maximum(n, 1.0)
    p = k / safe
    z2n = z * z / safe
    centre = p + z2n / 2
    spread = z * numpy.sqrt(p * (1 - p) / safe + z2n / (4 * safe))
    return numpy.where(n > 0, (centre - spread) / (1 + z2n), 0.0)


def threshold_curve(scores: Sequence[float], correct: Sequence[bool]) -> Dict[str, numpy.ndarray]:
    """Entities kept and right at each candidate threshold: every distinct score, from
    the highest down; a threshold t keeps the entities scored t or more.

    scores (Sequence[float]): Each predicted entity's score.
    correct (Sequence[bool]): Whether each is exactly right.
    RETURNS (Dict[str, numpy.ndarray]): "threshold" (descending), "kept", "right".
    """
    s = numpy.asarray(scores, dtype="float64")
    c = numpy.asarray(correct, dtype="int64")
    order = numpy.argsort(-s, kind="stable")
    s, c = s[order], c[order]
    last = numpy.flatnonzero(numpy.append(s[1:] != s[:-1], True)) if s.size else s.astype(int)
    return {"threshold": s[last], "kept": last + 1, "right": numpy.cumsum(c)[last]}


def choose_threshold(
    scores: Sequence[float],
    correct: Sequence[bool],
    n_gold: int,
    precision: Optional[float] = None,
    recall: Optional[float] = None,
) -> Dict[str, Any]:
    """The threshold for a target precision (the lowest score at which the 95% Wilson
    lower bound of the precision is at least the target) or a target recall (the
    highest score at which the lower bound of the recall is).

    scores (Sequence[float]): Each predicted entity's (calibrated) score.
    correct (Sequence[bool]): Whether each is exactly right.
    n_gold (int): Gold entities in the data.
    precision (Optional[float]): The target precision; or
    recall (Optional[float]): the target recall.
    RETURNS (Dict[str, Any]): "reached" (bool); "best": the highest lower bound any
        threshold reaches; when reached, "threshold" (that score), "cut" (the value to
        set: the score less a rounding margin, still above the next lower score),
        "precision", "recall" (point estimates), "precision_lower", "recall_lower",
        "kept", "right".
    """
    curve = threshold_curve(scores, correct)
    kept, right = curve["kept"], curve["right"]
    p_low = wilson_lower(right, kept)
    r_low = wilson_lower(right, numpy.full_like(right, n_gold))
    if precision is not None:
        bound, target, pick = p_low, precision, -1  # the lowest threshold that passes
    elif recall is not None:
        bound, target, pick = r_low, recall, 0  # the highest
    else:
        raise ValueError("choose_threshold needs a target precision or recall")
    ok = numpy.flatnonzero(bound >= target)
    result: Dict[str, Any] = {
        "reached": bool(ok.size),
        "best": float(bound.max()) if bound.size else 0.0,
    }
    if ok.size:
        i = int(ok[pick])
        lower = curve["threshold"][i + 1] if i + 1 < kept.size else 0.0
        result.update(
            threshold=float(curve["threshold"][i]),
            cut=float(curve["threshold"][i] - min(ROUNDING, (curve["threshold"][i] - lower) / 2)),
            precision=float(right[i] / kept[i]),
            recall=float(right[i] / n_gold) if n_gold else 0.0,
            precision_lower=float(p_low[i]),
            recall_lower=float(r_low[i]),
            kept=int(kept[i]),
            right=int(right[i]),
        )
    return result


def precision_recall_at(
    scores: Sequence[float], correct: Sequence[bool], n_gold: int, thresholds: Sequence[float]
) -> List[Dict[str, Any]]:
    """Precision and recall of the entities scored at or above each threshold.

    RETURNS (List[Dict[str, Any]]): Per threshold: "threshold", "precision" (None when
        none is kept), "recall", "kept".
    """
    order = numpy.argsort(numpy.asarray(scores, dtype="float64"), kind="stable")
    s = numpy.asarray(scores, dtype="float64")[order]
    c = numpy.asarray(correct, dtype="int64")[order]
    right_above = numpy.append(numpy.cumsum(c[::-1])[::-1], 0)
    rows = []
    for t in thresholds:
        i = int(numpy.searchsorted(s, t, side="left"))
        kept, right = int(s.size - i), int(right_above[i])
        rows.append(
            {
                "threshold": float(t),
                "precision": right / kept if kept else None,
                "recall": right / n_gold if n_gold else None,
                "kept": kept,
            }
        )
    return rows


def brier_score(scores: Sequence[float], correct: Sequence[bool]) -> Optional[float]:
    """RETURNS (Optional[float]): Mean squared difference of score and rightness."""
    s = numpy.asarray(scores, dtype="float64")
    if not s.size:
        return None
    return float(numpy.mean((s - numpy.asarray(correct, dtype="float64")) ** 2))
