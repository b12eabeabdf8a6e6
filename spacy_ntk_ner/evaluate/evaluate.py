"""Evaluate a trained pipeline (accuracy per label and calibration of the entity
scores) and draw its entities with their scores as a displaCy page."""

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.training import Example

from .._format import decimal3, markdown_table, percent, rounded_floats
from .._fs import Staged, staged
from .._outputs import check_file_target, write_text
from ..confidence.metrics import (
    brier_score,
    describe_target,
    expected_calibration_error,
    labelled_entities,
    precision_recall_at,
)
from ..confidence.platt import Calibration
from ..corpus.docbin import load_examples
from ..errors import UserError
from ..loading import load_pipeline
from ..ner.component import NTKEntityRecognizer

# Thresholds at which `evaluate` gives precision and recall, besides the configured one.
THRESHOLDS = (0.5, 0.7, 0.9)

PALETTE = (
    "#7aecec",
    "#bfeeb7",
    "#feca74",
    "#ff9561",
    "#aa9cfc",
    "#c887fb",
    "#9cc9cc",
    "#ffeb80",
    "#ff8197",
    "#f0d0ff",
    "#bfe1d9",
    "#e4e7d2",
)


def label_color(label: str) -> str:
    """RETURNS (str): A displaCy colour for an entity label, the same on every run."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


@dataclass
class ScoredEntity:
    """A predicted entity of an evaluated doc: where it is, its score, and whether the
    reference has it exactly."""

    example: int
    start_char: int
    end_char: int
    label: str
    score: float
    correct: bool


@dataclass
class Evaluation:
    """What `run_evaluation` found: the metrics, the annotated examples, and per
    `ntk_ner` component its scored entities and its uncalibrated scores."""

    metrics: Dict[str, Any]
    examples: List[Example]
    entities: Dict[str, List[ScoredEntity]] = field(default_factory=dict)
    raw_scores: Dict[str, List[float]] = field(default_factory=dict)
    # The pipeline's name and version, and the data's path, for a report's header.
    about: Dict[str, str] = field(default_factory=dict)


def run_evaluation(model: Any, data: Path, gpu_id: int = -1) -> Evaluation:
    """Annotate the data with a pipeline and score it: spaCy's entity P/R/F overall and
    per label, words per second, and for each `ntk_ner` component the calibration of
    its entity scores (see `confidence_metrics`).

    model (Any): The pipeline folder or package name.
    data (Path): A `.spacy` file or a folder of them.
    gpu_id (int): GPU to use, -1 for the CPU.
    RETURNS (Evaluation): The metrics, and what a report draws.
    """
    import spacy
    from spacy.scorer import Scorer

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = load_pipeline(model)
    if not any("doc.ents" in nlp.get_pipe_meta(name).assigns for name in nlp.pipe_names):
        raise UserError(f"{model}: the pipeline has no ntk_ner or ner component to evaluate")
    examples = load_examples(nlp, data)
    # Annotate once and keep the docs: their scored spans give the calibration.
    # `nlp.evaluate` would time and score the same way, but it annotates copies of the
    # examples (spaCy 3.8's `_copy_examples`), so the docs would have to be made twice.
    start = time.perf_counter()
    docs = list(nlp.pipe(eg.predicted for eg in examples))
    elapsed = time.perf_counter() - start
    for eg, doc in zip(examples, docs):
        eg.predicted = doc
    scores_all = Scorer(nlp).score(examples)
    metrics: Dict[str, Any] = {k: v for k, v in scores_all.items() if k.startswith("ents")}
    metrics["speed"] = sum(len(doc) for doc in docs) / max(elapsed, 1e-9)
    meta = nlp.meta
    about = {
        "pipeline": f"{meta.get('lang', '')}_{meta.get('name', '')}",
        "version": str(meta.get("version", "")),
        "model": str(model),
        "data": str(data),
    }
    evaluation = Evaluation(metrics, examples, about=about)
    n_gold = sum(len(eg.reference.ents) for eg in examples)
    targets = nlp.meta.get("ntk_ner") or {}
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, NTKEntityRecognizer):
            ents = component_entities(examples, pipe.cfg["spans_key"])
            raw = uncalibrated(ents, pipe)
            cal = confidence_metrics(ents, raw, n_gold, pipe.cfg["threshold"])
            cal.update(calibration_record(pipe, targets.get(name) or {}))
            metrics.setdefault("calibration", {})[name] = cal
            evaluation.entities[name] = ents
            evaluation.raw_scores[name] = raw
    return evaluation


def evaluate(
    model: Any,
    data: Path,
    output: Optional[Path] = None,
    table: Optional[Path] = None,
    gpu_id: int = -1,
) -> Dict[str, Any]:
    """Score a pipeline on a DocBin file or folder (see `run_evaluation`) and write the
    metrics as JSON and a Markdown table.

    model (Any): The pipeline folder or package name.
    data (Path): A `.spacy` file or a folder of them.
    output (Optional[Path]): Where to write the JSON.
    table (Optional[Path]): Where to write a Markdown table per label.
    gpu_id (int): GPU to use, -1 for the CPU.
    RETURNS (Dict[str, Any]): The metrics.
    """
    check_metric_targets(model, data, output, table)
    metrics = run_evaluation(model, data, gpu_id).metrics
    with staged() as stage:
        write_metrics(stage, metrics, output, table)
    return metrics


def model_inputs(model: Any, data: Path) -> List[Path]:
    """RETURNS (List[Path]): What a command reading `model` and `data` reads from disk."""
    return [data, *([Path(model)] if Path(str(model)).exists() else [])]


def check_metric_targets(
    model: Any, data: Path, output: Optional[Path], table: Optional[Path]
) -> None:
    """Refuse, before anything is evaluated, an `--output` or `--table` that is an input,
    lies in one or in a pipeline, or names the same file twice."""
    inputs = model_inputs(model, data)
    for option, target in (("--output", output), ("--table", table)):
        if target is not None:
            check_file_target(target, inputs, option)
    if output is not None and table is not None and output.resolve() == table.resolve():
        raise UserError(f"--table {table}: is the --output file too; name two files")


def write_metrics(
    stage: Staged, metrics: Dict[str, Any], output: Optional[Path], table: Optional[Path]
) -> None:
    """Write the metrics as JSON to `output` and as Markdown to `table` (each if given),
    put in place with the rest of `stage`: an interrupted run changes neither."""
    if output is not None:
        with stage.file(output) as fh:
            fh.write(json.dumps(rounded_floats(metrics), indent=2) + "\n")
    if table is not None:
        with stage.file(table) as fh:
            fh.write(format_table(metrics) + "\n")


def component_entities(examples: Sequence[Example], spans_key: str) -> List[ScoredEntity]:
    """Every scored entity a component predicted on the examples.

    examples (Sequence[Example]): Annotated examples.
    spans_key (str): Where the component put its scored spans.
    RETURNS (List[ScoredEntity]): The entities, in order.
    """
    found: List[ScoredEntity] = []
    for i, eg in enumerate(examples):
        scores, correct, labels = labelled_entities([(eg.predicted, eg.reference)], spans_key)
        spans = eg.predicted.spans.get(spans_key) or []
        for span, score, right, label in zip(spans, scores, correct, labels):
            found.append(ScoredEntity(i, span.start_char, span.end_char, label, score, right))
    return found


def calibration_record(pipe: NTKEntityRecognizer, record: Dict[str, Any]) -> Dict[str, Any]:
    """What a component's scores are, from its calibration and what `calibrate`
    recorded in the pipeline's meta.

    pipe (NTKEntityRecognizer): The component.
    record (Dict[str, Any]): Its entry of `meta["ntk_ner"]`.
    RETURNS (Dict[str, Any]): "uncalibrated" (why) when its calibration is the
        identity, and "target" when its threshold is the one chosen for the target.
    """
    result: Dict[str, Any] = {}
    if Calibration.from_cfg(pipe.cfg).is_identity:
        result["uncalibrated"] = record.get("uncalibrated", "no calibration was fitted")
    # A threshold other than the one chosen (set by hand since, or kept by an older
    # refit) does not hold the target's promise: the record is not shown.
    if "target" in record and abs(record["threshold"] - pipe.cfg["threshold"]) <= 1e-9:
        result["target"] = record
    return result


def uncalibrated(ents: Sequence[ScoredEntity], pipe: NTKEntityRecognizer) -> List[float]:
    """The entities' scores before the component's calibration (the maps are undone)."""
    scores = [e.score for e in ents]
    names = [e.label for e in ents]
    calibration = Calibration.from_cfg(pipe.cfg)
    return calibration.apply_named(scores, names, pipe.labels, invert=True).tolist()


def confidence_metrics(
    ents: Sequence[ScoredEntity], raw: Sequence[float], n_gold: int, threshold: float
) -> Dict[str, Any]:
    """How well a component's entity scores serve as confidence.

    ents (Sequence[ScoredEntity]): Its scored entities.
    raw (Sequence[float]): Their scores before calibration.
    n_gold (int): Gold entities in the data.
    threshold (float): The component's configured threshold.
    RETURNS (Dict[str, Any]): "ece", "n", "bins" (calibrated scores), "ece_raw",
        "bins_raw", "brier", "per_label" ({label: n, ece, brier}), "threshold", and
        "at_thresholds" (precision and recall at 0.5, 0.7, 0.9 and the configured one).
    """
    scores = [e.score for e in ents]
    correct = [e.correct for e in ents]
    result = expected_calibration_error(scores, correct)
    before = expected_calibration_error(raw, correct)
    result.update(ece_raw=before["ece"], bins_raw=before["bins"])
    result["brier"] = brier_score(scores, correct)
    per_label: Dict[str, Any] = {}
    for label in sorted({e.label for e in ents}):
        s = [e.score for e in ents if e.label == label]
        c = [e.correct for e in ents if e.label == label]
        ece = expected_calibration_error(s, c)["ece"]
        per_label[label] = {"n": len(s), "ece": ece, "brier": brier_score(s, c)}
    result["per_label"] = per_label
    result["threshold"] = threshold
    points = sorted(set(THRESHOLDS) | {float(threshold)})
    result["at_thresholds"] = precision_recall_at(scores, correct, n_gold, points)
    return result


def calibration_per_label(metrics: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Each label's calibration figures ("n", "ece", "brier"), from the first `ntk_ner`
    component that predicts it.

    metrics (Dict[str, Any]): What `evaluate` returns.
    RETURNS (Dict[str, Dict[str, Any]]): The figures by label.
    """
    merged: Dict[str, Dict[str, Any]] = {}
    for cal in reversed(list((metrics.get("calibration") or {}).values())):
        merged.update(cal.get("per_label") or {})
    return merged


