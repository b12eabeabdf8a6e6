from pathlib import Path
from typing import List

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.util import registry
from util import REPO, app_lib_examples, run_cli, train_pipeline

from spacy_ntk_ner.confidence.calibrate import calibrate, cross_fitted_ece
from spacy_ntk_ner.confidence.metrics import expected_calibration_error
from spacy_ntk_ner.confidence.platt import IDENTITY, apply_platt, fit_platt, logit
from spacy_ntk_ner.ner._crf.windows import length_buckets


def synthetic(n: int, a: float, b: float, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = numpy.random.default_rng(seed)
    scores = rng.uniform(0.05, 0.999, size=n)
    truth = 1 / (1 + numpy.exp(-(a * logit(scores) + b)))
    return scores, rng.uniform(size=n) < truth


def test_platt_recovers_the_map_and_lowers_the_error() -> None:
    scores, correct = synthetic(20000, 0.5, -1.0)
    params = fit_platt(scores, correct)
    assert params is not None
    assert params[0] == pytest.approx(0.5, abs=0.05)
    assert params[1] == pytest.approx(-1.0, abs=0.08)
    before = expected_calibration_error(scores, correct)["ece"]
    after = expected_calibration_error(apply_platt(scores, params), correct)["ece"]
    assert before > 0.15 and after < 0.02


def test_platt_refuses_too_little_or_one_sided_data() -> None:
    assert fit_platt([0.9] * 5, [True, False] * 2 + [True]) is None
    assert fit_platt([0.9] * 50, [True] * 50) is None
    assert apply_platt(numpy.asarray([0.3, 0.7]), IDENTITY).tolist() == [0.3, 0.7]


def test_length_buckets_cover_every_nonempty_doc_once() -> None:
    lengths = [5, 0, 300, 7, 6, 1, 5000]
    buckets = length_buckets(lengths, max_padded=20)
    assert sorted(i for b in buckets for i in b) == [0, 2, 3, 4, 5, 6]
    assert [6] in buckets and [2] in buckets
    for b in buckets:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 20


def test_calibrate_pipeline_and_callback(tmp_path: Path) -> None:
    nlp, examples = train_pipeline(app_lib_examples, steps=3, drop=0.2, n_train=10)
    ner = nlp.get_pipe("ntk_ner")
    texts = [eg.reference.text for eg in examples]
    before = [d.spans["ntk_ner"].attrs["scores"] for d in nlp.pipe(texts)]
    report = calibrate(nlp, examples)["ntk_ner"]
    assert report["n"] >= 20
    assert report["fitted"]
    assert ner.cfg["calibration"] != list(IDENTITY)
    after = [d.spans["ntk_ner"].attrs["scores"] for d in nlp.pipe(texts)]
    assert after != before
    assert report["ece_after"] <= report["ece_before"] + 1e-9
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p").get_pipe("ntk_ner").cfg["calibration"]
    assert loaded == pytest.approx(ner.cfg["calibration"], rel=1e-9)
    fitted = list(ner.cfg["calibration"])
    held = cross_fitted_ece(nlp, examples)["ntk_ner"]
    assert held["n"] == report["n"]
    # Cross-fitting refits on folds, but leaves the pipeline's own calibration as it was.
    assert ner.cfg["calibration"] == fitted
    # The callback named in configs/*.cfg resolves and calibrates in place from the dev
    # data at its path; with no path it changes nothing.
    make_callback = registry.callbacks.get("spacy_ntk_ner.calibrate.v1")
    ner.cfg["calibration"] = list(IDENTITY)
    assert make_callback(None)(nlp) is nlp
    assert ner.cfg["calibration"] == list(IDENTITY)
    DocBin(docs=[eg.reference for eg in examples]).to_disk(tmp_path / "dev.spacy")
    assert make_callback(tmp_path / "dev.spacy")(nlp) is nlp
    assert ner.cfg["calibration"] == pytest.approx(fitted, rel=1e-6)


# ---- the training callback calibrates on the dev corpus training evaluates on

NAMES7 = ["Alpha", "Beta", "Gamma", "Delta", "Omega", "Sigma", "Kappa"]


def bio_sentences(flip_every: int = 0) -> List[str]:
    """App-uses-lib sentences; with `flip_every`, every n-th has its labels swapped
    (so some predictions are wrong, and a map can be fitted)."""
    out = []
    for i, (a, b) in enumerate((a, b) for a in NAMES7 for b in NAMES7 if a != b):
        app, lib = (
            ("Library", "Application")
            if flip_every and i % flip_every == 0
            else (
                "Application",
                "Library",
            )
        )
        out.append(f"{a}\tB-{app}\nuses\tO\n{b}\tB-{lib}\non\tO\nLinux\tB-Operating_System\n")
    return out


def train_from_bio(tmp_path: Path, dev: List[str]) -> Path:
    """`spacy train` configs/cpu.cfg with both corpora read from BIO files by
    `spacy_ntk_ner.BIOCorpus.v1`; RETURNS model-best."""
    from spacy.cli.train import train as spacy_train

    config = (REPO / "configs" / "cpu.cfg").read_text()
    for split in ("train", "dev"):
        docbins = (
            f'[corpora.{split}]\n@readers = "spacy.Corpus.v1"\npath = ${{paths.{split}}}\n'
            "max_length = 0\ngold_preproc = false\nlimit = 0\naugmenter = null\n"
        )
        assert docbins in config
        reader = '@readers = "spacy_ntk_ner.BIOCorpus.v1"'
        bio = f"[corpora.{split}]\n{reader}\npath = ${{paths.{split}}}\n"
        config = config.replace(docbins, bio)
    (tmp_path / "bio.cfg").write_text(config)
    (tmp_path / "train.bio").write_text("\n".join(bio_sentences()))
    (tmp_path / "dev.bio").write_text("\n".join(dev))
    overrides = {
        "paths.train": str(tmp_path / "train.bio"),
        "paths.dev": str(tmp_path / "dev.bio"),
        "training.max_steps": 20,
        "training.eval_frequency": 10,
    }
    spacy_train(tmp_path / "bio.cfg", tmp_path / "out", overrides=overrides)
    return tmp_path / "out" / "model-best"


def test_training_from_bio_files_calibrates_on_the_bio_dev_corpus(tmp_path: Path) -> None:
    best = train_from_bio(tmp_path, bio_sentences(flip_every=4))
    ner = spacy.load(best).get_pipe("ntk_ner")
    assert ner.cfg["calibration"] != list(IDENTITY)
    assert "ntk_ner" not in srsly.read_json(best / "meta.json")


def test_a_pipeline_saved_uncalibrated_warns_records_why_and_evaluate_says_so(
    tmp_path: Path,
) -> None:
    with pytest.warns(UserWarning, match=r"ntk_ner: .*uncalibrated .*: too few dev entities"):
        best = train_from_bio(tmp_path, bio_sentences()[:2])
    meta = srsly.read_json(best / "meta.json")["ntk_ner"]["ntk_ner"]
    assert meta["uncalibrated"].startswith("too few dev entities: ")
    assert spacy.load(best).get_pipe("ntk_ner").cfg["calibration"] == list(IDENTITY)
    nlp = spacy.load(best)
    DocBin(docs=[nlp.make_doc("Alpha uses Beta on Linux")]).to_disk(tmp_path / "d.spacy")
    res = run_cli(["evaluate", str(best), "d.spacy"], tmp_path)
    assert res.returncode == 0, res.stderr
    (line,) = [x for x in res.stdout.splitlines() if "uncalibrated:" in x]
    assert line.startswith("ntk_ner: the scores are uncalibrated: too few dev entities")
