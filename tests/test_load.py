"""Loading a trained pipeline: settings come from the config, what was learned from disk,
and a pipeline whose files do not belong together stops at load, naming the file."""

import shutil
from pathlib import Path
from typing import Any, Dict

import pytest
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Span
from thinc.api import Config
from util import assert_user_error, char_examples, train_pipeline

TRAIN = [
    ("I like London and Berlin .", [(7, 13, "LOC"), (18, 24, "LOC")]),
    ("Python runs on Linux", [(0, 6, "LANG"), (15, 20, "OS")]),
]


def train(config: Dict[str, Any]) -> Language:
    nlp, _ = train_pipeline(lambda nlp: char_examples(nlp, TRAIN), {"ntk_ner": config})
    # Calibrated, so a load that dropped it would show.
    nlp.get_pipe("ntk_ner").cfg["calibration"] = [0.5, 0.25]
    return nlp


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("load") / "p"
    train({"n_passes": 2, "agreement_weight": 0.5, "agreement_warmup_steps": 3}).to_disk(path)
    return path


def load(path: Path, **settings: Any) -> Language:
    return spacy.load(path, config={"components": {"ntk_ner": settings}})


def test_learned_things_come_from_disk(saved: Path) -> None:
    ner = load(saved, threshold=0.3).get_pipe("ntk_ner")
    assert ner.labels == ("LANG", "LOC", "OS")
    assert ner.cfg["calibration"] == [0.5, 0.25]
    assert ner.cfg["threshold"] == 0.3


def test_threshold_at_load_takes_effect(saved: Path) -> None:
    text = TRAIN[0][0]
    scores = load(saved)(text).spans["ntk_ner"].attrs["scores"]
    assert len(scores) == 2
    cut = sorted(scores)[0] + 1e-6  # just above the lower score
    doc = load(saved, threshold=cut)(text)
    assert len(doc.spans["ntk_ner"]) == 2
    assert len(doc.ents) == 1
    assert load(saved, threshold=cut).config["components"]["ntk_ner"]["threshold"] == cut


def test_overwrite_ents_at_load_takes_effect(saved: Path) -> None:
    nlp = load(saved, overwrite_ents=False)
    doc = nlp.make_doc(TRAIN[0][0])
    doc.ents = [Span(doc, 2, 4, label="MISC")]  # "London and"
    doc = nlp.get_pipe("ntk_ner")(doc)
    assert ("London and", "MISC") in [(e.text, e.label_) for e in doc.ents]


def test_spans_key_at_load_takes_effect(saved: Path) -> None:
    doc = load(saved, spans_key="scored")(TRAIN[1][0])
    assert "scored" in doc.spans and "ntk_ner" not in doc.spans
    assert len(doc.spans["scored"]) == 2


@pytest.mark.parametrize(
    "setting,value",
    [
        ("n_passes", 3),
        ("agreement_weight", 2.0),
        ("agreement_warmup_steps", 7),
        ("o_unknown_weight", 0.25),
    ],
)
def test_training_settings_at_load_take_effect(saved: Path, setting: str, value: Any) -> None:
    nlp = load(saved, **{setting: value})
    assert nlp.get_pipe("ntk_ner").cfg[setting] == value
    # ... and a save carries them in config.cfg, which the next load reads.
    assert nlp.config["components"]["ntk_ner"][setting] == value


def test_a_pipeline_with_the_0_1_setting_names_loads_and_predicts(
    saved: Path, tmp_path: Path
) -> None:
    """A 0.1 pipeline's config.cfg says `k`, `alpha`, `alpha_warmup_steps` (and has no
    new names): it loads with a FutureWarning per old name and predicts as the
    same pipeline saved with the new names."""
    path = tmp_path / "old"
    shutil.copytree(saved, path)
    old_names = {
        "n_passes": "k",
        "agreement_weight": "alpha",
        "agreement_warmup_steps": "alpha_warmup_steps",
    }
    config = Config().from_disk(path / "config.cfg", interpolate=False)
    ner_config = config["components"]["ntk_ner"]
    for new_name, old_name in old_names.items():
        # A 0.1 config has the old name set and no new name; a pipeline saved now has
        # only the new name.
        assert old_name not in ner_config
        ner_config[old_name] = ner_config.pop(new_name)
    config.to_disk(path / "config.cfg", interpolate=False)
    assert "\nk = 2\n" in (path / "config.cfg").read_text()
    with pytest.warns(FutureWarning) as caught:
        nlp = spacy.load(path)
    assert sorted(str(w.message).split("'")[1] for w in caught) == sorted(old_names.values())
    ner = nlp.get_pipe("ntk_ner")
    assert (ner.cfg["n_passes"], ner.cfg["agreement_weight"]) == (2, 0.5)
    assert ner.cfg["agreement_warmup_steps"] == 3
    # The pipeline keeps its config under the new names: saved again, it loads quietly.
    shown = nlp.config["components"]["ntk_ner"]
    assert not set(old_names.values()) & set(shown)
    assert (shown["n_passes"], shown["agreement_weight"], shown["agreement_warmup_steps"]) == (
        2,
        0.5,
        3,
    )
    reference = spacy.load(saved)
    for text, _ in TRAIN:
        got, want = nlp(text), reference(text)
        assert [(e.text, e.label_) for e in got.ents] == [(e.text, e.label_) for e in want.ents]
        assert got.spans["ntk_ner"].attrs["scores"] == want.spans["ntk_ner"].attrs["scores"]


