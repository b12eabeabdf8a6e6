"""Platt scaling of entity scores, with a shared map and maps per label.

Platt scaling maps each score p to `sigmoid(a * logit(p) + b)`, with a and b fitted by
logistic regression of "the entity is exactly right" on `logit(p)`. The map is
monotone, so it keeps the ranking of entities. Plain numpy: the component applies the
maps (`Calibration`), `calibrate.py` fits them.
"""

from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy

from .metrics import Flags, Floats, expected_calibration_error

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


class Calibration(NamedTuple):
    """A component's calibration: a shared Platt map, and maps of their own for some
    labels. The component's cfg holds it as `calibration` and `calibration_per_label`.
    """

    shared: Tuple[float, float] = IDENTITY
    per_label: Mapping[str, Sequence[float]] = {}

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "Calibration":
        """RETURNS (Calibration): The calibration a component's cfg holds."""
        a, b = cfg.get("calibration", IDENTITY)
        return cls((a, b), dict(cfg.get("calibration_per_label") or {}))

    @property
    def is_identity(self) -> bool:
        """RETURNS (bool): Whether the calibration leaves every score as it is."""
        return tuple(float(x) for x in self.shared) == IDENTITY and not self.per_label

    def to_cfg(self, cfg: Dict[str, Any]) -> None:
        """Store the calibration in a component's cfg, as plain floats."""
        cfg["calibration"] = [float(x) for x in self.shared]
        cfg["calibration_per_label"] = {k: [float(x) for x in v] for k, v in self.per_label.items()}

    def apply(
        self, scores: numpy.ndarray, label_idx: numpy.ndarray, labels: Sequence[str]
    ) -> numpy.ndarray:
        """Calibrate entity scores, each entity given by its index into `labels`."""
        return apply_calibration(scores, label_idx, labels, self.shared, self.per_label)

    def apply_named(
        self, scores: Floats, names: Sequence[str], labels: Sequence[str], invert: bool = False
    ) -> numpy.ndarray:
        """Calibrate entity scores (or, with `invert`, undo the calibration), each entity
        given by its label's name; a name not in `labels` takes the shared map.

        scores (Floats): The entities' scores.
        names (Sequence[str]): Each entity's label.
        labels (Sequence[str]): The component's labels.
        invert (bool): Undo the maps instead of applying them.
        RETURNS (numpy.ndarray): The scores, as float64.
        """
        index = {label: i for i, label in enumerate(labels)}
        label_idx = numpy.asarray([index.get(x, -1) for x in names], dtype="int64")
        raw = numpy.asarray(scores, dtype="float64")
        if invert:
            return invert_calibration(raw, label_idx, labels, self.shared, self.per_label)
        return self.apply(raw, label_idx, labels)
