"""Evaluate a trained pipeline (accuracy per label and calibration of the entity
scores) and draw its entities with their scores as a displaCy page."""

import json
import time
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .confidence import expected_calibration_error, scored_entities
from .docbin import load_examples
from .ner import NTKEntityRecognizer


def evaluate(
    model: Path,
    data: Path,
    output: Optional[Path] = None,
    table: Optional[Path] = None,
    gpu_id: int = -1,
) -> Dict[str, Any]:
    """Score a pipeline on a DocBin file or folder: spaCy's entity P/R/F overall and
    per label, words per second, and for each `ntk_ner` component the calibration of
    its entity scores.

    model (Path): The pipeline folder or package name.
    data (Path): A `.spacy` file or a folder of them.
    output (Optional[Path]): Where to write the JSON.
    table (Optional[Path]): Where to write a Markdown table per label.
    gpu_id (int): GPU to use, -1 for the CPU.
    RETURNS (Dict[str, Any]): The metrics.
    """
    import spacy
    from spacy.scorer import Scorer

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    if not any("doc.ents" in nlp.get_pipe_meta(name).assigns for name in nlp.pipe_names):
        raise ValueError(f"{model}: the pipeline has no ntk_ner or ner component to evaluate")
    examples = load_examples(nlp, data)
    # Annotate once and keep the docs: their scored spans give the calibration.
    start = time.perf_counter()
    docs = list(nlp.pipe(eg.predicted for eg in examples))
    elapsed = time.perf_counter() - start
    for eg, doc in zip(examples, docs):
        eg.predicted = doc
    scores_all = Scorer(nlp).score(examples)
    metrics: Dict[str, Any] = {k: v for k, v in scores_all.items() if k.startswith("ents")}
    metrics["speed"] = sum(len(doc) for doc in docs) / max(elapsed, 1e-9)
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, NTKEntityRecognizer):
            pairs = ((eg.predicted, eg.reference) for eg in examples)
            scores, correct = scored_entities(pairs, pipe.cfg["spans_key"])
            metrics.setdefault("calibration", {})[name] = expected_calibration_error(
                scores, correct
            )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(metrics, indent=2) + "\n", "utf8")
    if table is not None:
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(format_table(metrics) + "\n", "utf8")
    return metrics


def format_table(metrics: Dict[str, Any]) -> str:
    """Lay out entity scores per label as a Markdown table.

    metrics (Dict[str, Any]): What `evaluate` returns.
    RETURNS (str): The table, then the calibration line of each component.
    """

    def pct(x: Optional[float]) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    rows = ["| label | P | R | F |", "| --- | ---: | ---: | ---: |"]
    per_type = metrics.get("ents_per_type") or {}
    for label in sorted(per_type):
        t = per_type[label]
        rows.append(f"| {label} | {pct(t['p'])} | {pct(t['r'])} | {pct(t['f'])} |")
    rows.append(
        f"| **all** | {pct(metrics.get('ents_p'))} | {pct(metrics.get('ents_r'))} "
        f"| {pct(metrics.get('ents_f'))} |"
    )
    for name, cal in (metrics.get("calibration") or {}).items():
        ece = "-" if cal["ece"] is None else f"{cal['ece']:.3f}"
        rows.append(f"\n{name}: expected calibration error {ece} over {cal['n']} entities")
    return "\n".join(rows)


def visualize(model: Path, data: Path, output: Path, limit: int = 50) -> int:
    """Write a displaCy page of a pipeline's entities, each labelled with its score.

    model (Path): The pipeline folder or package name.
    data (Path): A `.spacy` file or folder: the held-out docs to draw.
    output (Path): The HTML file to write.
    limit (int): At most this many docs.
    RETURNS (int): The number of docs drawn.
    """
    import spacy
    from spacy import displacy

    nlp = spacy.load(model)
    keys = [p.cfg["spans_key"] for _, p in nlp.pipeline if isinstance(p, NTKEntityRecognizer)]
    texts = [eg.reference.text for eg in load_examples(nlp, data, limit)]
    palette = [
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
    ]
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
            colors[label] = palette[zlib.crc32(ent.label_.encode()) % len(palette)]
            ents.append({"start": ent.start_char, "end": ent.end_char, "label": label})
        pages.append({"text": doc.text, "ents": ents, "title": None})
    html = displacy.render(pages, style="ent", manual=True, page=True, options={"colors": colors})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, "utf8")
    return len(pages)
