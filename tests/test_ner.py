import inspect
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import load_model_from_config, registry
from thinc.api import SGD, fix_random_seed
from util import app_lib_examples, scored_paths, train_pipeline

from spacy_ntk_ner.ner import settings as ner_settings
from spacy_ntk_ner.ner._crf import decode as crf_decode
from spacy_ntk_ner.ner._crf import lattice as crf
from spacy_ntk_ner.ner._crf import loss as crf_loss
from spacy_ntk_ner.ner._crf import windows
from spacy_ntk_ner.ner._crf.lattice import Lattice, Params
from spacy_ntk_ner.ner._crf.tag_scheme import TagScheme
from spacy_ntk_ner.ner._crf.windows import plan_chains, space_masks, stitch_doc
from spacy_ntk_ner.ner.component import NTKEntityRecognizer

TRAIN = [
    ("I like London and Berlin .", [(7, 13, "LOC"), (18, 24, "LOC")]),
    ("Guido van Rossum wrote Python .", [(0, 16, "PER"), (23, 29, "LANG")]),
    ("Python runs on Linux", [(0, 6, "LANG"), (15, 20, "OS")]),
    ("Berlin is big", [(0, 6, "LOC")]),
]


def make_examples(nlp: Language) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN]


def train(config: dict, steps: int = 50, drop: float = 0.1) -> Language:
    nlp, _ = train_pipeline(make_examples, {"ntk_ner": config}, steps=steps, drop=drop)
    return nlp


@pytest.fixture(scope="module")
def trained() -> Language:
    return train({"n_passes": 2, "agreement_weight": 1.0, "agreement_warmup_steps": 5}, steps=60)


def predictions(nlp: Language) -> List[List[Tuple[str, str, float]]]:
    out = []
    for doc in nlp.pipe([t for t, _ in TRAIN]):
        scores = doc.spans["ntk_ner"].attrs["scores"]
        out.append(
            [(s.text, s.label_, round(sc, 5)) for s, sc in zip(doc.spans["ntk_ner"], scores)]
        )
    return out


def test_entry_points_resolve() -> None:
    eps = {
        (group, ep.name): ep
        for group in ("spacy_factories", "spacy_architectures", "spacy_readers")
        for ep in entry_points(group=group)
    }
    factory = eps[("spacy_factories", "ntk_ner")].load()
    assert factory.__name__ == "make_ntk_ner"
    for version in ("v1", "v2"):
        name = f"spacy_ntk_ner.TokenClassifier.{version}"
        assert registry.architectures.get(name) is eps[("spacy_architectures", name)].load()
    assert (
        registry.readers.get("spacy_ntk_ner.BIOCorpus.v1")
        is eps[("spacy_readers", "spacy_ntk_ner.BIOCorpus.v1")].load()
    )


def test_factory_declares_assigns_and_scores() -> None:
    meta = Language.get_factory_meta("ntk_ner")
    assert "doc.ents" in meta.assigns
    assert meta.default_score_weights["ents_f"] == 1.0


@pytest.mark.parametrize(
    "config,setting",
    [
        ({"n_passes": 0}, "n_passes (forward passes per batch) must be at least 1"),
        ({"agreement_weight": -1.0}, "agreement_weight must be 0 or more"),
        ({"threshold": 1.5}, "threshold must be between 0 and 1"),
        ({"scheme": "IOB"}, "scheme must be one of BILUO, BIO"),
        ({"agreement_warmup_steps": -2}, "agreement_warmup_steps must be 0 or more"),
        ({"o_unknown_weight": 1.5}, "o_unknown_weight must be between 0 and 1"),
        ({"o_unknown_weight": -0.1}, "o_unknown_weight must be between 0 and 1"),
    ],
)
def test_bad_settings_are_named(config: dict, setting: str) -> None:
    nlp = spacy.blank("en")
    with pytest.raises(
        ValueError, match=r"\[ntk_ner\] .*" + setting.replace("(", r"\(").replace(")", r"\)")
    ):
        nlp.add_pipe("ntk_ner", config=config)


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_settings(page: Path = README) -> List[Tuple[str, Any]]:
    """The rows of the table of `ntk_ner`'s settings under "## Settings" in a page of
    the docs: name and default."""
    text = page.read_text(encoding="utf8").split("## Settings", 1)[1]
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    table = lines[first:end]
    rows = []
    for line in table[2:]:  # after the header and its rule
        cells = [cell.strip().strip("`") for cell in line.split("|")[1:-1]]
        rows.append((cells[0], json.loads(cells[1])))
    return rows


@pytest.mark.parametrize("page", [README, README.parent / "docs" / "component.md"])
def test_readme_settings_table_lists_the_defaults(page: Path) -> None:
    """The settings the docs list, their order and defaults (with their types) are the
    ones of `settings.SETTINGS`, which the factory, the pipe and the renames use."""
    rows = readme_settings(page)
    assert rows == list(ner_settings.SETTINGS.items())
    assert [type(v) for _, v in rows] == [type(v) for v in ner_settings.SETTINGS.values()]
    default_config = spacy.blank("en").get_factory_meta("ntk_ner").default_config
    assert {k: v for k, v in default_config.items() if k not in ("model", "scorer")} == dict(rows)
    signature = inspect.signature(NTKEntityRecognizer.__init__).parameters
    assert {name: signature[name].default for name, _ in rows} == dict(rows)


