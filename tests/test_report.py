import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from util import run_cli

from spacy_ntk_ner.confidence.metrics import expected_calibration_error
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
    assert "| X | 50.0 | 25.0 | 33.3 | - |" in table
    assert "ntk_ner: expected calibration error 0.012 over 7 entities" in table


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    nlp = spacy.blank("en")
    nlp.add_pipe("ntk_ner")
    texts = [("Python runs on Linux", ["B-L", "O", "O", "B-O"]), ("I use Linux", ["O", "O", "B-O"])]
    docs = [Doc(nlp.vocab, words=t.split(), ents=e) for t, e in texts]
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(40):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(folder / "model")
    DocBin(docs=docs).to_disk(folder / "data.spacy")
    return folder


def test_cli_evaluate_and_visualize(pipeline: Path) -> None:
    res = run_cli(
        ["evaluate", "model", "data.spacy", "--output", "m.json", "--table", "m.md"], pipeline
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((pipeline / "m.json").read_text())
    assert metrics["ents_f"] == 1.0
    assert metrics["calibration"]["ntk_ner"]["n"] == 3
    assert 0.0 <= metrics["calibration"]["ntk_ner"]["ece"] <= 1.0
    table = (pipeline / "m.md").read_text()
    ece_o = metrics["calibration"]["ntk_ner"]["per_label"]["O"]["ece"]
    assert f"| O | 100.0 | 100.0 | 100.0 | {ece_o:.3f} |" in table
    res = run_cli(["visualize", "model", "data.spacy", "page.html"], pipeline)
    assert res.returncode == 0, res.stderr
    html = (pipeline / "page.html").read_text()
    assert "Linux" in html and "<mark" in html
    res = run_cli(["evaluate", "model", "missing"], pipeline)
    assert res.returncode == 1
    assert res.stderr.strip() == "missing: no such file or directory"


def test_cli_calibrate(pipeline: Path) -> None:
    res = run_cli(["calibrate", "model", "data.spacy", "--output", "calibrated"], pipeline)
    assert res.returncode == 0, res.stderr
    # Three entities are too few to fit: the identity is kept, and said so.
    assert "a=1.000 b=0.000 kept (too little data to fit)" in res.stdout
    assert (pipeline / "calibrated" / "ntk_ner" / "cfg").exists()
    res = run_cli(["calibrate", "model", "nothing.spacy"], pipeline)
    assert res.returncode == 1
    assert res.stderr.strip() == "nothing.spacy: no such file or directory"


def test_evaluate_without_an_entity_recognizer(pipeline: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(pipeline / "no_ner")
    res = run_cli(["evaluate", "no_ner", "data.spacy"], pipeline)
    assert res.returncode == 1
    assert res.stderr.strip() == "no_ner: the pipeline has no ntk_ner or ner component to evaluate"
