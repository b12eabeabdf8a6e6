import json
import re
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from util import assert_cli_error, run_cli

from spacy_ntk_ner.confidence.metrics import expected_calibration_error, scored_entities
from spacy_ntk_ner.evaluate.evaluate import format_table


def test_ece_of_perfect_and_overconfident_scores() -> None:
    assert expected_calibration_error([1.0, 1.0, 0.0], [True, True, False])["ece"] == 0.0
    # Scores of 0.9, right half of the time: off by 0.4.
    result = expected_calibration_error([0.9] * 4, [True, False, True, False])
    assert result["ece"] == pytest.approx(0.4)
    assert result["bins"] == [{"from": 0.9, "n": 4, "score": 0.9, "accuracy": 0.5}]
    assert expected_calibration_error([], [])["ece"] is None


def test_table_lists_labels_and_calibration() -> None:
    table = format_table(
        {
            "ents_p": 0.5,
            "ents_r": 0.25,
            "ents_f": 1 / 3,
            "ents_per_type": {"X": {"p": 0.5, "r": 0.25, "f": 1 / 3}},
            "calibration": {"ntk_ner": {"ece": 0.0123, "n": 7, "bins": []}},
        }
    )
    # Cells are padded so that the columns line up (tests/test_format.py).
    assert "| X | 50.0 | 25.0 | 33.3 | - |" in re.sub(" +", " ", table)
    assert "ntk_ner: expected calibration error 0.012 over 7 entities" in table


@pytest.fixture
def pipeline(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "copy"
    shutil.copytree(tiny_pipeline, folder)
    return folder


def test_cli_evaluate_and_visualize(pipeline: Path) -> None:
    res = run_cli(
        ["evaluate", "model", "data.spacy", "--output", "m.json", "--table", "m.md"], pipeline
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((pipeline / "m.json").read_text())
    assert metrics["ents_f"] == 1.0
    assert metrics["calibration"]["ntk_ner"]["n"] == 3
    # The ECE is that of the pipeline's own scores on the data, recomputed here.
    nlp = spacy.load(pipeline / "model")
    gold = list(DocBin().from_disk(pipeline / "data.spacy").get_docs(nlp.vocab))
    pairs = zip(nlp.pipe(d.text for d in gold), gold)
    scores, correct = scored_entities(pairs, "ntk_ner")
    ece = expected_calibration_error(scores, correct)["ece"]
    # The JSON keeps 6 significant digits.
    assert metrics["calibration"]["ntk_ner"]["ece"] == pytest.approx(ece, rel=1e-5)
    table = (pipeline / "m.md").read_text()
    ece_o = metrics["calibration"]["ntk_ner"]["per_label"]["O"]["ece"]
    assert f"| O | 100.0 | 100.0 | 100.0 | {ece_o:.3f} |" in re.sub(" +", " ", table)
    res = run_cli(["visualize", "model", "data.spacy", "page.html"], pipeline)
    assert res.returncode == 0, res.stderr
    html = (pipeline / "page.html").read_text()
    assert "Linux" in html and "<mark" in html
    res = run_cli(["evaluate", "model", "missing"], pipeline)
    assert_cli_error(res, "missing", "no such file")


def test_cli_calibrate(pipeline: Path) -> None:
    res = run_cli(["calibrate", "model", "data.spacy", "--output", "calibrated"], pipeline)
    assert res.returncode == 0, res.stderr
    # Three entities are too few to fit: the identity is kept, and said so.
    assert "a=1.000 b=0.000 kept (too little data to fit)" in res.stdout
    assert (pipeline / "calibrated" / "ntk_ner" / "cfg").exists()
    res = run_cli(["calibrate", "model", "nothing.spacy"], pipeline)
    assert_cli_error(res, "nothing.spacy", "no such file")


def test_evaluate_without_an_entity_recognizer(pipeline: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(pipeline / "no_ner")
    res = run_cli(["evaluate", "no_ner", "data.spacy"], pipeline)
    assert_cli_error(res, "no_ner", "no ntk_ner or ner component")