OLD_NAMES = {"k": 3, "alpha": 2.5, "alpha_warmup_steps": 7}
NEW_NAMES = {"n_passes": 3, "agreement_weight": 2.5, "agreement_warmup_steps": 7}


def test_old_setting_names_are_read_with_a_deprecation_warning() -> None:
    new = spacy.blank("en").add_pipe("ntk_ner", config=NEW_NAMES)
    for old_name, new_name in ner_settings.RENAMED_SETTINGS.items():
        message = f"'{old_name}' is deprecated: use '{new_name}'"
        with pytest.warns(FutureWarning, match=message):
            one = spacy.blank("en").add_pipe("ntk_ner", config={old_name: OLD_NAMES[old_name]})
        assert one.cfg[new_name] == NEW_NAMES[new_name]
    with pytest.warns(FutureWarning):
        old = spacy.blank("en").add_pipe("ntk_ner", config=OLD_NAMES)
    assert old.cfg == new.cfg


@pytest.mark.parametrize("old_name,new_name", list(ner_settings.RENAMED_SETTINGS.items()))
def test_an_old_name_with_its_new_name_is_an_error_naming_both(
    old_name: str, new_name: str
) -> None:
    config = {old_name: OLD_NAMES[old_name], new_name: NEW_NAMES[new_name]}
    with pytest.raises(ValueError) as err:
        spacy.blank("en").add_pipe("ntk_ner", config=config)
    assert str(err.value) == (
        f"[ntk_ner] both {old_name} = {OLD_NAMES[old_name]!r} and {new_name} = "
        f"{NEW_NAMES[new_name]!r} are set: {old_name} is the old name of {new_name}; "
        f"set only {new_name}"
    )


def test_no_labels_at_initialize() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("ntk_ner")
    examples = [Example.from_dict(nlp.make_doc("no entities here"), {"entities": []})]
    with pytest.raises(ValueError, match=r"\[ntk_ner\] no entity labels"):
        nlp.initialize(lambda: examples)


def test_labels_from_initialize_config() -> None:
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner")
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    assert ner.labels == ("LANG", "LOC", "OS", "PER")
    nlp2 = spacy.blank("en")
    ner2 = nlp2.add_pipe("ntk_ner")
    ner2.initialize(lambda: examples, nlp=nlp2, labels=["B", "X-ray"])
    assert ner2.labels == ("B", "X-ray")
    assert ner2.label_data == ["B", "X-ray"]
    assert ner2.tag_scheme.gold_index(["U-X-ray", "B-B", "L-B", "O", None]) == [8, 1, 3, 0, -1]


def test_overfit_finds_all_entities(trained: Language) -> None:
    for doc, (_, gold) in zip(trained.pipe([t for t, _ in TRAIN]), TRAIN):
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == gold
        scores = doc.spans["ntk_ner"].attrs["scores"]
        assert len(scores) == len(doc.spans["ntk_ner"])
        assert all(0.5 < s <= 1.0 for s in scores)
    scores = trained.evaluate(make_examples(trained))
    assert scores["ents_f"] == 1.0
    assert set(scores["ents_per_type"]) == {"LOC", "PER", "LANG", "OS"}


def test_bytes_and_disk_round_trips(trained: Language, tmp_path: Path) -> None:
    expected = predictions(trained)
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("ntk_ner")
    nlp2.from_bytes(trained.to_bytes())
    assert predictions(nlp2) == expected
    trained.to_disk(tmp_path / "p")
    assert predictions(spacy.load(tmp_path / "p")) == expected
    ner = trained.get_pipe("ntk_ner")
    fresh = spacy.blank("en")
    ner2 = fresh.add_pipe("ntk_ner")
    assert isinstance(ner2, NTKEntityRecognizer)
    ner2.from_bytes(ner.to_bytes())
    assert ner2.labels == ner.labels
    assert predictions(fresh) == expected


def test_reload_in_a_new_process(trained: Language, tmp_path: Path) -> None:
    """The pipeline loads where the package is installed but never imported."""
    trained.to_disk(tmp_path / "p")
    code = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "out = []\n"
        "for doc in nlp.pipe(json.loads(sys.argv[2])):\n"
        "    sg = doc.spans['ntk_ner']\n"
        "    pairs = zip(sg, sg.attrs['scores'])\n"
        "    out.append([[s.text, s.label_, round(x, 5)] for s, x in pairs])\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p"), json.dumps([t for t, _ in TRAIN])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    reloaded = [[tuple(x) for x in doc] for doc in json.loads(res.stdout)]
    assert reloaded == predictions(trained)


