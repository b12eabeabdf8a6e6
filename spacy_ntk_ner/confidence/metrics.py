"""Measures of entity confidence: calibration error, Brier score, Wilson bounds and
the threshold for a target precision or recall.

Plain numpy on lists of scores; nothing here imports the rest of the package.
"""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy

# Scores or flags as lists or numpy arrays.
Floats = Union[Sequence[float], numpy.ndarray]
Flags = Union[Sequence[bool], numpy.ndarray]

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


def describe_target(target: Dict[str, float]) -> str:
    """RETURNS (str): A target as `calibrate` sets it: "precision >= 0.8 (95% lower
    bound)"."""
    ((what, value),) = target.items()
    return f"{what} >= {format_target_value(value)} (95% lower bound)"


def format_target_value(value: float) -> str:
    """RETURNS (str): A target as the user wrote it: 12 significant digits drop the
    float noise of arithmetic or a JSON round trip (0.6000000000000001 is 0.6)."""
    return f"{value:.12g}"
