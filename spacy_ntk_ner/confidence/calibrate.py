"""Calibrate `ntk_ner`'s entity scores on held-in dev data (Platt scaling).

A CRF's span marginals rank entities well, but a model fitted closely to its training
data is overconfident on new text. Platt scaling maps each score p to
`sigmoid(a * logit(p) + b)`, with a and b fitted by logistic regression of
"the entity is exactly right" on `logit(p)` over the dev set's predicted entities.
The map is monotone, so it changes no decision at a threshold of 0 and keeps the
ranking of entities. The pair is stored in the component's cfg and saved with it.

Use it at every save during training (the callbacks in `callbacks`), or on a trained
pipeline with `python -m spacy_ntk_ner calibrate MODEL DEV_DATA`.
"""

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from .._format import aligned, decimal3, rounded_floats
from .._fs import replace_dir
from .._outputs import check_target as check_output_target
from ..corpus.docbin import load_examples
from ..errors import UserError
from ..loading import load_pipeline
from ..ner.component import NTKEntityRecognizer
from ..ner.settings import SETTINGS
from .metrics import (
    choose_threshold,
    describe_target,
    expected_calibration_error,
    format_target_value,
    labelled_entities,
    scored_entities,
)
from .platt import (
    IDENTITY,
    MIN_ENTITIES,
    MIN_LABEL_ENTITIES,
    Calibration,
    apply_platt,
    fit_calibration,
    fit_platt,
)


def _uncalibrated_predictions(
    nlp: Language, examples: Sequence[Example]
) -> Tuple[List[Tuple[str, Any]], List[Any], Dict[str, Calibration]]:
    """Annotate the examples' texts with every ntk_ner component's calibration off.

    RETURNS (Tuple[list, list, dict]): The (name, component) pairs, the annotated docs,
        and each component's calibration as it was (the components are left without).
    """
    pipes = [(n, p) for n, p in nlp.pipeline if isinstance(p, NTKEntityRecognizer)]
    saved = {name: Calibration.from_cfg(pipe.cfg) for name, pipe in pipes}
    for _, pipe in pipes:
        Calibration().to_cfg(pipe.cfg)
    try:
        docs = list(nlp.pipe(eg.predicted.copy() for eg in examples))
    except Exception:
        for name, pipe in pipes:
            saved[name].to_cfg(pipe.cfg)
        raise
    return pipes, docs, saved


def _dev_entities(
    docs: Sequence[Doc], examples: Sequence[Example], spans_key: str
) -> Tuple[List[float], List[bool], List[str], List[int]]:
    """Each predicted entity's score, rightness, label and half (docs dealt in turn)."""
    scores: List[float] = []
    correct: List[bool] = []
    labels: List[str] = []
    folds: List[int] = []
    for i, (doc, eg) in enumerate(zip(docs, examples)):
        s, c, lab = labelled_entities([(doc, eg.reference)], spans_key)
        scores += s
        correct += c
        labels += lab
        folds += [i % 2] * len(s)
    return scores, correct, labels, folds


def check_target(option: str, value: Optional[float]) -> None:
    """Refuse a target precision or recall outside (0, 1), naming the option."""
    if value is not None and not 0.0 < value < 1.0:
        raise UserError(f"{option}: must be between 0 and 1 (both excluded), not {value}")