def test_threshold_and_overwrite(trained: Language) -> None:
    # A copy: the settings changed here must not leak into the module's fixture.
    nlp = load_model_from_config(trained.config, auto_fill=False).from_bytes(trained.to_bytes())
    ner = nlp.get_pipe("ntk_ner")
    doc = nlp.make_doc(TRAIN[1][0])
    per = ner.labels.index("PER")
    lang = ner.labels.index("LANG")
    ner.cfg["threshold"] = 0.5
    ner.set_annotations([doc], [[(0, 3, per, 0.9), (4, 5, lang, 0.3)]])
    assert [(s.text, s.label_) for s in doc.spans["ntk_ner"]] == [
        ("Guido van Rossum", "PER"),
        ("Python", "LANG"),
    ]
    assert doc.spans["ntk_ner"].attrs["scores"] == [0.9, 0.3]
    assert [e.text for e in doc.ents] == ["Guido van Rossum"]
    ner.cfg["threshold"] = 0.0
    ner.cfg["overwrite_ents"] = False
    text = TRAIN[0][0]
    doc = nlp.make_doc(text)
    doc.ents = [Span(doc, 2, 4, label="MISC")]  # "London and"
    doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [("London and", "MISC"), ("Berlin", "LOC")]
    ner.cfg["overwrite_ents"] = True
    doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [("London", "LOC"), ("Berlin", "LOC")]


def test_pipe_batches_and_processes(trained: Language) -> None:
    texts = [t for t, _ in TRAIN] * 3 + [""]
    single = [[(e.text, e.label_) for e in trained(t).ents] for t in texts]
    batched = [[(e.text, e.label_) for e in d.ents] for d in trained.pipe(texts, batch_size=2)]
    multi = [
        [(e.text, e.label_) for e in d.ents] for d in trained.pipe(texts, n_process=2, batch_size=3)
    ]
    assert single == batched == multi


def _annotations(doc: Doc) -> List[Tuple[int, int, str, float]]:
    group = doc.spans["ntk_ner"]
    return [(s.start, s.end, s.label_, p) for s, p in zip(group, group.attrs["scores"])]


def test_pipe_at_any_batch_size_is_predict_one_doc_at_a_time(
    trained: Language, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batching rule: the encoder runs on `_length_buckets` groups of the
    length-sorted batch (at most PADDED_BUDGET padded tokens each), and batching
    changes no entity or score; docs come out in input order."""
    sentences = [t for t, _ in TRAIN]
    texts = [" ".join(sentences[i % 4] for i in range(n)) for n in (1, 7, 30, 2, 50, 3, 140)]
    texts = (texts + ["", "   "]) * 5
    ner = trained.get_pipe("ntk_ner")
    single = [_annotations(trained(t)) for t in texts]
    assert sum(len(a) for a in single) > 100
    calls: List[List[int]] = []
    predict = type(ner.model).predict

    def spy(model: Any, docs: List[Doc]) -> Any:
        if model is ner.model:
            calls.append([len(doc) for doc in docs])
        return predict(model, docs)

    monkeypatch.setattr(type(ner.model), "predict", spy)
    for batch_size in (1, 3, 16, 1000):
        calls.clear()
        docs = list(trained.pipe(texts, batch_size=batch_size))
        assert [d.text for d in docs] == texts
        for got, want in zip(map(_annotations, docs), single):
            assert [a[:3] for a in got] == [a[:3] for a in want]
            numpy.testing.assert_allclose([a[3] for a in got], [a[3] for a in want], atol=1e-6)
        assert all(len(c) == 1 or len(c) * max(c) <= windows.PADDED_BUDGET for c in calls)
        assert all(c == sorted(c) and min(c) > 0 for c in calls)
    assert len(calls) > 1 and max(len(c) for c in calls) > 4


V2_MODEL = {
    "@architectures": "spacy_ntk_ner.TokenClassifier.v2",
    "head_lr_scale": 4.0,
    "tok2vec": {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": 32,
        "depth": 2,
        "embed_size": 500,
        "window_size": 1,
        "maxout_pieces": 2,
        "subword_features": True,
    },
}


def test_v2_head_learns_at_its_scale() -> None:
    """With plain SGD, one update moves the linear layer and the CRF by
    head_lr_scale x rate x gradient, and the encoder by rate x gradient."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner", config={"model": V2_MODEL})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    model = ner.model
    W = model.get_ref("output_layer").get_param("W")
    assert float(numpy.abs(W).max()) > 0, "v2's linear layer starts random"
    ner.update(examples)  # gradients only
    head = {model.id, model.get_ref("output_layer").id}
    before = {
        (node.id, name): (node.get_param(name).copy(), node.get_grad(name).copy())
        for node in model.walk()
        for name in node.param_names
        if node.has_grad(name)
    }
    assert {key[0] for key in before} > head
    ner.finish_update(SGD(0.01, L2=0.0, grad_clip=0.0))
    seen_head = seen_other = 0
    for node in model.walk():
        for name in node.param_names:
            if (node.id, name) not in before:
                continue
            param, grad = before[(node.id, name)]
            if not numpy.abs(grad).max() > 0:
                continue
            scale = 4.0 if node.id in head else 1.0
            numpy.testing.assert_allclose(
                node.get_param(name), param - 0.01 * scale * grad, rtol=1e-5, atol=1e-7
            )
            seen_head += node.id in head
            seen_other += node.id not in head
    assert seen_head == 5 and seen_other > 0  # W, b, transitions, start, end


