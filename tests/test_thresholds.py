"""Thresholds for a target precision or recall, and calibration maps per label: the math
against brute force, the pipeline's threshold in its saved config, and old and new
saved calibrations loading."""

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import pytest
import spacy
import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Example
from util import app_lib_examples, assert_cli_error, assert_user_error, run_cli, train_pipeline

from spacy_ntk_ner.confidence.calibrate import calibrate, format_dropped
from spacy_ntk_ner.confidence.metrics import (
    brier_score,
    choose_threshold,
    describe_target,
    precision_recall_at,
    wilson_lower,
)
from spacy_ntk_ner.confidence.platt import (
    apply_calibration,
    apply_platt,
    fit_calibration,
    invert_calibration,
    logit,
)
from spacy_ntk_ner.errors import UserError

Z = 1.959963984540054


def wilson_reference(k: int, n: int) -> float:
    if n == 0:
        return 0.0
    p = k / n
    centre = p + Z * Z / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre - spread) / (1 + Z * Z / n)


def test_wilson_lower_bound_known_values() -> None:
    # 8 of 10: the 95% Wilson interval is (0.4902, 0.9433); 10 of 10: n / (n + z^2).
    assert float(wilson_lower(8, 10)) == pytest.approx(0.4902, abs=1e-4)
    assert float(wilson_lower(10, 10)) == pytest.approx(10 / (10 + Z * Z), rel=1e-12)
    assert float(wilson_lower(0, 10)) == pytest.approx(0.0, abs=1e-12)
    assert float(wilson_lower(0, 0)) == 0.0


def brute_force(
    scores: List[float],
    correct: List[bool],
    n_gold: int,
    precision: Optional[float] = None,
    recall: Optional[float] = None,
) -> Tuple[Optional[float], float]:
    """Every distinct score as a threshold, one by one: the chosen one and the best bound."""
    passing = []
    best = 0.0
    for t in sorted(set(scores)):
        kept = [c for s, c in zip(scores, correct) if s >= t]
        right = sum(kept)
        bound = (
            wilson_reference(right, len(kept))
            if precision is not None
            else wilson_reference(right, n_gold)
        )
        best = max(best, bound)
        if bound >= (precision if precision is not None else recall):  # type: ignore[operator]
            passing.append(t)
    if not passing:
        return None, best
    return (min(passing) if precision is not None else max(passing)), best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("target", [0.5, 0.7, 0.85, 0.97])
def test_threshold_search_matches_brute_force(seed: int, target: float) -> None:
    rng = numpy.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    # Rounded scores: many ties, as a threshold keeps or drops tied entities together.
    scores = numpy.round(rng.uniform(0, 1, n), 2)
    correct = rng.uniform(size=n) < scores
    n_gold = int(correct.sum() + rng.integers(0, 40))
    s, c = scores.tolist(), correct.tolist()
    for kind in ("precision", "recall"):
        got = choose_threshold(s, c, n_gold, **{kind: target})
        expected, best = brute_force(s, c, n_gold, **{kind: target})
        assert got["best"] == pytest.approx(best, abs=1e-12)
        assert got["reached"] == (expected is not None)
        if expected is None:
            continue
        assert got["threshold"] == expected
        kept = [x for x, t in zip(c, s) if t >= expected]
        assert got["kept"] == len(kept) and got["right"] == sum(kept)
        assert got["precision"] == pytest.approx(sum(kept) / len(kept))
        assert got["recall"] == pytest.approx(sum(kept) / n_gold)
        # The value to set keeps exactly the same entities.
        assert [t >= got["cut"] for t in s] == [t >= expected for t in s]
        assert got["cut"] <= expected


def test_precision_recall_at_matches_brute_force() -> None:
    rng = numpy.random.default_rng(5)
    scores = numpy.round(rng.uniform(0, 1, 200), 2).tolist()
    correct = (rng.uniform(size=200) < 0.6).tolist()
    rows = precision_recall_at(scores, correct, 150, [0.0, 0.5, 0.53, 0.9, 1.0, 1.5])
    for row in rows:
        kept = [c for s, c in zip(scores, correct) if s >= row["threshold"]]
        assert row["kept"] == len(kept)
        assert row["precision"] == (sum(kept) / len(kept) if kept else None)
        assert row["recall"] == pytest.approx(sum(kept) / 150)
    assert brier_score([1.0, 0.5, 0.0], [True, False, True]) == pytest.approx((0 + 0.25 + 1) / 3)
    assert brier_score([], []) is None