def calibrate(
    nlp: Language,
    examples: Sequence[Example],
    target_precision: Optional[float] = None,
    target_recall: Optional[float] = None,
) -> Dict[str, Dict[str, Any]]:
    """Fit the score calibration of every `ntk_ner` component of a pipeline: a shared
    Platt map, and maps per label (for labels with enough dev entities) where they
    lower the cross-fitted calibration error; with a target, also set the threshold.

    nlp (Language): The pipeline; its components' cfg (and, with a target, the
        pipeline's config and meta) are updated in place.
    examples (Sequence[Example]): Held-in dev examples with gold entities.
    target_precision (Optional[float]): Set `threshold` to the lowest score at which
        the precision on `examples` is at least this by a 95% Wilson lower bound.
    target_recall (Optional[float]): Or to the highest at which the recall is.
    RETURNS (Dict[str, Dict[str, Any]]): Per component: the parameters, the expected
        calibration error before and after (overall; cross-fitted per label), and
        with a target the threshold chosen and the precision and recall there.
    """
    check_target("--target-precision", target_precision)
    check_target("--target-recall", target_recall)
    pipes, docs, saved = _uncalibrated_predictions(nlp, examples)
    n_gold = sum(len(eg.reference.ents) for eg in examples)
    report: Dict[str, Dict[str, Any]] = {}
    for name, pipe in pipes:
        scores, correct, labels, folds = _dev_entities(docs, examples, pipe.cfg["spans_key"])
        fit = fit_calibration(scores, correct, labels, folds)
        fitted = fit["shared"] is not None
        (Calibration(fit["shared"], fit["per_label"]) if fitted else saved[name]).to_cfg(pipe.cfg)
        after = Calibration.from_cfg(pipe.cfg).apply_named(scores, labels, pipe.labels).tolist()
        report[name] = {
            "params": pipe.cfg["calibration"],
            "per_label": pipe.cfg["calibration_per_label"],
            "fitted": fitted,
            "n": len(scores),
            "ece_before": expected_calibration_error(scores, correct)["ece"],
            "ece_after": expected_calibration_error(after, correct)["ece"],
            "ece_cross_fitted": {"shared": fit["ece_shared"], "per_label": fit["ece_per_label"]},
            "labels": fit["labels"],
        }
        # Scores stay calibrated when an earlier fit is kept; only identity is recorded.
        unfit = not fitted and saved[name].is_identity
        reason = why_uncalibrated(len(examples), correct) if unfit else None
        _record(nlp, name, {"uncalibrated": reason} if reason else {}, drop=("uncalibrated",))
        if reason:
            report[name]["uncalibrated"] = reason
        if target_precision is not None or target_recall is not None:
            chosen = _choose(after, correct, n_gold, target_precision, target_recall)
            _set_threshold(nlp, name, chosen)
            report[name]["target"] = chosen
        else:
            dropped = _drop_threshold(nlp, name)
            if dropped:
                report[name]["dropped"] = dropped
    return report


def why_uncalibrated(n_docs: int, correct: Sequence[bool]) -> str:
    """Why no calibration could be fitted on the dev data.

    n_docs (int): The dev docs.
    correct (Sequence[bool]): Whether each predicted dev entity is right.
    RETURNS (str): The reason, such as "too few dev entities: 12 predicted, 20 needed".
    """
    if not n_docs:
        return "no dev data"
    if len(correct) < MIN_ENTITIES:
        return f"too few dev entities: {len(correct)} predicted, {MIN_ENTITIES} needed"
    which = "right" if all(correct) else "wrong"
    return f"all {len(correct)} dev entities predicted are {which}: nothing to fit a map on"


def _choose(
    scores: Sequence[float],
    correct: Sequence[bool],
    n_gold: int,
    precision: Optional[float],
    recall: Optional[float],
) -> Dict[str, Any]:
    """The threshold for the target, or a one-line error naming the option and the
    best that the dev data reaches."""
    chosen = choose_threshold(scores, correct, n_gold, precision=precision, recall=recall)
    option, what, target = (
        ("--target-precision", "precision", precision)
        if precision is not None
        else ("--target-recall", "recall", recall)
    )
    if not chosen["reached"]:
        raise UserError(
            f"{option}: {target} is not reachable on the dev data at any threshold: the best "
            f"{what} reachable is {chosen['best']:.3f} (95% Wilson lower bound, "
            f"{len(scores)} predicted and {n_gold} gold entities)"
        )
    return {"target": {what: target}, **chosen}


