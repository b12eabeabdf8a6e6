"""Model architectures of the `ntk_ner` component, and the optimizer step that updates
their head at its own learning rate."""

from typing import Any, Callable, List, Optional, Set, Tuple, cast

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    Linear,
    Model,
    Optimizer,
    chain,
    glorot_uniform_init,
    with_array,
    zero_init,
)
from thinc.types import Floats2d

from ..errors import UserError

ARCH_NAME = "spacy_ntk_ner.TokenClassifier.v1"
ARCH_NAME_V2 = "spacy_ntk_ner.TokenClassifier.v2"
# The head's parameters are updated at this multiple of the optimizer's learning rate
# (`head_scaled_optimizer`).
HEAD_LR_SCALE = "head_lr_scale"


@registry.architectures(ARCH_NAME)
def build_token_classifier(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None
) -> Model[List[Doc], List[Floats2d]]:
    """Score every token's entity tags, and hold the CRF's transition scores.

    The forward pass gives one `(n_tokens, n_tags)` array of emission scores per doc.
    The CRF's parameters are the model's own: `transitions (n_tags, n_tags)`, `start`
    and `end (n_tags,)`. The component reads them to decode and adds their gradients
    with `inc_grad`, so the optimizer updates them with the rest. The linear layer
    starts at zero and learns at the optimizer's rate.

    tok2vec (Model[List[Doc], List[Floats2d]]): The encoder: a tok2vec, a listener, or
        a transformer such as `spacy-transformers.Tok2VecTransformer.v3`.
    nO (Optional[int]): The number of tags; set from the labels at initialization.
    RETURNS (Model[List[Doc], List[Floats2d]]): The model.
    """
    return _build(tok2vec, nO, zero_init, 1.0)


@registry.architectures(ARCH_NAME_V2)
def build_token_classifier_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
    head_lr_scale: float = 10.0,
) -> Model[List[Doc], List[Floats2d]]:
    """`TokenClassifier.v1` for pretrained encoders: the head starts random and
    learns faster than the encoder.

    A zero-initialized head passes no gradient to the encoder until it has grown, and
    at a transformer's fine-tuning rate it grows slowly; so the linear layer starts
    Glorot-uniform (most of the gain in benchmarks/README.md), and it and the CRF's
    transition scores are updated at `head_lr_scale` times the optimizer's rate
    (thinc's optimizer has one rate; the component passes the scale to it for these
    parameters only).

    tok2vec (Model[List[Doc], List[Floats2d]]): The encoder.
    nO (Optional[int]): The number of tags; set from the labels at initialization.
    head_lr_scale (float): Learning-rate multiplier of the linear layer and the CRF.
    RETURNS (Model[List[Doc], List[Floats2d]]): The model.
    """
    if head_lr_scale <= 0:
        raise UserError(f"[{ARCH_NAME_V2}] head_lr_scale must be > 0, got {head_lr_scale}")
    return _build(tok2vec, nO, glorot_uniform_init, float(head_lr_scale))


def _build(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int],
    init_W: Callable,
    head_lr_scale: float,
) -> Model[List[Doc], List[Floats2d]]:
    t2v_width = tok2vec.maybe_get_dim("nO")
    output_layer = Linear(nO=nO, nI=t2v_width, init_W=init_W)
    scorer: Model[List[Doc], List[Floats2d]] = chain(tok2vec, with_array(output_layer))
    model: Model[List[Doc], List[Floats2d]] = Model(
        "ntk_token_classifier",
        _forward,
        init=_init,
        layers=[scorer],
        dims={"nO": nO},
        params={"transitions": None, "start": None, "end": None},
        refs={"tok2vec": tok2vec, "output_layer": output_layer},
        attrs={HEAD_LR_SCALE: head_lr_scale},
    )
    return model


def _forward(
    model: Model[List[Doc], List[Floats2d]], docs: List[Doc], is_train: bool
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], List[Doc]]]:
    return model.layers[0](docs, is_train)


def _init(
    model: Model[List[Doc], List[Floats2d]],
    X: Optional[List[Doc]] = None,
    Y: Optional[List[Floats2d]] = None,
) -> None:
    n_tags = model.get_dim("nO")
    output_layer = model.get_ref("output_layer")
    if not output_layer.has_dim("nO"):
        output_layer.set_dim("nO", n_tags)
    model.layers[0].initialize(X=X)
    for name, shape in (
        ("transitions", (n_tags, n_tags)),
        ("start", (n_tags,)),
        ("end", (n_tags,)),
    ):
        model.set_param(name, model.ops.alloc(shape, dtype="float32"))


def head_scaled_optimizer(sgd: Optimizer, model: Model) -> Optimizer:
    """The optimizer that updates `model`: `sgd`, or, for a model that sets
    `attrs["head_lr_scale"]` (`TokenClassifier.v2`), `sgd` with its linear layer and
    CRF updated at that multiple of the rate.

    sgd (Optimizer): The optimizer.
    model (Model): A model built by one of the architectures above.
    RETURNS (Optimizer): The optimizer to pass to `model.finish_update`.
    """
    scale = float(model.attrs.get(HEAD_LR_SCALE, 1.0))
    if scale == 1.0:
        return sgd
    head = {model.id, model.get_ref("output_layer").id}
    return cast(Optimizer, _HeadScaledOptimizer(sgd, head, scale))


class _HeadScaledOptimizer:
    """Passes every update on to `sgd`, scaling the learning rate of the parameters
    of the nodes in `head`. Anything else (averages, the rate itself) is `sgd`'s."""

    def __init__(self, sgd: Optimizer, head: Set[int], scale: float) -> None:
        self._sgd = sgd
        self._head = head
        self._scale = scale

    def __call__(
        self, key: Tuple[int, str], weights: Any, gradient: Any, *, lr_scale: float = 1.0
    ) -> Tuple[Any, Any]:
        if key[0] in self._head:
            lr_scale *= self._scale
        return self._sgd(key, weights, gradient, lr_scale=lr_scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sgd, name)