def test_v2_overfits_and_reloads(tmp_path: Path) -> None:
    nlp = train({"model": V2_MODEL}, steps=40)
    assert [[(t, lab) for t, lab, _ in doc] for doc in predictions(nlp)] == [
        [(text[a:b], label) for a, b, label in ents] for text, ents in TRAIN
    ]
    nlp.to_disk(tmp_path / "v2")
    reloaded = spacy.load(tmp_path / "v2")
    assert reloaded.get_pipe("ntk_ner").model.attrs["head_lr_scale"] == 4.0
    assert predictions(reloaded) == predictions(nlp)


def test_v2_bad_head_lr_scale_is_named() -> None:
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=r"TokenClassifier.v2\] head_lr_scale must be > 0"):
        nlp.add_pipe("ntk_ner", config={"model": {**V2_MODEL, "head_lr_scale": 0.0}})


def trained_3_steps(n_passes: int) -> Tuple[Language, List[Example]]:
    """A pipeline with n passes (agreement weight 5, no warm-up) after 3 updates
    without dropout."""
    config = {"n_passes": n_passes, "agreement_weight": 5.0}
    return train_pipeline(make_examples, {"ntk_ner": config}, steps=3)


def test_two_passes_loss_differs_from_one() -> None:
    losses = {}
    for k in (1, 2):
        nlp, examples = trained_3_steps(k)
        fix_random_seed(1)
        losses[k] = nlp.update(examples, drop=0.5)["ntk_ner"]
    assert losses[1] > 0 and losses[2] > 0
    assert losses[1] != pytest.approx(losses[2], rel=1e-4)


def test_two_passes_at_dropout_0_equal_one() -> None:
    """Without dropout the passes are the same pass: the loss (agreement term 0) and
    every parameter's gradient are n_passes = 1's."""
    grads = {}
    losses = {}
    for k in (1, 2):
        nlp, examples = trained_3_steps(k)
        losses[k] = nlp.update(examples, drop=0.0)["ntk_ner"]
        model = nlp.get_pipe("ntk_ner").model
        grads[k] = {
            (i, name): model.ops.to_numpy(node.get_grad(name)).copy()
            for i, node in enumerate(model.walk())
            for name in node.param_names
            if node.has_grad(name)
        }
    assert losses[1] > 0
    assert losses[2] == pytest.approx(losses[1], rel=1e-6)
    assert grads[1].keys() == grads[2].keys() and len(grads[1]) > 4
    for key, g1 in grads[1].items():
        numpy.testing.assert_allclose(grads[2][key], g1, rtol=1e-6, atol=1e-8, err_msg=str(key))


def test_agreement_waits_for_warmup(monkeypatch: pytest.MonkeyPatch) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "ntk_ner", config={"n_passes": 2, "agreement_weight": 50.0, "agreement_warmup_steps": 1}
    )
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    seen = []
    agreement = crf_loss.agreement_loss

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(True)
        return agreement(*args, **kwargs)

    monkeypatch.setattr(crf_loss, "agreement_loss", spy)
    nlp.update(examples, drop=0.2)
    assert seen == []
    nlp.update(examples, drop=0.2)
    assert seen == [True]


def test_agreement_warmup_counts_optimizer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sub-batches of one optimizer step (spaCy's accumulate_gradient) count once."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe(
        "ntk_ner", config={"n_passes": 2, "agreement_weight": 50.0, "agreement_warmup_steps": 1}
    )
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    seen = []
    agreement = crf_loss.agreement_loss

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(True)
        return agreement(*args, **kwargs)

    monkeypatch.setattr(crf_loss, "agreement_loss", spy)
    for sub in (examples[:2], examples[2:]):
        ner.update(sub, drop=0.2)
    assert seen == []
    ner.finish_update(optimizer)
    ner.update(examples[:2], drop=0.2)
    assert seen == [True]


