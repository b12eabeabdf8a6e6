"""The transformer path: mixed precision's gradient, one encoder pass per update, and
the encoders that n_passes > 1 cannot use. On the CPU, with a tiny random BERT."""

from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.training.loop import subdivide_batch
from spacy.util import load_model_from_config
from thinc.api import Config, fix_random_seed
from util import load_script

REPO = Path(__file__).resolve().parent.parent
TRAIN = [
    ("Python runs on Linux and uses HTTP .", [(0, 6, "LANG"), (15, 20, "OS"), (30, 34, "PROTO")]),
    ("Linux is a kernel written in C .", [(0, 5, "OS"), (29, 30, "LANG")]),
    ("HTTP and FTP move files between hosts .", [(0, 4, "PROTO"), (9, 12, "PROTO")]),
    ("Windows ships with a C compiler .", [(0, 7, "OS"), (21, 22, "LANG")]),
    ("Rust and Go compile to machine code .", [(0, 4, "LANG"), (9, 11, "LANG")]),
    ("TCP sits under HTTP on Linux .", [(0, 3, "PROTO"), (15, 19, "PROTO"), (23, 28, "OS")]),
]
# thinc's autocast asks for CUDA; on the CPU it warns and runs in float32, which is
# what these tests want (the gradient scaler is what they emulate).
CPU_AUTOCAST = "ignore:CUDA is not available or torch_xla is imported. Disabling autocast"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    make_random_encoder = load_script("make_encoder").make_random_encoder
    out = tmp_path_factory.mktemp("encoder") / "bert"
    return make_random_encoder(out, [t for t, _ in TRAIN], "tiny")  # type: ignore[no-any-return]


def trf_config(encoder: Path, **ntk_ner: Any) -> Config:
    config = Config().from_disk(REPO / "configs" / "trf.cfg")
    config["components"]["ntk_ner"]["model"]["tok2vec"]["name"] = str(encoder)
    config["components"]["ntk_ner"].update(ntk_ner)
    return config


def make_examples(nlp: Language) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN]


def torch_params(nlp: Language) -> Iterator[Any]:
    for node in nlp.get_pipe("ntk_ner").model.walk():
        for shim in node.shims:
            yield from shim._model.parameters()