def test_other_scheme_at_load_is_an_error_naming_both(saved: Path) -> None:
    with pytest.raises(ValueError) as err:
        load(saved, scheme="BIO")
    assert_user_error(str(err.value), str(saved / "ntk_ner" / "cfg"), "'BILUO'", "'BIO'")


def test_labels_that_do_not_match_the_weights_stop_at_load(saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "p"
    spacy.load(saved).to_disk(path)
    cfg = srsly.read_json(path / "ntk_ner" / "cfg")
    cfg["labels"] = cfg["labels"] + ["EXTRA"]
    srsly.write_json(path / "ntk_ner" / "cfg", cfg)
    with pytest.raises(ValueError) as err:
        spacy.load(path)
    assert_user_error(str(err.value), str(path / "ntk_ner" / "model"), "13 tags", "need 17")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_weights_name_the_file(saved: Path, tmp_path: Path, damage: str) -> None:
    path = tmp_path / "p"
    spacy.load(saved).to_disk(path)
    model = path / "ntk_ner" / "model"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x93not weights")
    with pytest.raises(ValueError, match=rf"^{model}: the weights cannot be read \("):
        spacy.load(path)


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_pipeline_saved_by_0_1_0_predicts_as_it_did() -> None:
    """tests/fixtures/pipeline-0.1.0 was saved by the flat 0.1.0 layout (fb6fec5), with
    calibration fitted; today's code loads it and predicts the same entities,
    spans and scores as that code did (scores to 1e-4: float32 sums whose order the BLAS
    library and its threads choose differ by a few 1e-6 between machines and runs)."""
    folder = FIXTURES / "pipeline-0.1.0"
    expected = srsly.read_json(folder / "expected.json")
    nlp = spacy.load(folder / "pipeline")
    assert nlp.get_pipe("ntk_ner").cfg["calibration"] != [1.0, 0.0]
    docs = list(nlp.pipe(row["text"] for row in expected))
    assert sum(len(doc.ents) for doc in docs) > 10
    for doc, row in zip(docs, expected):
        assert [[e.start_char, e.end_char, e.label_] for e in doc.ents] == row["ents"]
        group = doc.spans["ntk_ner"]
        assert [[s.start_char, s.end_char, s.label_] for s in group] == row["spans"]
        assert group.attrs["scores"] == pytest.approx(row["scores"], abs=1e-4)


def test_configs_spacy_fills_show_no_0_1_names(tmp_path: Path) -> None:
    """spaCy's fill (`spacy init fill-config`, `spacy init config -p ntk_ner`) writes
    every argument the factory lists: the 0.1 names are read, never shown, and a
    pipeline saved by 0.1.0 (with `k = null` lines) keeps loading."""
    minimal = (
        '[nlp]\nlang = "en"\npipeline = ["ntk_ner"]\n\n'
        '[components]\n\n[components.ntk_ner]\nfactory = "ntk_ner"\n'
    )
    config = Config().from_str(minimal)
    filled = spacy.util.load_model_from_config(config, auto_fill=True).config
    ner_config = filled["components"]["ntk_ner"]
    assert "n_passes" in ner_config
    assert not {"k", "alpha", "alpha_warmup_steps"} & set(ner_config)
    old = spacy.load(FIXTURES / "pipeline-0.1.0" / "pipeline")
    assert "\nk = null\n" in (FIXTURES / "pipeline-0.1.0" / "pipeline" / "config.cfg").read_text()
    old.to_disk(tmp_path / "resaved")
    assert "alpha" not in (tmp_path / "resaved" / "config.cfg").read_text()
    assert spacy.load(tmp_path / "resaved").get_pipe("ntk_ner").cfg == old.get_pipe("ntk_ner").cfg