def test_calibration_per_label_applies_each_map_to_its_label_only() -> None:
    scores = numpy.array([0.2, 0.6, 0.9, 0.4])
    label_idx = numpy.array([0, 1, 0, 2])
    labels = ["A", "B", "C"]
    shared, own = (0.5, 0.1), {"A": [2.0, -1.0]}
    out = apply_calibration(scores, label_idx, labels, shared, own)
    expected = [
        apply_platt(numpy.array([x]), own["A"] if i == 0 else shared)[0]
        for x, i in zip(scores, label_idx)
    ]
    assert out.tolist() == pytest.approx(expected, rel=1e-12)
    assert scores.tolist() == [0.2, 0.6, 0.9, 0.4]  # the input is not written to
    back = invert_calibration(out, label_idx, labels, shared, own)
    assert back.tolist() == pytest.approx(scores.tolist(), rel=1e-9)


def synthetic_labels(n: int, maps: Dict[str, Tuple[float, float]], seed: int = 0) -> Any:
    rng = numpy.random.default_rng(seed)
    scores, correct, labels = [], [], []
    for label, (a, b) in maps.items():
        s = rng.uniform(0.05, 0.999, size=n)
        truth = 1 / (1 + numpy.exp(-(a * logit(s) + b)))
        scores += s.tolist()
        correct += (rng.uniform(size=n) < truth).tolist()
        labels += [label] * n
    folds = (numpy.arange(len(scores)) % 2).tolist()
    return scores, correct, labels, folds


def test_maps_per_label_where_labels_differ() -> None:
    # One label overconfident, one underconfident, one small: one shared map fits neither.
    maps = {"Big1": (0.4, -1.0), "Big2": (2.5, 1.0)}
    scores, correct, labels, folds = synthetic_labels(1500, maps)
    small = synthetic_labels(100, {"Small": (1.0, 0.0)}, seed=1)
    fit = fit_calibration(
        scores + small[0], correct + small[1], labels + small[2], folds + small[3]
    )
    assert set(fit["per_label"]) == {"Big1", "Big2"}
    assert fit["ece_per_label"] < fit["ece_shared"]
    assert fit["per_label"]["Big1"][0] == pytest.approx(0.4, abs=0.1)
    assert fit["per_label"]["Big2"][0] == pytest.approx(2.5, abs=0.5)
    assert fit["labels"]["Small"] == {**fit["labels"]["Small"], "n": 100, "own_map": False}
    assert fit["labels"]["Big1"]["own_map"]
    assert fit["labels"]["Big1"]["ece_per_label"] < fit["labels"]["Big1"]["ece_shared"]


def test_no_maps_per_label_below_the_minimum() -> None:
    scores, correct, labels, folds = synthetic_labels(150, {"A": (0.4, -1.0), "B": (2.5, 1.0)})
    fit = fit_calibration(scores, correct, labels, folds)
    assert fit["per_label"] == {}
    assert fit["shared"] is not None
    assert set(fit["labels"]) == {"A", "B"}
    # The same data with a minimum it meets: maps per label, because they help here.
    fit = fit_calibration(scores, correct, labels, folds, min_entities=100)
    assert set(fit["per_label"]) == {"A", "B"}


# ---- on a pipeline


def trained() -> Tuple[Language, List[Example]]:
    return train_pipeline(app_lib_examples, steps=3, drop=0.2, n_train=10)


def dev_scores(nlp: Language, examples: List[Example]) -> Dict[str, float]:
    predicted = [Example(nlp(eg.predicted.text), eg.reference) for eg in examples]
    return Scorer.score_spans(predicted, "ents")


@pytest.mark.parametrize("kind", ["precision", "recall"])
def test_calibrate_with_a_target_sets_the_threshold_and_keeps_it(tmp_path: Path, kind: str) -> None:
    nlp, examples = trained()
    target = 0.3
    report = calibrate(nlp, examples, **{f"target_{kind}": target})["ntk_ner"]
    chosen = report["target"]
    ner = nlp.get_pipe("ntk_ner")
    assert ner.cfg["threshold"] == chosen["cut"] > 0
    assert chosen[f"{kind}_lower"] >= target
    # The pipeline's own doc.ents on the dev data give the figures the search promised:
    # the scores it searched are the ones the decoder computes.
    got = dev_scores(nlp, examples)
    assert got["ents_p"] == pytest.approx(chosen["precision"], abs=1e-9)
    assert got["ents_r"] == pytest.approx(chosen["recall"], abs=1e-9)
    nlp.to_disk(tmp_path / "p")
    assert f"threshold = {chosen['cut']!r}" in (tmp_path / "p" / "config.cfg").read_text()
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("ntk_ner").cfg["threshold"] == chosen["cut"]
    meta = loaded.meta["ntk_ner"]["ntk_ner"]
    # meta.json is written by srsly (ujson), which rounds floats to about 10 digits.
    assert meta["target"] == {kind: pytest.approx(target, rel=1e-9)}
    assert meta["dev"]["precision"] == pytest.approx(chosen["precision"], rel=1e-5)
    assert dev_scores(loaded, examples) == got


