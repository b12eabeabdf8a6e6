"""An evaluation report as a folder with `index.html`: the per-label table, plots of the
entity scores (PNG, drawn with matplotlib) and displaCy renderings of the worst cases.

The page needs no network: the plots sit beside it and displaCy's markup carries its
own styles. matplotlib is optional (`pip install "spacy-ntk-ner[report]"`) and
imported only by the functions that draw.
"""

import html
import importlib.util
import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import spacy
import thinc
from spacy import displacy

from .. import __version__
from .._format import decimal3, percent
from .._fs import Staged, replace_dir, staged
from .._outputs import (
    Manifest,
    Say,
    check_rerun,
    check_target,
    foreign_files,
    read_manifest,
    refuse_foreign,
    write_manifest,
)
from ..confidence.metrics import precision_recall_at
from ..errors import UserError
from .evaluate import (
    Evaluation,
    ScoredEntity,
    calibration_per_label,
    check_metric_targets,
    format_confidence,
    label_color,
    model_inputs,
    run_evaluation,
    write_metrics,
)

# Where versions before 0.3 listed the files of a report folder.
LEGACY_MANIFEST = ".ntk-report.json"
# Worst cases drawn per kind.
N_CASES = 10
# Characters of context drawn on either side of a case.
CONTEXT = 160


def evaluate_with_report(
    model: Any,
    data: Path,
    report: Path,
    output: Optional[Path] = None,
    table: Optional[Path] = None,
    gpu_id: int = -1,
    overwrite: bool = False,
    say: Optional[Say] = None,
) -> Dict[str, Any]:
    """Evaluate a pipeline (see `report.evaluate`) and write the report folder too.

    model (Any): The pipeline folder or package name.
    data (Path): A `.spacy` file or a folder of them.
    report (Path): The folder to write; it is replaced as a whole, and must be new,
        empty or an earlier report.
    output (Optional[Path]): Where to write the JSON.
    table (Optional[Path]): Where to write the Markdown table.
    gpu_id (int): GPU to use, -1 for the CPU.
    overwrite (bool): Replace a report of other inputs.
    say (Optional[Callable[[str], None]]): Where a notice goes (an upgraded record).
    RETURNS (Dict[str, Any]): The metrics.
    """
    # Every target is checked before the evaluation: a refusal costs nothing, and
    # leaves no --output behind.
    check_metric_targets(model, data, output, table)
    new = report_manifest(model, data)
    check_report_dir(report, new, overwrite, say)
    for option, target in (("--output", output), ("--table", table)):
        if target is not None and (report.resolve() in target.resolve().parents):
            raise UserError(
                f"{option} {target}: lies inside the --report folder {report}, which is "
                "replaced as a whole; name a file outside it"
            )
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError('--report: the plots need matplotlib; pip install "spacy-ntk-ner[report]"')
    evaluation = run_evaluation(model, data, gpu_id)
    # The report and the metrics files are put in place together.
    with staged() as stage:
        write_metrics(stage, evaluation.metrics, output, table)
        write_report(report, evaluation, new, overwrite, stage)
    return evaluation.metrics


def report_manifest(model: Any, data: Path) -> Manifest:
    """RETURNS (Manifest): The manifest of a report of `model` on `data`, without files.
    A report is replaced when the same pipeline and data are evaluated again, whatever
    changed in them: its inputs are compared by path."""
    inputs = [{"path": str(Path(p).resolve())} for p in model_inputs(model, data)]
    if not Path(str(model)).exists():
        inputs.append({"path": f"package:{model}"})
    return Manifest("evaluate", inputs, {})