def test_missing_and_misaligned_gold_are_masked() -> None:
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner")
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    words = ["I", "like", "London", "."]
    pred = Doc(nlp.vocab, words=words)
    # No annotation at all: nothing to learn, not "O" everywhere.
    missing = Example(pred, Doc(nlp.vocab, words=words))
    scores = ner.model.predict([pred])
    loss, grads = ner.get_loss([missing], scores)
    assert loss == pytest.approx(0.0, abs=1e-5)
    assert numpy.abs(grads[0]).max() < 1e-5
    # Only "London" annotated: the loss differs from the fully annotated doc's.
    partial = Doc(nlp.vocab, words=words, ents=["", "", "B-LOC", ""])
    full = Doc(nlp.vocab, words=words, ents=["O", "O", "B-LOC", "O"])
    loss_partial, _ = ner.get_loss([Example(pred, partial)], scores)
    loss_full, _ = ner.get_loss([Example(pred, full)], scores)
    assert 0 < loss_partial < loss_full
    # Gold tokenized differently ("Lon don"): the misaligned token is left out.
    gold = Doc(
        nlp.vocab,
        words=["I", "like", "Lon", "don", "."],
        spaces=[True, True, False, False, False],
        ents=["O", "B-LOC", "I-LOC", "I-LOC", "O"],
    )
    pred2 = Doc(nlp.vocab, words=["I", "like", "London", "."], spaces=[True, True, False, False])
    eg = Example(pred2, gold)
    assert ner.tag_scheme.gold_index(eg.get_aligned_ner())[0] == 0
    losses = nlp.update([eg], drop=0.0)
    assert numpy.isfinite(losses["ntk_ner"])


def test_float16_scores_reach_the_crf_as_float32(trained: Language) -> None:
    ner = trained.get_pipe("ntk_ner")
    examples = make_examples(trained)
    scores = ner.model.predict([eg.predicted for eg in examples])
    half = [s.astype("float16") for s in scores]
    loss, grads = ner.get_loss(examples, scores)
    loss16, grads16 = ner.get_loss(examples, half)
    assert grads16[0].dtype == numpy.float16
    assert loss16 == pytest.approx(loss, rel=1e-2, abs=1e-2)
    assert [[e[:3] for e in doc] for doc in ner._decode(half)] == [
        [e[:3] for e in doc] for doc in ner._decode(scores)
    ]


def test_empty_docs(trained: Language) -> None:
    doc = trained("")
    assert len(doc.ents) == 0 and len(doc.spans["ntk_ner"]) == 0
    eg = Example(trained.make_doc(""), trained.make_doc(""))
    assert trained.update([eg])["ntk_ner"] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    scheme=st.sampled_from(["BILUO", "BIO"]),
    n_labels=st.integers(1, 3),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 20.0),
)
def test_decoder_yields_valid_entities_with_scores(
    scheme: str, n_labels: int, lengths: List[int], seed: int, scale: float
) -> None:
    ts = TagScheme.build(scheme, [f"L{i}" for i in range(n_labels)])
    K = len(ts.tags)
    rng = numpy.random.default_rng(seed)
    B, T = len(lengths), max(lengths)
    E = (rng.normal(size=(B, T, K)) * scale).astype("float32")
    trans = (rng.normal(size=(K, K)) * scale).astype("float32")
    start, end = (rng.normal(size=(2, K)) * scale).astype("float32")
    lens = numpy.asarray(lengths, dtype="int32")
    params = Params(trans, start, end)
    path = crf.viterbi(Lattice(numpy, E, lens, params, ts))
    for b, n in enumerate(lengths):
        tags = [ts.tags[i] for i in path[b, :n]]
        assert ts.start[path[b, 0]] and ts.end[path[b, n - 1]]
        for i in range(1, n):
            assert ts.allowed[path[b, i - 1], path[b, i]], tags
        if scheme == "BIO":
            assert all(
                not (t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]))
                for i, t in enumerate(tags)
            )
    fb = crf.marginals(Lattice(numpy, E, lens, params, ts))
    ents = ts.entities(path, lens)
    doc_idx, starts, ends = ents.doc, ents.first, ents.last
    assert numpy.all(starts <= ends)
    if len(starts):
        assert numpy.all(ends < lens[doc_idx])
        # Spans of one doc do not overlap.
        for d in set(doc_idx.tolist()):
            s, e = starts[doc_idx == d], ends[doc_idx == d]
            assert numpy.all(s[1:] > e[:-1])
        logp = crf.span_log_probs(Lattice(numpy, E, lens, params, ts), fb, path, ents)
        p = numpy.exp(logp)
        assert p.shape == starts.shape
        # An entity is exactly right only if its first token has its tag: its
        # probability is at most that tag's marginal (the clamp at 1 cannot make it so).
        first_tag = path[doc_idx, starts]
        marginal = numpy.exp(fb.log_marginals[doc_idx, starts, first_tag])
        assert numpy.all(p <= marginal + 1e-4)  # float32 sums of scores up to |14|


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_gold_fast_path_matches_alignment(scheme: str) -> None:
    from spacy.attrs import ENT_IOB, ENT_TYPE

    vocab = spacy.blank("en").vocab
    ts = TagScheme.build(scheme, ["A", "B"])
    ids = {vocab.strings.add(label): i for i, label in enumerate(ts.labels)}
    words = ["w"] * 9
    # Entities of one, two and three tokens, an unknown label, and missing tokens.
    ents = ["B-A", "O", "B-B", "I-B", "I-B", "B-C", "", "B-A", "I-A"]
    doc = Doc(vocab, words=words, ents=ents)
    slow = ts.gold_index(Example(doc.copy(), doc).get_aligned_ner())
    iob, types = doc.to_array([ENT_IOB, ENT_TYPE]).T
    label = numpy.asarray([ids.get(h, -1) for h in types.tolist()])
    fast = ts.tags_from_iob(iob, label).tolist()
    assert fast == slow
    assert fast[5] == -1 and fast[6] == -1


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_crf_gradients_match_finite_differences(scheme: str) -> None:
    ts = TagScheme.build(scheme, ["A", "B"])
    K = len(ts.tags)
    rng = numpy.random.default_rng(1)
    lengths = numpy.asarray([5, 3], dtype="int32")
    E = rng.normal(size=(2, 5, K))
    trans, start, end = rng.normal(size=(K, K)), rng.normal(size=K), rng.normal(size=K)
    ones = numpy.ones(2)

    def log_z(E_: numpy.ndarray, trans_: numpy.ndarray) -> float:
        return float(
            crf.forward(Lattice(numpy, E_, lengths, Params(trans_, start, end), ts))[1].sum()
        )

    params = Params(trans, start, end)
    fb = crf.marginals(Lattice(numpy, E, lengths, params, ts))
    log_m = fb.log_marginals
    counts = crf_loss.transition_counts(Lattice(numpy, E, lengths, params, ts), fb, ones)
    eps = 1e-5
    for bi, t, j in [(0, 0, 1), (0, 4, 0), (1, 1, 2), (1, 2, K - 1)]:
        dE = numpy.zeros_like(E)
        dE[bi, t, j] = eps
        numeric = (log_z(E + dE, trans) - log_z(E - dE, trans)) / (2 * eps)
        assert numeric == pytest.approx(numpy.exp(log_m[bi, t, j]), abs=1e-6)
    for i, j in zip(*numpy.nonzero(ts.allowed)):
        dT = numpy.zeros_like(trans)
        dT[i, j] = eps
        numeric = (log_z(E, trans + dT) - log_z(E, trans - dT)) / (2 * eps)
        assert numeric == pytest.approx(counts[i, j], abs=1e-6)


