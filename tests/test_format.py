"""How the commands print and write numbers: tables whose columns line up (numbers
right-aligned), and JSON outputs with 6 significant digits."""

import json
import math
import re
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pytest
from util import run_cli, write

from spacy_ntk_ner._format import aligned, markdown_table, rounded, rounded_floats
from spacy_ntk_ner.annotate.report import format_annotate_report
from spacy_ntk_ner.confidence.calibrate import format_calibration
from spacy_ntk_ner.corpus.stats import format_convert_report
from spacy_ntk_ner.evaluate.evaluate import format_table

LABELS = {"A": 7, "Operating_System": 1234, "Lib": 42}


def columns(lines: Sequence[str]) -> List[List[Tuple[int, int]]]:
    """Each line's cells (runs of text without two spaces in a row) as (start, end)."""
    return [[m.span() for m in re.finditer(r"\S+(?: \S+)*", line)] for line in lines]


def assert_aligned(lines: Sequence[str], right: Sequence[Optional[bool]]) -> None:
    """Every line has a cell per column; a left column's cells start, and a right
    (number) column's cells end, at the same offset in every line (None: unchecked)."""
    cells = columns(lines)
    assert all(len(row) == len(right) for row in cells), lines
    for i, is_right in enumerate(right):
        if is_right is None:
            continue
        edges = {row[i][1] if is_right else row[i][0] for row in cells}
        assert len(edges) == 1, (i, lines)


def assert_markdown_aligned(lines: Sequence[str]) -> None:
    """Every line of a Markdown table has its `|` at the same offsets."""
    bars = {tuple(m.start() for m in re.finditer(r"\|", line)) for line in lines}
    assert len(bars) == 1, lines


def test_the_checks_see_a_misaligned_table() -> None:
    with pytest.raises(AssertionError):
        assert_aligned(["label  entities", "  A  7", "  Operating_System  1,234"], [False, True])
    with pytest.raises(AssertionError):
        assert_markdown_aligned(["| a | b |", "| long | b |"])


def test_aligned_and_markdown_tables() -> None:
    rows = [("label", "n"), ("A", "7"), ("Operating_System", "1,234")]
    assert aligned(rows, (False, True), indent="  ") == [
        "  label                 n",
        "  A                     7",
        "  Operating_System  1,234",
    ]
    table = markdown_table(rows, (False, True))
    assert table[1] == "| ---------------- | ----: |"
    assert_markdown_aligned(table)


def test_the_annotate_summary_is_aligned() -> None:
    report = {
        "documents": 3,
        "words": 1500,
        "entities": LABELS,
        "mean_score": {"A": 0.5, "Operating_System": 0.98765, "Lib": None},
        "shards": 1,
        "shards_written_now": 1,
        "seconds": 2.0,
        "words_per_second": 750.0,
        "engine": "local",
        "duplicate_ids": 0,
        "skipped_lines": [],
    }
    lines = format_annotate_report(report, "out").splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["label"])
    table = lines[start : start + 1 + len(LABELS)]
    assert [line.split()[0] for line in table[1:]] == list(LABELS)
    assert table[2].split() == ["Operating_System", "1,234", "0.988"]
    assert_aligned(table, (False, True, True))


def test_the_convert_summary_is_aligned() -> None:
    split = {"docs": 5, "sentences": 12, "tokens": 1300, "shards": 1, "entities": LABELS}
    stats = {"files": 1, "splits": {"train": split, "dev": dict(split, tokens=9)}, "repairs": {}}
    lines = format_convert_report(stats, Path("out")).splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["train", "dev"])
    table = lines[start : start + 6 + len(LABELS)]
    assert table[-1].split()[0] == "Operating_System"
    # The split columns (the header's too) end at the same offsets; label rows are
    # indented under "entities".
    assert_aligned(table[1:], (None, True, True))
    assert [c[1] for c in columns(table[:1])[0]] == [c[1] for c in columns(table[1:2])[0][1:]]