def test_unreachable_or_invalid_target_is_refused() -> None:
    nlp, examples = trained()
    with pytest.raises(UserError) as err:
        calibrate(nlp, examples, target_precision=0.999)
    assert_user_error(str(err.value), "--target-precision", "0.999", "best")
    with pytest.raises(UserError) as err:
        calibrate(nlp, examples, target_recall=1.0)
    assert_user_error(str(err.value), "--target-recall", "1.0")


def test_saved_calibration_old_and_new_forms_load(tmp_path: Path) -> None:
    nlp, examples = trained()
    ner = nlp.get_pipe("ntk_ner")
    ner.cfg["calibration"] = [0.7, 0.2]
    nlp.to_disk(tmp_path / "new")
    # A pipeline calibrated by 0.1: the cfg has no maps per label.
    nlp.to_disk(tmp_path / "old")
    cfg_path = tmp_path / "old" / "ntk_ner" / "cfg"
    cfg = srsly.read_json(cfg_path)
    del cfg["calibration_per_label"]
    srsly.write_json(cfg_path, cfg)
    texts = [eg.predicted.text for eg in examples]
    old, new = spacy.load(tmp_path / "old"), spacy.load(tmp_path / "new")
    assert old.get_pipe("ntk_ner").cfg["calibration_per_label"] == {}
    scores_old = [d.spans["ntk_ner"].attrs["scores"] for d in old.pipe(texts)]
    assert scores_old == [d.spans["ntk_ner"].attrs["scores"] for d in new.pipe(texts)]
    assert scores_old == [d.spans["ntk_ner"].attrs["scores"] for d in nlp.pipe(texts)]
    # A map of its own for LIB: LIB's scores go through it, APP's through the shared one.
    ner.cfg["calibration"] = list((1.0, 0.0))
    raw = [
        ([s.label_ for s in d.spans["ntk_ner"]], d.spans["ntk_ner"].attrs["scores"])
        for d in nlp.pipe(texts)
    ]
    ner.cfg["calibration"] = [0.7, 0.2]
    ner.cfg["calibration_per_label"] = {"LIB": [2.0, -0.5]}
    nlp.to_disk(tmp_path / "per_label")
    loaded = spacy.load(tmp_path / "per_label")
    assert loaded.get_pipe("ntk_ner").cfg["calibration_per_label"] == {"LIB": [2.0, -0.5]}
    for doc, (labels, before) in zip(loaded.pipe(texts), raw):
        assert [s.label_ for s in doc.spans["ntk_ner"]] == labels
        for label, s, after in zip(labels, before, doc.spans["ntk_ner"].attrs["scores"]):
            params = [2.0, -0.5] if label == "LIB" else [0.7, 0.2]
            expected = float(apply_platt(numpy.array([s], dtype="float32"), params)[0])
            assert after == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "bad",
    [{"NOPE": [1.0, 0.0]}, {"LIB": [1.0]}, {"LIB": "1 0"}, [[1.0, 0.0]], {"LIB": [True, 0.0]}],
)
def test_invalid_maps_per_label_stop_the_load(tmp_path: Path, bad: Any) -> None:
    nlp, _ = trained()
    nlp.to_disk(tmp_path / "p")
    cfg_path = tmp_path / "p" / "ntk_ner" / "cfg"
    cfg = srsly.read_json(cfg_path)
    cfg["calibration_per_label"] = bad
    srsly.write_json(cfg_path, cfg)
    with pytest.raises(ValueError) as err:
        spacy.load(tmp_path / "p")
    assert "calibration_per_label" in str(err.value) and "\n" not in str(err.value).strip()


def snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_cli_calibrate_with_targets(tmp_path: Path) -> None:
    nlp, examples = trained()
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "dev.spacy")
    before = snapshot(tmp_path / "model")
    res = run_cli(["calibrate", "model", "dev.spacy", "--target-precision", "1.5"], tmp_path)
    # Checked by the parser now, before the pipeline is loaded: argparse's exit status.
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert "--target-precision" in last and "1.5" in last, res.stderr
    res = run_cli(["calibrate", "model", "dev.spacy", "--target-precision", "0.999"], tmp_path)
    assert_cli_error(res, "--target-precision", "0.999", "best precision")
    assert snapshot(tmp_path / "model") == before
    res = run_cli(["calibrate", "model", "dev.spacy", "--target-recall", "0.3"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "for recall >= 0.3 (95% lower bound): on the dev data precision" in res.stdout
    meta = srsly.read_json(tmp_path / "model" / "meta.json")["ntk_ner"]["ntk_ner"]
    assert meta["target"] == {"recall": pytest.approx(0.3, rel=1e-9)}
    assert meta["dev"]["data"] == "dev.spacy"
    threshold = spacy.load(tmp_path / "model").get_pipe("ntk_ner").cfg["threshold"]
    assert threshold == pytest.approx(meta["threshold"], rel=1e-9)
    assert threshold > 0
    res = run_cli(["evaluate", "model", "dev.spacy"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"threshold {threshold:.4f} chosen by `calibrate` for recall >= 0.3" in res.stdout
    assert f"| {threshold:.4g} (configured) |" in res.stdout


@pytest.mark.parametrize("target", [0.8, 0.85])
def test_threshold_chosen_on_one_half_keeps_the_target_on_the_other(target: float) -> None:
    """Calibrated scores (an entity scored s is right with probability s), dealt into a
    half that chooses the threshold and a half that checks it, 40 times: the Wilson
    bound keeps the held-out precision within 0.03 of the target every time, where the
    point estimate (the control) falls short at least once."""

    def point_estimate(scores: numpy.ndarray, correct: numpy.ndarray) -> float:
        for t in sorted(set(scores.tolist())):
            if correct[scores >= t].mean() >= target:
                return t
        raise AssertionError("the target is not reachable")

    short = {"wilson": 0, "point": 0}
    for seed in range(40):
        rng = numpy.random.default_rng(seed)
        scores = numpy.round(rng.beta(5, 1.2, size=(2, 400)), 3)
        correct = rng.uniform(size=(2, 400)) < scores
        n_gold = int(correct[0].sum()) + 50
        got = choose_threshold(scores[0].tolist(), correct[0].tolist(), n_gold, precision=target)
        assert got["reached"]
        for kind, cut in (("wilson", got["cut"]), ("point", point_estimate(scores[0], correct[0]))):
            held_out = correct[1][scores[1] >= cut].mean()
            short[kind] += int(held_out < target - 0.03)
    assert short["wilson"] == 0
    assert short["point"] > 0


def test_a_refit_without_a_target_drops_the_targets_threshold(tmp_path: Path) -> None:
    nlp, examples = trained()
    calibrate(nlp, examples, target_recall=0.3)
    ner = nlp.get_pipe("ntk_ner")
    assert ner.cfg["threshold"] > 0
    report = calibrate(nlp, examples)["ntk_ner"]
    # The threshold was chosen on the old calibration's scores: it goes, with its record.
    assert report["dropped"]["target"] == {"recall": 0.3}
    assert ner.cfg["threshold"] == nlp.get_pipe_config("ntk_ner")["threshold"] == 0.0
    assert "ntk_ner" not in nlp.meta
    # A threshold set by hand since is the user's: the record goes, the threshold stays.
    calibrate(nlp, examples, target_recall=0.3)
    ner.cfg["threshold"] = 0.25
    dropped = calibrate(nlp, examples)["ntk_ner"]["dropped"]
    assert dropped["now"] == 0.25 and not dropped["reset"]
    assert "the threshold set by hand, 0.25, stays" in format_dropped(dropped)
    assert ner.cfg["threshold"] == 0.25 and "ntk_ner" not in nlp.meta


def test_cli_refit_says_it_dropped_the_threshold_and_evaluate_keeps_no_old_promise(
    tmp_path: Path,
) -> None:
    nlp, examples = trained()
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "dev.spacy")
    res = run_cli(["calibrate", "model", "dev.spacy", "--target-recall", "0.3"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli(["calibrate", "model", "dev.spacy"], tmp_path)
    assert res.returncode == 0, res.stderr
    dropped = [line for line in res.stdout.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and "for recall >= 0.3 (95% lower bound) dropped" in dropped[0]
    assert "; now 0 (--target-recall 0.3 chooses it again)" in dropped[0]
    assert "ntk_ner" not in srsly.read_json(tmp_path / "model" / "meta.json")
    assert spacy.load(tmp_path / "model").get_pipe("ntk_ner").cfg["threshold"] == 0.0
    res = run_cli(["evaluate", "model", "dev.spacy"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "chosen by `calibrate`" not in res.stdout


def test_a_stale_target_record_is_not_shown(tmp_path: Path) -> None:
    nlp, examples = trained()
    calibrate(nlp, examples, target_recall=0.3)
    # As an older `calibrate` left it: the record kept, the threshold changed.
    nlp.get_pipe_config("ntk_ner")["threshold"] = 0.0
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "dev.spacy")
    res = run_cli(["evaluate", "model", "dev.spacy"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "chosen by `calibrate`" not in res.stdout


def test_targets_are_printed_as_the_user_gave_them() -> None:
    assert describe_target({"precision": 0.1 * 6}) == "precision >= 0.6 (95% lower bound)"
    assert describe_target({"recall": 0.123456789}) == "recall >= 0.123456789 (95% lower bound)"