@pytest.mark.gpu
def test_trains_and_decodes_on_gpu() -> None:
    from thinc.api import NumpyOps, set_current_ops

    spacy.require_gpu(0)
    try:
        nlp = train({"n_passes": 2, "agreement_weight": 1.0}, steps=60)
        assert type(nlp.get_pipe("ntk_ner").model.ops).__name__ == "CupyOps"
        for doc, (_, gold) in zip(nlp.pipe([t for t, _ in TRAIN]), TRAIN):
            assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == gold
            assert all(0.0 <= s <= 1.0 for s in doc.spans["ntk_ner"].attrs["scores"])
    finally:
        set_current_ops(NumpyOps())


# ---- long docs in windows, whitespace tokens


def random_component(scheme: str, seed: int, dtype: str = "float64") -> NTKEntityRecognizer:
    """An ntk_ner with 3 labels and random CRF scores (the encoder is not used)."""
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner", config={"scheme": scheme})
    for label in ("A", "B", "C"):
        ner.add_label(label)
    nlp.initialize()
    rng = numpy.random.default_rng(seed)
    for name in ("transitions", "start", "end"):
        shape = ner.model.get_param(name).shape
        ner.model.set_param(name, rng.normal(size=shape).astype(dtype))
    return ner


def random_emissions(
    ner: NTKEntityRecognizer, lengths: List[int], seed: int, dtype: str = "float64"
) -> List[numpy.ndarray]:
    """Emissions with O favoured, so that docs hold entities of a few tokens."""
    rng = numpy.random.default_rng(seed)
    K = len(ner.tag_scheme.tags)
    out = []
    for n in lengths:
        e = rng.normal(size=(n, K)) * 2.0
        e[:, 0] += 3.0
        out.append(e.astype(dtype))
    return out


def exact(ner: NTKEntityRecognizer, emissions: List[numpy.ndarray], *spaces: Any) -> List[Any]:
    saved = windows.WINDOW
    windows.WINDOW = 10**9
    try:
        return ner._decode(emissions, *spaces)
    finally:
        windows.WINDOW = saved


def by_span(doc_ents: List[Tuple[int, int, int, float]]) -> Dict[Tuple[int, int, int], float]:
    return {(s, e, lab): p for s, e, lab, p in doc_ents}


LONG = [3000, 1200, 700, windows.WINDOW + 1, windows.WINDOW, 40, 200]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
@pytest.mark.parametrize("seed", [0, 1])
def test_windows_give_the_exact_entities_and_scores(scheme: str, seed: int) -> None:
    # In float64 the windows' only difference from exact decoding is the context cut
    # off beyond 64 tokens, and that is far below 1e-8 here.
    ner = random_component(scheme, seed)
    emissions = random_emissions(ner, LONG, seed)
    windowed, whole = ner._decode(emissions), exact(ner, emissions)
    assert sum(len(d) for d in whole) > 500
    for w, x in zip(windowed, whole):
        assert [e[:3] for e in w] == [e[:3] for e in x]
        assert numpy.allclose([e[3] for e in w], [e[3] for e in x], atol=1e-8, rtol=0)