def test_the_evaluate_tables_are_markdown_that_lines_up() -> None:
    per_type = {label: {"p": 1.0, "r": 0.5, "f": 0.6667} for label in LABELS}
    at = [
        {"threshold": t, "precision": 0.9, "recall": r, "kept": k}
        for t, r, k in ((0.5, 0.1, 1500), (0.9, 1.0, 3))
    ]
    metrics = {
        "ents_p": 0.5,
        "ents_r": 0.25,
        "ents_f": 0.3333,
        "ents_per_type": per_type,
        "calibration": {"ntk_ner": {"ece": 0.1, "n": 9, "threshold": 0.5, "at_thresholds": at}},
    }
    text = format_table(metrics)
    tables = [block for block in text.split("\n\n") if block.startswith("|")]
    assert len(tables) == 2
    for table in tables:
        assert_markdown_aligned(table.splitlines())
    assert "| 0.5 (configured) |" in tables[1]


def test_the_calibrate_table_is_aligned() -> None:
    labels = {
        label: {"n": n, "ece_shared": 0.1, "ece_per_label": 0.05 if n > 100 else None}
        for label, n in LABELS.items()
    }
    result = {
        "n": sum(LABELS.values()),
        "params": [1.0, 0.1],
        "fitted": True,
        "ece_before": 0.2,
        "ece_after": 0.05,
        "ece_cross_fitted": {"shared": 0.06, "per_label": 0.07},
        "per_label": {"Operating_System": [1.2, -0.3]},
        "labels": labels,
    }
    lines = format_calibration("ntk_ner", result, Path("dev.spacy")).splitlines()
    table = lines[-1 - len(LABELS) :]
    assert table[0].split()[0] == "label"
    assert_aligned(table, (False, True, False, True, True))


# ---- JSON


def test_rounded() -> None:
    assert rounded(0.123456789) == 0.123457
    assert rounded(98765.4321) == 98765.4
    assert rounded(1.5e-9 / 7) == 2.14286e-10
    assert rounded(0.0) == 0.0 and math.isnan(rounded(math.nan))
    data = {"a": [0.1234567, 3, True, None, "x"], "b": (2.0000001,), "c": {"d": 1 / 3}}
    assert rounded_floats(data) == {
        "a": [0.123457, 3, True, None, "x"],
        "b": [2.0],
        "c": {"d": 0.333333},
    }


def floats_in(data: object) -> List[float]:
    if isinstance(data, float):
        return [data]
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, list):
        return [x for value in data for x in floats_in(value)]
    return []


def test_json_outputs_keep_six_significant_digits(tiny_pipeline: Path, tmp_path: Path) -> None:
    """`evaluate --output`, annotate's records and report.json: every float has at most
    6 significant digits, and the scores keep them (rounded, not cut short)."""
    shutil.copytree(tiny_pipeline / "model", tmp_path / "model")
    shutil.copy(tiny_pipeline / "data.spacy", tmp_path / "dev.spacy")
    res = run_cli(["evaluate", "model", "dev.spacy", "--output", "m.json"], tmp_path)
    assert res.returncode == 0, res.stderr
    texts = ["Python runs on Linux", "I use Linux and Python"]
    write(tmp_path, "in.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts))
    res = run_cli(["annotate", "model", "in.jsonl", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    records = [
        json.loads(line)
        for shard in sorted((tmp_path / "out").glob("shard-*.jsonl"))
        for line in shard.read_text("utf8").splitlines()
    ]
    scores = [span["score"] for record in records for span in record["spans"]]
    assert scores and all(0 < s < 1 for s in scores)
    documents = [
        json.loads((tmp_path / "m.json").read_text()),
        json.loads((tmp_path / "out" / "report.json").read_text()),
        records,
    ]
    found = [x for data in documents for x in floats_in(data)]
    assert found and all(x == float(f"{x:.6g}") for x in found)
    # Not cut to fewer digits: a CRF's score has all six.
    assert any(len(f"{s:.6g}".lstrip("0.")) == 6 for s in scores), scores