def _set_threshold(nlp: Language, name: str, chosen: Dict[str, Any]) -> None:
    """Set the component's threshold live and in the config that is saved (settings
    come from the config at load), and record the target and the dev figures in meta."""
    threshold = chosen["cut"]
    pipe = nlp.get_pipe(name)
    assert isinstance(pipe, NTKEntityRecognizer)
    pipe.cfg["threshold"] = threshold
    nlp.get_pipe_config(name)["threshold"] = threshold
    figures = rounded_floats({k: chosen[k] for k in DEV_FIGURES})
    _record(nlp, name, {"target": chosen["target"], "threshold": threshold, "dev": figures})


def _drop_threshold(nlp: Language, name: str) -> Optional[Dict[str, Any]]:
    """Drop the threshold an earlier `calibrate` chose for a target: it was chosen on
    the scores of the calibration just replaced, so its promise no longer holds.

    RETURNS (Optional[Dict[str, Any]]): The target and threshold dropped, whether the
        threshold was reset ("reset") and what it is now ("now"); None if no target
        was recorded.
    """
    entry = (nlp.meta.get("ntk_ner") or {}).get(name) or {}
    if "target" not in entry:
        return None
    pipe = nlp.get_pipe(name)
    assert isinstance(pipe, NTKEntityRecognizer)
    # A threshold set by hand since the target was chosen is the user's: it stays.
    reset = math.isclose(pipe.cfg["threshold"], entry["threshold"], rel_tol=1e-9, abs_tol=1e-12)
    if reset:
        pipe.cfg["threshold"] = SETTINGS["threshold"]
        nlp.get_pipe_config(name)["threshold"] = SETTINGS["threshold"]
    dropped = {"target": entry["target"], "threshold": entry["threshold"], "reset": reset}
    _record(nlp, name, {}, drop=("target", "threshold", "dev"))
    return {**dropped, "now": pipe.cfg["threshold"]}


def _record(nlp: Language, name: str, values: Dict[str, Any], drop: Sequence[str] = ()) -> None:
    """Update what the pipeline's meta records about a component's calibration
    (`meta["ntk_ner"][name]`): remove the keys `drop`, then set `values`."""
    records = nlp.meta.setdefault("ntk_ner", {})
    entry = {k: v for k, v in (records.get(name) or {}).items() if k not in drop}
    entry.update(values)
    if entry:
        records[name] = entry
    else:
        records.pop(name, None)
    if not records:
        nlp.meta.pop("ntk_ner")


DEV_FIGURES = ("precision", "recall", "precision_lower", "recall_lower", "kept", "right")


def cross_fitted_ece(
    nlp: Language, examples: Sequence[Example], folds: int = 2
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
        saved[name].to_cfg(pipe.cfg)
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
    model: str,
    data: Path,
    output: Optional[Path] = None,
    target_precision: Optional[float] = None,
    target_recall: Optional[float] = None,
) -> Tuple[Dict[str, Dict[str, Any]], Path]:
    """Fit the calibration of a saved pipeline's `ntk_ner` components on dev data and
    save the pipeline: in place, or into `output`. It is written beside the target and
    swapped in, so a failure part-way leaves the old pipeline as it was.

    model (str): A pipeline folder (or, with `output`, a package name).
    data (Path): Dev data: a `.spacy` file or a folder of them.
    output (Optional[Path]): Where to save; None: `model` itself.
    target_precision (Optional[float]): Also set the threshold for this precision.
    target_recall (Optional[float]): Or for this recall (see `calibrate`).
    RETURNS (Tuple[Dict[str, Dict[str, Any]], Path]): What `calibrate` reports, and
        where the pipeline was saved.
    """
    check_target("--target-precision", target_precision)
    check_target("--target-recall", target_recall)
    target = _calibrate_target(model, output)
    # The pipeline folder is this command's to write; the dev data, in it or holding it,
    # is not (the folder is replaced as a whole).
    check_output_target(
        target,
        [data],
        "--output" if output is not None else "MODEL",
        writes_pipeline=True,
        kind="folder",
    )
    nlp = load_pipeline(model)
    report = calibrate(nlp, load_examples(nlp, data), target_precision, target_recall)
    if not report:
        raise UserError(f"{model}: the pipeline has no ntk_ner component")
    for name, entry in nlp.meta.get("ntk_ner", {}).items():
        if "target" in report.get(name, {}):
            entry["dev"]["data"] = str(data)
    replace_dir(target, nlp.to_disk)
    return report, target