def test_windows_in_float32_stay_near_exact_float64() -> None:
    # In float32, exact decoding of a 3,000-token doc itself drifts (by 0.02-0.03 on
    # these scores: its recursions sum thousands of log-scores); windows keep chains short.
    ner64 = random_component("BILUO", 0)
    ner32 = random_component("BILUO", 0, "float32")
    reference = exact(ner64, random_emissions(ner64, LONG, 0))
    windowed = ner32._decode(random_emissions(ner32, LONG, 0, "float32"))
    for w, x in zip(windowed, reference):
        assert [e[:3] for e in w] == [e[:3] for e in x]
        assert numpy.allclose([e[3] for e in w], [e[3] for e in x], atol=5e-3, rtol=0)


def test_the_position_loop_runs_over_the_window_not_the_doc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: List[int] = []
    for name in ("viterbi", "recursions"):
        original = getattr(crf_decode, name)

        def counting(lattice: Lattice, *args: Any, _f: Any = original, **kw: Any) -> Any:
            steps.append(lattice.emissions.shape[1])
            return _f(lattice, *args, **kw)

        monkeypatch.setattr(crf_decode, name, counting)
    ner = random_component("BILUO", 0)
    decoded = ner._decode(random_emissions(ner, [10_000, 100], 0))
    assert len(decoded[0]) > 100 and len(steps) >= 2
    # A fixed bound, not WINDOW: the test must fail if windows are switched off.
    assert max(steps) <= 512


@settings(max_examples=40, deadline=None)
@given(
    scheme=st.sampled_from(["BILUO", "BIO"]),
    n=st.integers(17, 120),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.5, 5.0),
)
def test_stitched_paths_are_valid(scheme: str, n: int, seed: int, scale: float) -> None:
    # Small windows (16 tokens, 4 of overlap) and strong random transitions: many seams.
    ts = TagScheme.build(scheme, ["A", "B"])
    K = len(ts.tags)
    rng = numpy.random.default_rng(seed)
    E = rng.normal(size=(n, K)) * scale
    trans, start, end = rng.normal(size=(K, K)) * scale, *(rng.normal(size=(2, K)) * scale)
    chains = plan_chains(numpy.asarray([n]), 16, overlap=4)
    assert chains.length.max() <= 16 and len(chains.doc) > 1
    paths = []
    for a, length, cs, ce in zip(chains.start, chains.length, chains.cut_start, chains.cut_end):
        lens = numpy.asarray([length], dtype="int32")
        cuts = (numpy.asarray([cs]), numpy.asarray([ce]))
        lattice = Lattice(numpy, E[None, a : a + length], lens, Params(trans, start, end), ts, cuts)
        paths.append(crf.viterbi(lattice)[0])
    path = stitch_doc(paths, chains.start)
    if path is None:
        return
    assert len(path) == n and ts.start[path[0]] and ts.end[path[-1]]
    assert all(ts.allowed[path[i - 1], path[i]] for i in range(1, n))


def test_docs_that_windows_cannot_decode_are_decoded_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ner = random_component("BILUO", 3)
    K = len(ner.tag_scheme.tags)
    # A 300-token entity (B-A, I-A..., L-A): longer than the windows' overlap.
    E = numpy.zeros((2000, K))
    E[:, 0] = 5.0
    E[600, 1], E[601:899, 2], E[899, 3] = 20.0, 20.0, 20.0
    windowed, whole = ner._decode([E]), exact(ner, [E])
    assert (600, 900, 0) in by_span(windowed[0])
    assert by_span(windowed[0]) == pytest.approx(by_span(whole[0]), abs=1e-12)
    # Windows that agree at no position of a seam: the doc is decoded whole.
    emissions = random_emissions(ner, [1500, 90], 3)
    monkeypatch.setattr(windows, "stitch_doc", lambda paths, starts: None)
    assert ner._decode(emissions) == exact(ner, emissions)


def test_whitespace_tokens_are_never_in_entities() -> None:
    ner = random_component("BILUO", 0)
    words = ["a", "\n", "b", "c", "  ", "d", "\n\n", "e", "f", " ", "g"] * 80
    docs = [Doc(ner.vocab, words=words), Doc(ner.vocab, words=["   "])]
    spaces = space_masks(docs)
    assert spaces is not None
    # Emissions that want entities everywhere: without the mask they cover the spaces.
    K = len(ner.tag_scheme.tags)
    emissions = [numpy.full((len(d), K), 3.0) - numpy.eye(K)[0] * 6 for d in docs]
    assert any(spaces[0][s:e].any() for s, e, *_ in ner._decode(emissions)[0])
    for decoded in (ner._decode(emissions, spaces), exact(ner, emissions, spaces)):
        assert decoded[1] == []
        assert decoded[0] and not any(spaces[0][s:e].any() for s, e, *_ in decoded[0])


def test_whitespace_docs_and_line_breaks(trained: Language) -> None:
    for text in ["   ", "\n", " \n\t "]:
        doc = trained(text)
        assert len(doc.spans["ntk_ner"]) == 0 and len(doc.ents) == 0
    doc = trained("I like London \n\n and Berlin .\nBerlin is big")
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("London", "LOC"),
        ("Berlin", "LOC"),
        ("Berlin", "LOC"),
    ]