def format_table(metrics: Dict[str, Any]) -> str:
    """Lay out entity scores per label as a Markdown table, then for each `ntk_ner`
    component the calibration of its scores and precision and recall at thresholds.

    metrics (Dict[str, Any]): What `evaluate` returns.
    RETURNS (str): The Markdown.
    """
    calibration = metrics.get("calibration") or {}
    ece_of = {k: v["ece"] for k, v in calibration_per_label(metrics).items()}
    cells = [("label", "P", "R", "F", "ECE")]
    per_type = metrics.get("ents_per_type") or {}
    for label in sorted(per_type):
        t = per_type[label]
        ece = decimal3(ece_of.get(label))
        cells.append((label, percent(t["p"]), percent(t["r"]), percent(t["f"]), ece))
    p, r, f = (percent(metrics.get(k)) for k in ("ents_p", "ents_r", "ents_f"))
    cells.append(("**all**", p, r, f, "-"))
    rows = markdown_table(cells, (False, True, True, True, True))
    for name, cal in calibration.items():
        rows.append("\n" + format_confidence(name, cal))
    return "\n".join(rows)


def format_confidence(name: str, cal: Dict[str, Any]) -> str:
    """RETURNS (str): A component's calibration line and its table of thresholds."""
    line = f"{name}: expected calibration error {decimal3(cal['ece'])} over {cal['n']} entities"
    if "ece_raw" in cal:
        raw, brier = decimal3(cal["ece_raw"]), decimal3(cal.get("brier"))
        line += f" ({raw} uncalibrated), Brier score {brier}"
    rows = [line]
    if "uncalibrated" in cal:
        rows.append(f"{name}: the scores are uncalibrated: {cal['uncalibrated']}")
    if cal.get("at_thresholds"):
        cells = [("threshold", "P", "R", "entities kept")]
        for r in cal["at_thresholds"]:
            mark = " (configured)" if r["threshold"] == cal.get("threshold") else ""
            cells.append(
                (
                    f"{r['threshold']:.4g}{mark}",
                    percent(r["precision"]),
                    percent(r["recall"]),
                    f"{r['kept']:,}",
                )
            )
        rows += ["", *markdown_table(cells, (True, True, True, True))]
    target = cal.get("target")
    if target:
        dev = target["dev"]
        rows.append(
            f"\nthreshold {target['threshold']:.4f} chosen by `calibrate` for "
            f"{describe_target(target['target'])} on {dev.get('data', 'the dev data')}: there "
            f"precision {percent(dev['precision'])}, recall {percent(dev['recall'])}"
        )
    return "\n".join(rows)


