"""Calibrate `ntk_ner`'s entity scores on held-in dev data (Platt scaling).

A CRF's span marginals rank entities well, but a model fitted closely to its training
data is overconfident on new text. Platt scaling maps each score p to
`sigmoid(a * logit(p) + b)`, with a and b fitted by logistic regression of
"the entity is exactly right" on `logit(p)` over the dev set's predicted entities.
The map is monotone, so it changes no decision at a threshold of 0 and keeps the
ranking of entities. The pair is stored in the component's cfg and saved with it.

Use it at every save during training (`[training] before_to_disk =
{"@callbacks": "spacy_ntk_ner.calibrate.v1", "path": ${paths.dev}}`), or on a trained
pipeline with `python -m spacy_ntk_ner calibrate MODEL DEV_DATA`.
"""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.util import registry

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


def _uncalibrated_predictions(
    nlp: Language, examples: Sequence[Any]
) -> Tuple[List[Tuple[str, Any]], List[Any], Dict[str, List[float]]]:
    """Annotate the examples' texts with every ntk_ner component's calibration off.

    RETURNS (Tuple[list, list, dict]): The (name, component) pairs, the annotated docs,
        and each component's calibration as it was (the components are left without).
    """
    from .ner import NTKEntityRecognizer

    pipes = [(n, p) for n, p in nlp.pipeline if isinstance(p, NTKEntityRecognizer)]
    saved = {name: pipe.cfg.get("calibration", list(IDENTITY)) for name, pipe in pipes}
    for _, pipe in pipes:
        pipe.cfg["calibration"] = list(IDENTITY)
    try:
        docs = list(nlp.pipe(eg.predicted.copy() for eg in examples))
    except Exception:
        for name, pipe in pipes:
            pipe.cfg["calibration"] = saved[name]
        raise
    return pipes, docs, saved


def calibrate(nlp: Language, examples: Sequence[Any]) -> Dict[str, Dict[str, Any]]:
    """Fit the score calibration of every `ntk_ner` component of a pipeline.

    nlp (Language): The pipeline; its components' cfg is updated in place.
    examples (Sequence[Example]): Held-in dev examples with gold entities.
    RETURNS (Dict[str, Dict[str, Any]]): Per component: the parameters, and the
        expected calibration error on `examples` before and after.
    """
    from .report import expected_calibration_error, scored_entities

    pipes, docs, saved = _uncalibrated_predictions(nlp, examples)
    report: Dict[str, Dict[str, Any]] = {}
    for name, pipe in pipes:
        pairs = [(d, eg.reference) for d, eg in zip(docs, examples)]
        scores, correct = scored_entities(pairs, pipe.cfg["spans_key"])
        params = fit_platt(scores, correct)
        pipe.cfg["calibration"] = list(params) if params is not None else saved[name]
        after = apply_platt(numpy.asarray(scores), pipe.cfg["calibration"]).tolist()
        report[name] = {
            "params": pipe.cfg["calibration"],
            "fitted": params is not None,
            "n": len(scores),
            "ece_before": expected_calibration_error(scores, correct)["ece"],
            "ece_after": expected_calibration_error(after, correct)["ece"],
        }
    return report


@registry.callbacks("spacy_ntk_ner.calibrate.v1")
def make_calibrate_callback(
    path: Optional[Union[str, Path]], limit: int = 0
) -> Callable[[Language], Language]:
    """A `[training] before_to_disk` callback: calibrate on the dev data before each save.

    path (Optional[Union[str, Path]]): The dev data (`.spacy` file or folder); None
        turns the callback off.
    limit (int): Use at most this many dev docs (0: all).
    RETURNS (Callable[[Language], Language]): The callback.
    """

    def before_to_disk(nlp: Language) -> Language:
        if path is None:
            return nlp
        from spacy.training import Corpus

        calibrate(nlp, list(Corpus(path, limit=limit)(nlp)))
        return nlp

    return before_to_disk


def cross_fitted_ece(
    nlp: Language, examples: Sequence[Any], folds: int = 2
) -> Dict[str, Dict[str, Any]]:
    """Estimate the calibration error on unseen data: fit on all folds but one, measure
    on the one left out, and pool the left-out entities. The pipeline is not changed.

    nlp (Language): The pipeline.
    examples (Sequence[Example]): Dev examples with gold entities.
    folds (int): Number of folds (docs are dealt to folds in turn).
    RETURNS (Dict[str, Dict[str, Any]]): Per component: "ece" of the pooled left-out
        calibrated scores, "ece_uncalibrated" of the same entities, and "n".
    """
    from .report import expected_calibration_error, scored_entities

    pipes, docs, saved = _uncalibrated_predictions(nlp, examples)
    for name, pipe in pipes:
        pipe.cfg["calibration"] = saved[name]
    result: Dict[str, Dict[str, Any]] = {}
    for name, pipe in pipes:
        per_fold = []
        for f in range(folds):
            pairs = [
                (d, eg.reference) for i, (d, eg) in enumerate(zip(docs, examples)) if i % folds == f
            ]
            per_fold.append(scored_entities(pairs, pipe.cfg["spans_key"]))
        held_scores, held_correct, raw = [], [], []
        for f, (scores, correct) in enumerate(per_fold):
            fit_s = [s for g, (sc, _) in enumerate(per_fold) if g != f for s in sc]
            fit_c = [c for g, (_, co) in enumerate(per_fold) if g != f for c in co]
            params = fit_platt(fit_s, fit_c) or IDENTITY
            held_scores.extend(apply_platt(numpy.asarray(scores), params).tolist())
            held_correct.extend(correct)
            raw.extend(scores)
        result[name] = {
            "ece": expected_calibration_error(held_scores, held_correct)["ece"],
            "ece_uncalibrated": expected_calibration_error(raw, held_correct)["ece"],
            "n": len(held_scores),
        }
    return result