def _calibrate_target(model: str, output: Optional[Path]) -> Path:
    """Where `calibrate` saves: MODEL's own folder, or `--output`, which must be new,
    empty or a pipeline (it is replaced as a whole)."""
    if output is None:
        if not Path(model).is_dir():
            raise UserError(
                f"--output: {model} is not a pipeline folder to save into; "
                "name one with --output DIR"
            )
        return Path(model)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output: {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / "config.cfg").is_file():
        raise UserError(
            f"--output: {output} holds files and is not a spaCy pipeline; "
            "name a new or empty folder"
        )
    return output


def format_calibration(name: str, r: Dict[str, Any], data: Path) -> str:
    """Lay out what `calibrate` did to one component, for the terminal.

    name (str): The component's name.
    r (Dict[str, Any]): Its entry of `calibrate`'s report.
    data (Path): The dev data.
    RETURNS (str): The lines.
    """
    lines = _fit_lines(name, r, data)
    if "uncalibrated" in r:
        lines.append(f"  scores left uncalibrated: {r['uncalibrated']}")
    if "target" in r:
        lines.append(format_target(r["target"]))
    if "dropped" in r:
        lines.append(format_dropped(r["dropped"]))
    return "\n".join(lines)


def _fit_lines(name: str, r: Dict[str, Any], data: Path) -> List[str]:
    """RETURNS (List[str]): The maps fitted or kept, and their calibration errors."""
    if not r["n"]:
        return [f"{name}: predicted no entity on {data}; calibration kept"]
    a, b = r["params"]
    fitted = "fitted" if r["fitted"] else "kept (too little data to fit)"
    lines = [
        f"{name}: a={a:.3f} b={b:.3f} {fitted}; expected calibration error on "
        f"{r['n']} entities {decimal3(r['ece_before'])} -> {decimal3(r['ece_after'])}"
    ]
    cross = r["ece_cross_fitted"]
    used = "used" if r["per_label"] else "not used"
    lines.append(
        f"  maps per label (labels with {MIN_LABEL_ENTITIES}+ entities): {used}; "
        f"cross-fitted error {decimal3(cross['shared'])} with one map, "
        f"{decimal3(cross['per_label'])} with maps per label"
    )
    rows = [("label", "entities", "map", "cross-fitted ECE: shared", "per label")]
    for label, row in r["labels"].items():
        own = r["per_label"].get(label)
        which = f"own: a={own[0]:.3f} b={own[1]:.3f}" if own else "shared"
        shared, per_label = decimal3(row["ece_shared"]), decimal3(row["ece_per_label"])
        rows.append((label, f"{row['n']:,}", which, shared, per_label))
    if len(rows) > 1:
        lines.extend(aligned(rows, (False, True, False, True, True), indent="  "))
    return lines


def format_target(t: Dict[str, Any]) -> str:
    """RETURNS (str): The threshold chosen for a target, and the dev figures there."""
    return (
        f"  threshold {t['cut']:.4f} for {describe_target(t['target'])}: on the dev "
        f"data precision {t['precision']:.3f} (lower bound {t['precision_lower']:.3f}), "
        f"recall {t['recall']:.3f} (lower bound {t['recall_lower']:.3f}); "
        f"{t['right']} of {t['kept']} entities kept are right"
    )


def format_dropped(d: Dict[str, Any]) -> str:
    """RETURNS (str): The line saying that a refit dropped a target's threshold."""
    ((what, value),) = d["target"].items()
    now = (
        f"now {d['now']:.4g}" if d["reset"] else f"the threshold set by hand, {d['now']:.4g}, stays"
    )
    return (
        f"  threshold {d['threshold']:.4f} for {describe_target(d['target'])} dropped: it was "
        f"chosen on the scores of the old calibration; {now} "
        f"(--target-{what} {format_target_value(value)} chooses it again)"
    )