@pytest.fixture
def cpu_grad_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let thinc's gradient scaler scale CPU tensors: the arithmetic is the GPU's."""
    from thinc.shims.pytorch_grad_scaler import PyTorchGradScaler

    def scale_tensor(self: Any, tensor: Any, per_device: Dict[Any, Any], inplace: bool) -> Any:
        scale = self._scale.to(tensor.device)
        return tensor.mul_(scale) if inplace else tensor * scale

    monkeypatch.setattr(PyTorchGradScaler, "_scale_tensor", scale_tensor)


def step_gradient(nlp: Language, config: Config, examples: List[Example]) -> numpy.ndarray:
    """The transformer's gradient over one optimizer step of `config`'s training: the
    batch split into `accumulate_gradient` sub-batches, one `update` each."""
    training = config["training"]
    for p in torch_params(nlp):
        p.grad = None
    fix_random_seed(0)
    for sub in subdivide_batch(examples, training["accumulate_gradient"]):
        nlp.get_pipe("ntk_ner").update(sub, drop=training["dropout"])
    # The pooler takes no part in token vectors: it has no gradient.
    grads = [p.grad.detach().numpy().ravel() for p in torch_params(nlp) if p.grad is not None]
    return numpy.concatenate(grads)


@pytest.mark.filterwarnings(CPU_AUTOCAST)
def test_mixed_precision_keeps_the_gradient_of_trf_cfg(
    encoder: Path, cpu_grad_scaling: None
) -> None:
    """One optimizer step of configs/trf.cfg as shipped (mixed precision, its n_passes and
    accumulate_gradient): the transformer's gradient with grad scaling equals the one
    without. thinc unscales every accumulated gradient at each backprop call, so this
    holds only when a step backprops once."""
    config = trf_config(encoder)
    assert config["components"]["ntk_ner"]["model"]["tok2vec"]["mixed_precision"] is True
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    shims = [s for node in nlp.get_pipe("ntk_ner").model.walk() for s in node.shims]
    assert len(shims) == 1 and shims[0]._grad_scaler._enabled
    scaled = step_gradient(nlp, config, examples)
    shims[0]._grad_scaler._enabled = False
    reference = step_gradient(nlp, config, examples)
    assert numpy.abs(reference).max() > 0
    error = numpy.linalg.norm(scaled - reference) / numpy.linalg.norm(reference)
    assert error < 1e-5, f"relative error {error:.3g} of the scaled gradient"


@pytest.mark.parametrize("hf_dropout", [0.0, 0.1])
def test_passes_are_one_encoder_call_with_their_own_dropout(
    encoder: Path, monkeypatch: pytest.MonkeyPatch, hf_dropout: float
) -> None:
    """n_passes = 2 runs the encoder once over the batch repeated twice: each copy gets its
    own dropout mask (the transformer's own hidden and attention dropout), and
    without dropout the copies are equal."""
    config = trf_config(encoder, n_passes=2, agreement_weight=1.0, agreement_warmup_steps=0)
    tok2vec = config["components"]["ntk_ner"]["model"]["tok2vec"]
    tok2vec["mixed_precision"] = False
    tok2vec["transformer_config"] = {
        "hidden_dropout_prob": hf_dropout,
        "attention_probs_dropout_prob": hf_dropout,
    }
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("ntk_ner")
    calls: List[List[Any]] = []
    seen: List[List[numpy.ndarray]] = []
    begin_update = ner.model.begin_update

    def spy(docs: List[Any]) -> Any:
        calls.append(list(docs))
        out, backprop = begin_update(docs)
        seen.append([numpy.array(x) for x in out])
        return out, backprop

    monkeypatch.setattr(type(ner.model), "begin_update", lambda self, docs: spy(docs))
    n = len(examples)
    ner.update(examples, drop=hf_dropout)
    assert len(calls) == 1
    assert [d.text for d in calls[0]] == [eg.predicted.text for eg in examples] * 2
    first, second = seen[0][:n], seen[0][n:]
    gap = max(float(numpy.abs(a - b).max()) for a, b in zip(first, second))
    if hf_dropout:
        assert gap > 1e-3
    else:
        assert gap < 1e-5


def listener_config() -> Dict[str, Any]:
    width = 32
    return {
        "nlp": {"lang": "en", "pipeline": ["tok2vec", "ntk_ner"]},
        "components": {
            "tok2vec": {
                "factory": "tok2vec",
                "model": {
                    "@architectures": "spacy.HashEmbedCNN.v2",
                    "pretrained_vectors": None,
                    "width": width,
                    "depth": 1,
                    "embed_size": 300,
                    "window_size": 1,
                    "maxout_pieces": 2,
                    "subword_features": True,
                },
            },
            "ntk_ner": {
                "factory": "ntk_ner",
                "n_passes": 2,
                "model": {
                    "@architectures": "spacy_ntk_ner.TokenClassifier.v1",
                    "tok2vec": {
                        "@architectures": "spacy.Tok2VecListener.v1",
                        "width": width,
                        "upstream": "*",
                    },
                },
            },
        },
    }


LISTENER_ERROR = r"\[ntk_ner\] n_passes = 2 .*spacy\.Tok2VecListener.*Embed the encoder"


def test_passes_with_a_listener_are_refused_at_initialize() -> None:
    nlp = load_model_from_config(Config(listener_config()), auto_fill=True, validate=True)
    examples = make_examples(nlp)
    with pytest.raises(ValueError, match=LISTENER_ERROR):
        nlp.initialize(lambda: examples)


def test_passes_with_a_listener_are_refused_at_update() -> None:
    """An `n_passes` set after initialize (given at load, or a resumed run) is caught too."""
    config = listener_config()
    config["components"]["ntk_ner"]["n_passes"] = 1
    nlp = load_model_from_config(Config(config), auto_fill=True, validate=True)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    nlp.update(examples)  # n_passes = 1 with a listener is fine
    nlp.get_pipe("ntk_ner").cfg["n_passes"] = 2
    with pytest.raises(ValueError, match=LISTENER_ERROR):
        nlp.update(examples)


def test_trf_cfg_explains_accumulate_gradient() -> None:
    text = (REPO / "configs" / "trf.cfg").read_text()
    config = Config().from_str(text)
    assert config["training"]["accumulate_gradient"] == 1
    assert "backprop" in text.split("accumulate_gradient")[0].rsplit("[training]", 1)[-1]


@pytest.mark.gpu
def test_trf_cfg_trains_with_mixed_precision_on_gpu(encoder: Path) -> None:
    """A short trf.cfg training on the GPU with mixed precision on: the loss falls."""
    from thinc.api import NumpyOps, set_current_ops

    spacy.require_gpu(0)
    try:
        config = trf_config(encoder, agreement_warmup_steps=0)
        config["training"]["optimizer"]["learn_rate"] = 0.001
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
        examples = make_examples(nlp)
        optimizer = nlp.initialize(lambda: examples)
        fix_random_seed(0)
        losses = [nlp.update(examples, sgd=optimizer, drop=0.1)["ntk_ner"] for _ in range(30)]
        assert all(numpy.isfinite(losses))
        assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    finally:
        set_current_ops(NumpyOps())