def visualize(model: Path, data: Path, output: Path, limit: int = 50) -> int:
    """Write a displaCy page of a pipeline's entities, each labelled with its score.

    model (Path): The pipeline folder or package name.
    data (Path): A `.spacy` file or folder: the held-out docs to draw.
    output (Path): The HTML file to write.
    limit (int): At most this many docs.
    RETURNS (int): The number of docs drawn.
    """
    from spacy import displacy

    check_file_target(output, model_inputs(model, data))
    nlp = load_pipeline(model)
    keys = [p.cfg["spans_key"] for _, p in nlp.pipeline if isinstance(p, NTKEntityRecognizer)]
    texts = [eg.reference.text for eg in load_examples(nlp, data, limit)]
    colors: Dict[str, str] = {}
    pages = []
    for doc in nlp.pipe(texts):
        score_of: Dict[Tuple[int, int, str], float] = {}
        for key in keys:
            group = doc.spans.get(key)
            if group is not None:
                for span, score in zip(group, group.attrs.get("scores", [])):
                    score_of[(span.start_char, span.end_char, span.label_)] = score
        ents = []
        for ent in doc.ents:
            score = score_of.get((ent.start_char, ent.end_char, ent.label_))
            label = ent.label_ if score is None else f"{ent.label_} {score:.2f}"
            colors[label] = label_color(ent.label_)
            ents.append({"start": ent.start_char, "end": ent.end_char, "label": label})
        pages.append({"text": doc.text, "ents": ents, "title": None})
    html = displacy.render(pages, style="ent", manual=True, page=True, options={"colors": colors})
    write_text(output, html)
    return len(pages)
