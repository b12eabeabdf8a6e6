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
import spacy
from spacy.language import Language
from spacy.util import registry

from .atomic import replace_dir
from .confidence import (
    IDENTITY,
    apply_platt,
    expected_calibration_error,
    fit_platt,
    scored_entities,
)
from .docbin import load_examples
from .ner import NTKEntityRecognizer


def _uncalibrated_predictions(
    nlp: Language, examples: Sequence[Any]
) -> Tuple[List[Tuple[str, Any]], List[Any], Dict[str, List[float]]]:
    """Annotate the examples' texts with every ntk_ner component's calibration off.

    RETURNS (Tuple[list, list, dict]): The (name, component) pairs, the annotated docs,
        and each component's calibration as it was (the components are left without).
    """
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


def calibrate_saved(
    model: str, data: Path, output: Optional[Path] = None
) -> Tuple[Dict[str, Dict[str, Any]], Path]:
    """Fit the calibration of a saved pipeline's `ntk_ner` components on dev data and
    save the pipeline: in place, or into `output`. It is written beside the target and
    swapped in, so a failure part-way leaves the old pipeline as it was.

    model (str): A pipeline folder (or, with `output`, a package name).
    data (Path): Dev data: a `.spacy` file or a folder of them.
    output (Optional[Path]): Where to save; None: `model` itself.
    RETURNS (Tuple[Dict[str, Dict[str, Any]], Path]): What `calibrate` reports, and
        where the pipeline was saved.
    """
    target = _calibrate_target(model, output)
    nlp = spacy.load(model)
    report = calibrate(nlp, load_examples(nlp, data))
    if not report:
        raise ValueError(f"{model}: the pipeline has no ntk_ner component")
    replace_dir(target, nlp.to_disk)
    return report, target


def _calibrate_target(model: str, output: Optional[Path]) -> Path:
    """Where `calibrate` saves: MODEL's own folder, or `--output`, which must be new,
    empty or a pipeline (it is replaced as a whole)."""
    if output is None:
        if not Path(model).is_dir():
            raise ValueError(
                f"--output: {model} is not a pipeline folder to save into; "
                "name one with --output DIR"
            )
        return Path(model)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output: {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / "config.cfg").is_file():
        raise ValueError(
            f"--output: {output} holds files and is not a spaCy pipeline; "
            "name a new or empty folder"
        )
    return output