def _legacy_report(folder: Path) -> Optional[Manifest]:
    try:
        data = json.loads((folder / LEGACY_MANIFEST).read_text("utf8"))
        files = [str(f) for f in data["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Manifest("evaluate", None, None, [*files, LEGACY_MANIFEST])


def check_report_dir(
    report: Path, new: Manifest, overwrite: bool = False, say: Optional[Say] = None
) -> None:
    """Refuse a folder that holds files an earlier report did not write, a report of
    other inputs (without `overwrite`), and one that is or holds an input or lies in a
    pipeline."""
    if report.exists() and not report.is_dir():
        raise UserError(f"--report {report}: is a file, not a folder")
    check_target(report, [Path(r["path"]) for r in new.inputs or []], "--report", kind="folder")
    if not report.is_dir():
        return
    old = read_manifest(report, "evaluate", _legacy_report, say or (lambda line: None))
    foreign = foreign_files(report, old.files if old is not None else [])
    refuse_foreign(report, foreign, "evaluate", "--report")
    check_rerun(report, old, new, overwrite, contents=False)


def write_report(
    report: Path,
    evaluation: Evaluation,
    new: Manifest,
    overwrite: bool = False,
    stage: Optional[Staged] = None,
) -> None:
    """Write the report into a temporary folder beside `report` and swap it in.

    report (Path): The folder.
    evaluation (Evaluation): What `run_evaluation` found.
    new (Manifest): The report's manifest (`report_manifest`), without files.
    overwrite (bool): Replace a report of other inputs.
    stage (Optional[Staged]): Swap it in with these outputs (None: now, on its own).
    """
    check_report_dir(report, new, overwrite)

    def write(tmp: Path) -> None:
        new.files = _write_files(tmp, evaluation)
        write_manifest(tmp, new)

    if stage is None:
        replace_dir(report, write)
    else:
        stage.folder(report, write)


def _write_files(folder: Path, evaluation: Evaluation) -> List[str]:
    """Draw the plots and write the page; RETURNS the names of the files written."""
    metrics = evaluation.metrics
    files: List[str] = []
    sections: List[str] = [_header(evaluation), _per_label_table(evaluation)]
    if metrics.get("ents_per_type"):
        files.append(plot_label_f(metrics["ents_per_type"], folder / "label-f.png"))
        sections.append(_figure(files[-1], "F per label"))
    for name, ents in evaluation.entities.items():
        cal = metrics["calibration"][name]
        drawn = _plot_component(folder, name, ents, cal, evaluation)
        files += drawn
        sections.append(_component_section(name, cal, drawn))
        sections.append(_worst_cases(evaluation, ents))
    page = _page(sections, evaluation.about.get("pipeline", ""))
    (folder / "index.html").write_text(page, "utf8")
    return files + ["index.html"]


def _plot_component(
    folder: Path, name: str, ents: Sequence[ScoredEntity], cal: Dict[str, Any], ev: Evaluation
) -> List[str]:
    scores = [e.score for e in ents]
    correct = [e.correct for e in ents]
    n_gold = sum(len(eg.reference.ents) for eg in ev.examples)
    return [
        plot_reliability(cal["bins"], cal["bins_raw"], folder / f"{name}-reliability.png"),
        plot_thresholds(
            scores, correct, n_gold, cal["threshold"], folder / f"{name}-thresholds.png"
        ),
        plot_histograms(scores, correct, folder / f"{name}-scores.png"),
    ]


# ---- plots (matplotlib is imported here only)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    _pyplot().close(fig)
    return path.name


def plot_reliability(bins: List[Dict[str, Any]], bins_raw: List[Dict[str, Any]], path: Path) -> str:
    """Reliability diagram: the share of right entities against the mean score, per bin
    of score, for the calibrated and the uncalibrated scores.

    RETURNS (str): The file's name.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for rows, label, marker in ((bins_raw, "uncalibrated", "s"), (bins, "calibrated", "o")):
        if rows:
            x = [r["score"] for r in rows]
            y = [r["accuracy"] for r in rows]
            ax.plot(x, y, marker=marker, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in bin", ylabel="share right")
    ax.set_title("Reliability of entity scores")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_thresholds(
    scores: Sequence[float], correct: Sequence[bool], n_gold: int, threshold: float, path: Path
) -> str:
    """Precision, recall and F of the entities kept at each threshold, with the
    configured threshold marked.

    RETURNS (str): The file's name.
    """
    grid = numpy.linspace(0.0, 1.0, 101)
    rows = precision_recall_at(scores, correct, n_gold, grid.tolist())
    p = numpy.array([numpy.nan if r["precision"] is None else r["precision"] for r in rows])
    r = numpy.array([numpy.nan if r["recall"] is None else r["recall"] for r in rows])
    with numpy.errstate(invalid="ignore", divide="ignore"):
        f = 2 * p * r / (p + r)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for values, label in ((p, "precision"), (r, "recall"), (f, "F")):
        ax.plot(grid, values, label=label)
    ax.axvline(
        threshold, color="black", linestyle=":", linewidth=2, label=f"threshold {threshold:.3f}"
    )
    # A margin on both sides, so that a threshold of 0 or 1 is not hidden by the axis.
    ax.set(xlim=(-0.03, 1.03), ylim=(0, 1.02), xlabel="threshold (entities scored at or above)")
    ax.set_title("Precision, recall and F against the threshold")
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_label_f(per_type: Dict[str, Dict[str, float]], path: Path) -> str:
    """Horizontal bars of F per label.

    RETURNS (str): The file's name.
    """
    labels = sorted(per_type, key=lambda k: per_type[k]["f"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(labels) + 1.2))
    ax.barh(labels, [100 * per_type[k]["f"] for k in labels], color="#4c72b0")
    ax.set(xlim=(0, 100), xlabel="F")
    ax.set_title("F per label")
    return _save(fig, path)


def plot_histograms(scores: Sequence[float], correct: Sequence[bool], path: Path) -> str:
    """Histograms of the scores of right and of wrong entities.

    RETURNS (str): The file's name.
    """
    s = numpy.asarray(scores, dtype="float64")
    c = numpy.asarray(correct, dtype=bool)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    edges = numpy.linspace(0.0, 1.0, 21)
    ax.hist([s[c], s[~c]], bins=edges, label=["right", "wrong"], color=["#55a868", "#c44e52"])
    ax.set(xlim=(0, 1), xlabel="score", ylabel="entities")
    ax.set_title("Scores of right and wrong entities")
    ax.legend()
    return _save(fig, path)


# ---- the page


def _page(sections: Sequence[str], pipeline: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{padding:.2em .7em;border-bottom:1px solid #ddd}"
        "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}"
        ".case{margin:1em 0;padding:.5em;border-left:3px solid #ccc}"
        ".line{color:#555;font-size:.85em;margin:.4em 0 0}.note{color:#555;font-size:.9em}"
        ".about td{text-align:left}"
    )
    title = html.escape(f"Evaluation report: {pipeline}" if pipeline else "Evaluation report")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def _header(ev: Evaluation) -> str:
    """Which model, which data, when, and with which versions."""
    about = ev.about
    n_gold = sum(len(eg.reference.ents) for eg in ev.examples)
    n_words = sum(len(eg.reference) for eg in ev.examples)
    model = f"{about.get('pipeline', '')} {about.get('version', '')} ({about.get('model', '')})"
    data = (
        f"{about.get('data', '')}: {len(ev.examples):,} docs, {n_words:,} tokens, "
        f"{n_gold:,} gold entities"
    )
    versions = f"spacy-ntk-ner {__version__}, spaCy {spacy.__version__}, thinc {thinc.__version__}"
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [("model", model), ("data", data), ("written", written), ("versions", versions)]
    cells = "\n".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="about">\n{cells}\n</table>'


def _figure(name: str, alt: str) -> str:
    return f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>'


def _per_label_table(ev: Evaluation) -> str:
    """spaCy's P/R/F per label with the gold count, and each label's calibration."""
    metrics = ev.metrics
    support = Counter(e.label_ for eg in ev.examples for e in eg.reference.ents)
    ece_of = calibration_per_label(metrics)
    head = ["label", "gold", "P", "R", "F", "ECE", "scored"]
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    per_type = metrics.get("ents_per_type") or {}
    for label in sorted(set(per_type) | set(support)):
        t, e = per_type.get(label, {}), ece_of.get(label, {})
        cells = [f"{support.get(label, 0):,}"]
        cells += [percent(t.get(k)) for k in ("p", "r", "f")]
        cells += [decimal3(e.get("ece")), str(e.get("n", "-"))]
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td>" + "</td><td>".join(cells) + "</td></tr>"
        )
    total = [f"{sum(support.values()):,}"]
    total += [percent(metrics.get(k)) for k in ("ents_p", "ents_r", "ents_f")]
    rows.append("<tr><th>all</th><td>" + "</td><td>".join(total) + "</td><td>-</td><td>-</td></tr>")
    note = (
        '<p class="note">P, R and F are spaCy\'s entity scores, which match entities by '
        "their tokens; the tables of thresholds below match them by their characters, so "
        "the two differ where the data's tokens and the pipeline's do not line up.</p>"
    )
    return "<h2>Per label</h2>\n<table>\n" + "\n".join(rows) + "\n</table>\n" + note


def _component_section(name: str, cal: Dict[str, Any], files: List[str]) -> str:
    summary = html.escape(format_confidence(name, cal).split("\n", 1)[0])
    captions = (
        "Reliability diagram: the share of entities that are right against their mean "
        "score, per tenth of the score range, before and after calibration; on the "
        "diagonal a score is the chance of being right.",
        "Precision, recall and F of the entities scored at or above each threshold; the "
        "dotted line is the configured threshold.",
        "Scores of the entities that are right and of those that are wrong.",
    )
    figures = [f"{_figure(f, c)}\n<p>{html.escape(c)}</p>" for f, c in zip(files, captions)]
    figures.insert(1, _bins_table(cal.get("bins") or []))
    parts = [f"<h2>{html.escape(name)}: confidence</h2>", f"<p>{summary}</p>"]
    parts.append(_thresholds_table(cal))
    target = cal.get("target")
    if target:
        text = format_confidence(name, {**cal, "at_thresholds": []}).split("\n", 1)[1]
        parts.append(f"<p>{html.escape(text.strip())}</p>")
    return "\n".join(parts + figures)


def _thresholds_table(cal: Dict[str, Any]) -> str:
    rows = ["<tr><th>threshold</th><th>P</th><th>R</th><th>entities kept</th></tr>"]
    for r in cal.get("at_thresholds") or []:
        mark = " (configured)" if r["threshold"] == cal.get("threshold") else ""
        cells = [percent(r["precision"]), percent(r["recall"]), f"{r['kept']:,}"]
        rows.append(
            f"<tr><td>{r['threshold']:.4g}{mark}</td><td>" + "</td><td>".join(cells) + "</td></tr>"
        )
    return "<table>\n" + "\n".join(rows) + "\n</table>" if len(rows) > 1 else ""


def _bins_table(bins: Sequence[Dict[str, Any]]) -> str:
    """The reliability diagram's points with how many entities each holds."""
    rows = ["<tr><th>score bin</th><th>entities</th><th>mean score</th><th>share right</th></tr>"]
    for b in bins:
        span = f"{b['from']:.1f}–{b['from'] + 0.1:.1f}"
        cells = [f"{b['n']:,}", decimal3(b["score"]), decimal3(b["accuracy"])]
        rows.append(f"<tr><td>{span}</td><td>" + "</td><td>".join(cells) + "</td></tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>" if bins else ""


# ---- worst cases, drawn by displaCy


def _worst_cases(ev: Evaluation, ents: Sequence[ScoredEntity]) -> str:
    wrong = sorted((e for e in ents if not e.correct), key=lambda e: -e.score)
    unsure = sorted((e for e in ents if e.correct), key=lambda e: e.score)
    parts = ["<h2>Worst cases</h2>"]
    for title, cases in (
        ("Wrong entities with the highest scores", wrong),
        ("Right entities with the lowest scores", unsure),
    ):
        parts.append(f"<h3>{title}</h3>")
        cases = _one_per_doc(cases, lambda e: e.example)
        parts += [
            _case(ev, ents, e.example, (e.start_char, e.end_char), f"{e.label} {e.score:.3f}")
            for e in cases
        ]
    parts.append("<h3>Missed entities</h3>")
    missed = _one_per_doc(_missed(ev), lambda m: m[0])
    parts += [_case(ev, ents, i, (s, e), f"missed {label}") for i, s, e, label in missed]
    return "\n".join(parts)


def _one_per_doc(cases: Sequence[Any], doc_of: Callable[[Any], int]) -> List[Any]:
    """The first `N_CASES` cases from different docs, so that no text is drawn twice."""
    seen: set = set()
    kept = []
    for case in cases:
        if doc_of(case) not in seen:
            seen.add(doc_of(case))
            kept.append(case)
        if len(kept) == N_CASES:
            break
    return kept


def _missed(ev: Evaluation) -> List[Tuple[int, int, int, str]]:
    found = []
    for i, eg in enumerate(ev.examples):
        predicted = {(e.start_char, e.end_char, e.label_) for e in eg.predicted.ents}
        for e in eg.reference.ents:
            if (e.start_char, e.end_char, e.label_) not in predicted:
                found.append((i, e.start_char, e.end_char, e.label_))
    return found


def _case(
    ev: Evaluation, ents: Sequence[ScoredEntity], i: int, where: Tuple[int, int], title: str
) -> str:
    """The text around one case, twice: the predicted entities with their scores, and
    the gold entities."""
    eg = ev.examples[i]
    text = eg.reference.text
    lo, hi = max(0, where[0] - CONTEXT), min(len(text), where[1] + CONTEXT)
    predicted = [
        (e.start_char, e.end_char, e.label, f"{e.label} {e.score:.2f}")
        for e in ents
        if e.example == i
    ]
    gold = [(e.start_char, e.end_char, e.label_, f"gold {e.label_}") for e in eg.reference.ents]
    pages, colors = [], {}
    for spans in (predicted, gold):
        inside = [s for s in spans if s[0] >= lo and s[1] <= hi]
        pages.append(
            {
                "text": text[lo:hi],
                "ents": [
                    {"start": s - lo, "end": e - lo, "label": shown} for s, e, _, shown in inside
                ],
                "title": None,
            }
        )
        colors.update({shown: label_color(label) for _, _, label, shown in inside})
    options = {"colors": colors}
    drawn = [displacy.render(page, style="ent", manual=True, options=options) for page in pages]
    head = f"{title}: “{text[where[0] : where[1]]}” (doc {i})"
    return (
        f'<div class="case"><b>{html.escape(head)}</b>\n'
        f'<p class="line">predicted, with scores</p>\n{drawn[0]}\n'
        f'<p class="line">gold</p>\n{drawn[1]}</div>'
    )