def _brute_force_partial_loss(
    E: numpy.ndarray, ner: NTKEntityRecognizer, gold: List[int], w: float
) -> Tuple[float, numpy.ndarray]:
    """The partial-label loss and its gradient for one doc, over every tag sequence:
    -log of the weighted sum over sequences that keep the gold (a token tagged O may
    take another tag at weight w each) plus log Z."""
    trans, start, end = (numpy.asarray(a, dtype="float64") for a in ner._crf_params())
    n, K = E.shape
    free, kept = [], []
    for seq, s in scored_paths(ner.tag_scheme, E, trans, start, end):
        weight = 1.0
        for g, y in zip(gold, seq):
            if g >= 0 and y != g:
                weight *= w if g == 0 else 0.0
        free.append((seq, s))
        if weight > 0:
            kept.append((seq, s + numpy.log(weight)))

    def log_z_and_marginals(items: List[Tuple[Any, float]]) -> Tuple[float, numpy.ndarray]:
        log_z = numpy.logaddexp.reduce([s for _, s in items])
        marg = numpy.zeros((n, K))
        for seq, s in items:
            marg[numpy.arange(n), seq] += numpy.exp(s - log_z)
        return float(log_z), marg

    z_free, m_free = log_z_and_marginals(free)
    z_kept, m_kept = log_z_and_marginals(kept)
    return z_free - z_kept, m_free - m_kept


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_o_unknown_weight_loss_matches_brute_force(scheme: str, w: float) -> None:
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner", config={"scheme": scheme, "o_unknown_weight": w})
    words = ["I", "like", "London", "."]
    gold_doc = Doc(nlp.vocab, words=words, ents=["O", "", "B-LOC", "O"])
    nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=words), gold_doc)])
    ts = ner.tag_scheme
    rng = numpy.random.default_rng(0)
    trans, start, end = ner._crf_params()
    trans[...] = rng.normal(size=trans.shape)
    start[...] = rng.normal(size=start.shape)
    end[...] = rng.normal(size=end.shape)
    E = rng.normal(size=(len(words), len(ts.tags))).astype("float32") * 2
    eg = Example(Doc(nlp.vocab, words=words), gold_doc)
    loss, grads = ner.get_loss([eg], [E])
    gold = [0, -1, ts.tags.index("U-LOC" if scheme == "BILUO" else "B-LOC"), 0]
    ref_loss, ref_grad = _brute_force_partial_loss(E.astype("float64"), ner, gold, w)
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    numpy.testing.assert_allclose(grads[0], ref_grad, atol=1e-5)


def test_o_unknown_weight_0_is_the_plain_loss_and_1_is_missing_gold() -> None:
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ntk_ner")
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    scores = ner.model.predict([eg.predicted for eg in examples])
    plain, _ = ner.get_loss(examples, scores)
    ner.cfg["o_unknown_weight"] = 1.0
    unknown, _ = ner.get_loss(examples, scores)
    # Gold with every O made missing: the reference for weight 1.
    missing = []
    for eg in examples:
        ents = [t.ent_iob_ + ("-" + t.ent_type_ if t.ent_type_ else "") for t in eg.reference]
        ents = ["" if e == "O" else e for e in ents]
        words = [t.text for t in eg.reference]
        missing.append(Example(eg.predicted, Doc(nlp.vocab, words=words, ents=ents)))
    ner.cfg["o_unknown_weight"] = 0.0
    assert ner.get_loss(missing, scores)[0] == pytest.approx(unknown, rel=1e-5)
    assert plain > unknown
    ner.cfg["o_unknown_weight"] = 1e-12
    assert ner.get_loss(examples, scores)[0] == pytest.approx(plain, rel=1e-5)


def test_a_docs_entities_and_scores_do_not_depend_on_its_batch() -> None:
    """On the CPU a doc scores the same bit for bit in any batch (so a run resumed with
    another --batch-size, or on another engine, writes the same): docs of many lengths,
    one past the window, in batches of 1, 8, 64 and 1000."""
    nlp, examples = train_pipeline(app_lib_examples, steps=5, drop=0.2, n_train=10)
    texts = [eg.reference.text for eg in examples]
    texts += [" and ".join(texts[i : i + k]) for i, k in [(0, 2), (3, 5), (7, 9), (2, 30)]]
    texts.append(" then ".join(texts[:30] * 5))  # over 512 tokens: decoded in windows

    def scored(batch_size: int) -> List[Any]:
        return [
            (
                [(s.start, s.end, s.label_) for s in d.spans["ntk_ner"]],
                d.spans["ntk_ner"].attrs["scores"],
            )
            for d in nlp.pipe(texts, batch_size=batch_size)
        ]

    one = scored(1)
    assert sum(len(spans) for spans, _ in one) > 100
    for batch_size in (8, 64, 1000):
        assert scored(batch_size) == one
