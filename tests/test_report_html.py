"""`evaluate --report DIR`: the confidence metrics, and a page that opens without network
whose every image is a PNG that matplotlib drew."""

import json
import os
import re
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from util import app_lib_examples, assert_cli_error, run_cli, train_pipeline

import spacy_ntk_ner
from spacy_ntk_ner.confidence.calibrate import calibrate
from spacy_ntk_ner.confidence.metrics import scored_entities

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects what a page loads and the text of its headings."""

    def __init__(self) -> None:
        super().__init__()
        self.images: List[str] = []
        self.loads: List[Tuple[str, str]] = []
        self.tags: List[str] = []
        self.text: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.loads.append((tag, value))
                if tag == "img":
                    self.images.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def png_size(path: Path) -> Tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report_html")
    nlp, examples = train_pipeline(app_lib_examples, steps=3, drop=0.2, n_train=10)
    calibrate(nlp, examples)
    # A threshold at the median score, so that it drops entities.
    docs = nlp.pipe(eg.text for eg in examples)
    scores = [s for d in docs for s in d.spans["ntk_ner"].attrs["scores"]]
    threshold = float(numpy.median(scores))
    nlp.get_pipe("ntk_ner").cfg["threshold"] = threshold
    nlp.get_pipe_config("ntk_ner")["threshold"] = threshold
    nlp.to_disk(folder / "model")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(folder / "dev.spacy")
    args = ["evaluate", "model", "dev.spacy", "--output", "m.json", "--report", "rep"]
    res = run_cli(args, folder)
    assert res.returncode == 0, res.stderr
    assert "Wrote the report: rep/index.html" in res.stdout
    return folder


def test_confidence_metrics(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "m.json").read_text())
    cal = metrics["calibration"]["ntk_ner"]
    assert set(cal["per_label"]) == {"APP", "LIB"}
    assert sum(v["n"] for v in cal["per_label"].values()) == cal["n"]
    assert cal["ece_raw"] is not None
    # The Brier score is the mean squared gap between score and outcome, recomputed.
    nlp = spacy.load(evaluated / "model")
    gold = list(DocBin().from_disk(evaluated / "dev.spacy").get_docs(nlp.vocab))
    scores, correct = scored_entities(zip(nlp.pipe(d.text for d in gold), gold), "ntk_ner")
    brier = float(numpy.mean((numpy.asarray(scores) - numpy.asarray(correct)) ** 2))
    assert cal["brier"] == pytest.approx(brier, rel=1e-5)  # JSON: 6 significant digits
    rows = {r["threshold"]: r for r in cal["at_thresholds"]}
    t = cal["threshold"]
    assert sorted(rows) == sorted({0.5, 0.7, 0.9, t})
    # At the configured threshold the scored spans kept are doc.ents: spaCy's scorer
    # gives the same precision and recall.
    assert 0 < rows[t]["kept"] < cal["n"]
    assert rows[t]["precision"] == pytest.approx(metrics["ents_p"], abs=1e-12)
    assert rows[t]["recall"] == pytest.approx(metrics["ents_r"], abs=1e-12)
    kept = [r["kept"] for r in cal["at_thresholds"]]
    assert kept == sorted(kept, reverse=True)


def test_report_page_opens_offline_with_valid_images(evaluated: Path) -> None:
    report = evaluated / "rep"
    page = Page()
    page.feed((report / "index.html").read_text("utf8"))
    assert "script" not in page.tags and "link" not in page.tags
    assert all(not v.startswith(("http:", "https:", "//")) for _, v in page.loads), page.loads
    assert sorted(page.images) == [
        "label-f.png",
        "ntk_ner-reliability.png",
        "ntk_ner-scores.png",
        "ntk_ner-thresholds.png",
    ]
    for name in page.images:
        width, height = png_size(report / name)
        assert width > 100 and height > 100
    text = " ".join(page.text)
    for heading in (
        "Per label",
        "Wrong entities with the highest scores",
        "Right entities with the lowest scores",
        "Missed entities",
    ):
        assert heading in text
    html = (report / "index.html").read_text("utf8")
    assert "<mark" in html  # displaCy's entities, with their scores in the labels
    assert " 0." in text or " 1.00" in text


def test_report_rerun_replaces_only_a_report(evaluated: Path) -> None:
    report = evaluated / "rep"
    listed = json.loads((report / "manifest.json").read_text())["files"]
    assert sorted(listed) == sorted(p.name for p in report.iterdir() if p.name != "manifest.json")
    args = ["evaluate", "model", "dev.spacy", "--report", "rep"]
    res = run_cli(args, evaluated)
    assert res.returncode == 0, res.stderr
    (report / "notes.txt").write_text("mine\n")
    before = snapshot(report)
    res = run_cli(args, evaluated)
    assert_cli_error(res, "--report rep", "notes.txt")
    assert snapshot(report) == before
    assert not [p for p in evaluated.iterdir() if p.name.startswith(".ntk-tmp-")]


def test_report_says_what_it_measured_and_lays_it_out_as_tables(evaluated: Path) -> None:
    """A header (model, data and counts, date, versions), the gold count per label, the
    thresholds and the reliability bins as HTML tables, one case per document, each
    case's two lines labelled, and the folder's mode that of any new folder."""
    report = evaluated / "rep"
    page = (report / "index.html").read_text("utf8")
    gold = list(DocBin().from_disk(evaluated / "dev.spacy").get_docs(spacy.blank("en").vocab))
    n_gold = sum(len(d.ents) for d in gold)
    assert "<title>Evaluation report: en_pipeline</title>" in page
    assert f"dev.spacy: {len(gold):,} docs" in page and f"{n_gold:,} gold entities" in page
    assert f"spacy-ntk-ner {spacy_ntk_ner.__version__}, spaCy {spacy.__version__}" in page
    per_label = page.split("<h2>Per label</h2>", 1)[1].split("</table>", 1)[0]
    for label in ("APP", "LIB"):
        count = sum(e.label_ == label for d in gold for e in d.ents)
        assert f"<tr><td>{label}</td><td>{count:,}</td>" in per_label
    assert "<pre>" not in page
    assert "<th>threshold</th><th>P</th><th>R</th><th>entities kept</th>" in page
    cal = json.loads((evaluated / "m.json").read_text())["calibration"]["ntk_ner"]
    bins = page.split("<th>score bin</th>", 1)[1].split("</table>", 1)[0]
    assert sum(int(n) for n in re.findall(r"</td><td>([\d,]+)</td><td>", bins)) == cal["n"]
    worst = page.split("<h2>Worst cases</h2>", 1)[1]
    for section in worst.split("<h3>")[1:]:
        docs = re.findall(r"\(doc (\d+)\)</b>", section)
        assert len(docs) == len(set(docs)), section[:80]
        assert section.count('<p class="line">gold</p>') == len(docs)
    assert "match entities by" in page  # why spaCy's P/R and the threshold rows differ
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o777 & ~umask
