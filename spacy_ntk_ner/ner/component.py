"""The `ntk_ner` pipe: token-classification NER with a linear-chain CRF.

An encoder gives a vector per token, a linear layer scores each token's tags
(BILUO or BIO over the labels), and a CRF with learned transition scores decodes
them with Viterbi over the allowed transitions only, so the output is always a
valid entity sequence. Forward-backward gives each entity the marginal probability
of exactly that span. Training can add the self-regularization of Nguyen et al.
(ASE 2023) for noisy labels: `n_passes` forward passes with their own dropout, and
an agreement loss (weight `agreement_weight`) that pulls each pass's tag marginals
towards their mean. The math is in `_crf/`; the factory and settings in
`factory.py` and `settings.py`.

This module imports no torch or transformers: spaCy imports it whenever it builds
a `Language`.
"""

from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, cast

import numpy
import srsly
from spacy import util
from spacy.attrs import ENT_IOB, ENT_TYPE, ORTH
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.span_ruler import prioritize_existing_ents_filter
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import SimpleFrozenList
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d

from ..confidence.platt import IDENTITY, Calibration
from ..errors import UserError
from ._crf.decode import Decoder
from ._crf.lattice import Lattice, Params
from ._crf.loss import passes_loss
from ._crf.tag_scheme import TagScheme
from ._crf.windows import length_buckets, space_masks
from .models import head_scaled_optimizer
from .saved import check_weights, learned_from_cfg, load_weights, read_json
from .settings import SETTINGS, check_passes_encoder, check_settings

# Decoded entities of one doc: first token, end token (exclusive), label index, score.
DocEntities = List[Tuple[int, int, int, float]]


class NTKEntityRecognizer(TrainablePipe):
    """Token-classification NER with a CRF, calibrated entity scores and noise-robust
    training."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "ntk_ner",
        *,
        scheme: str = SETTINGS["scheme"],
        n_passes: int = SETTINGS["n_passes"],
        agreement_weight: float = SETTINGS["agreement_weight"],
        agreement_warmup_steps: int = SETTINGS["agreement_warmup_steps"],
        o_unknown_weight: float = SETTINGS["o_unknown_weight"],
        threshold: float = SETTINGS["threshold"],
        spans_key: str = SETTINGS["spans_key"],
        overwrite_ents: bool = SETTINGS["overwrite_ents"],
        scorer: Optional[Callable] = None,
    ) -> None:
        """Initialize the component. See `make_ntk_ner` for the settings."""
        settings = {
            "scheme": scheme,
            "n_passes": n_passes,
            "agreement_weight": agreement_weight,
            "agreement_warmup_steps": agreement_warmup_steps,
            "o_unknown_weight": o_unknown_weight,
            "threshold": threshold,
            "spans_key": spans_key,
            "overwrite_ents": overwrite_ents,
        }
        check_settings(settings)
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            **settings,
            # Platt scaling of the entity scores, fitted by `confidence.calibrate`.
            "calibration": list(IDENTITY),
            # Maps of their own for labels with enough dev entities, by label name.
            "calibration_per_label": {},
        }
        self._tag_scheme: Optional[TagScheme] = None
        self._n_updates = 0

    @property
    def labels(self) -> Tuple[str, ...]:
        """RETURNS (Tuple[str, ...]): The entity labels."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """RETURNS (List[str]): The labels, as `spacy init labels` saves them."""
        return list(self.labels)

    @property
    def tag_scheme(self) -> TagScheme:
        """RETURNS (TagScheme): The tags and allowed transitions for the labels."""
        ts = self._tag_scheme
        if ts is None or ts.labels != self.labels or ts.name != self.cfg["scheme"]:
            ts = self._tag_scheme = TagScheme.build(self.cfg["scheme"], self.labels)
        return ts

    def add_label(self, label: str) -> int:
        """Add an entity label before the model is initialized.

        label (str): The label.
        RETURNS (int): 0 if it was there already, else 1.
        """
        if not isinstance(label, str) or not label.strip():
            raise UserError(f"[{self.name}] invalid entity label: {label!r}")
        if label in self.cfg["labels"]:
            return 0
        if self.model.has_dim("nO") and self.model.get_dim("nO") is not None:
            raise UserError(
                f"[{self.name}] cannot add label {label!r}: the model is already "
                "initialized with its labels; initialize a new component instead"
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Set the labels, from `labels` or else from the examples' entities, and
        initialize the model.

        get_examples (Callable[[], Iterable[Example]]): Returns training examples.
        nlp (Optional[Language]): The pipeline.
        labels (Optional[Sequence[str]]): The labels, as `spacy init labels` writes them.
        """
        validate_get_examples(get_examples, "NTKEntityRecognizer.initialize")
        check_passes_encoder(self.name, self.cfg["n_passes"], self.model)
        if labels is not None:
            for label in labels:
                self.add_label(label)
        else:
            seen: Set[str] = set()
            for eg in get_examples():
                seen.update(ent.label_ for ent in eg.reference.ents)
            for label in sorted(seen):
                self.add_label(label)
        if not self.labels:
            raise UserError(
                f"[{self.name}] no entity labels: the training examples hold no entities "
                "and no `labels` were given in [initialize.components]"
            )
        doc_sample = [eg.reference for eg in islice(get_examples(), 10)]
        self.model.set_dim("nO", len(self.tag_scheme.tags))
        self.model.initialize(X=doc_sample)

    # ---- prediction

    def predict(self, docs: Iterable[Doc]) -> List[DocEntities]:
        """Decode the entities of a batch of docs. One batching rule for the encoder
        and the CRF: the docs, sorted by length, are encoded in the groups of
        `length_buckets` (at most `PADDED_BUDGET` padded tokens each), so an encoder
        that pads (a transformer) pads little; the CRF then decodes the batch at once,
        in the same groups. `pipe` is spaCy's: `predict` on each batch of `batch_size`
        docs, then `set_annotations`, docs out in their input order.

        docs (Iterable[Doc]): The docs.
        RETURNS (List[DocEntities]): Per doc, `(start, end, label index, score)` of
            each entity.
        """
        docs = list(docs)
        emissions: List[Floats2d] = [self.model.ops.alloc2f(0, 0) for _ in docs]
        for bucket in length_buckets([len(doc) for doc in docs]):
            for i, scores in zip(bucket, self.model.predict([docs[i] for i in bucket])):
                emissions[i] = scores
        return self._decode(emissions, space_masks(docs))

    def _decode(
        self, emissions: List[Floats2d], spaces: Optional[List[numpy.ndarray]] = None
    ) -> List[DocEntities]:
        """Decode the docs' emissions (`Decoder`) and calibrate the entities' scores.

        emissions (List[Floats2d]): Each doc's tag scores.
        spaces (Optional[List[numpy.ndarray]]): Per doc, True at whitespace tokens,
            which are tagged O.
        RETURNS (List[DocEntities]): Per doc, its entities in order.
        """
        ops = self.model.ops
        result: List[DocEntities] = [[] for _ in emissions]
        scored = Decoder(ops, self._crf_params(), self.tag_scheme).decode(emissions, spaces)
        if scored is None:
            return result
        probs = self._calibrated(ops.to_numpy(ops.xp.exp(scored.log_probs)), scored.label)
        for d, s, e, lab, p in zip(
            scored.doc.tolist(),
            scored.first.tolist(),
            scored.last.tolist(),
            scored.label.tolist(),
            probs.tolist(),
        ):
            result[d].append((s, e + 1, lab, float(min(max(p, 0.0), 1.0))))
        return result

    def _calibrated(self, probs: numpy.ndarray, label_idx: numpy.ndarray) -> numpy.ndarray:
        """The entities' span probabilities through the fitted calibration: the map of
        their label where it has one, the shared one otherwise."""
        return Calibration.from_cfg(self.cfg).apply(probs, label_idx, self.labels)

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocEntities]) -> None:
        """Set `doc.ents` and the scored SpanGroup `doc.spans[spans_key]`.

        docs (Iterable[Doc]): The docs.
        predictions (List[DocEntities]): What `predict` returned.
        """
        labels = self.labels
        key = self.cfg["spans_key"]
        threshold = self.cfg["threshold"]
        for doc, ents in zip(docs, predictions):
            spans = [Span(doc, s, e, label=labels[lab]) for s, e, lab, _ in ents]
            scores = [score for *_, score in ents]
            doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs={"scores": scores})
            kept = [span for span, score in zip(spans, scores) if score >= threshold]
            if self.cfg["overwrite_ents"]:
                doc.set_ents(kept, default="outside")
            else:
                # The span ruler's rule for overwrite_ents=False: existing entities win.
                merged = prioritize_existing_ents_filter(doc.ents, kept)
                doc.set_ents(merged, default="unmodified")

    # ---- training

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch: `n_passes` forward passes, the CRF loss of each, and
        (after the warm-up) the agreement loss between them.

        The passes are one call of the model on the batch repeated n times: dropout
        is drawn per element, so each copy gets its own, and the model backprops once.
        Under mixed precision that is what keeps the gradient right: thinc's PyTorch
        shim unscales all of the transformer's accumulated gradients at every backprop,
        so a second backprop before the optimizer step would divide the first one's
        gradient by the loss scale again.

        examples (Iterable[Example]): The batch.
        drop (float): Dropout rate.
        sgd (Optional[Optimizer]): Updates the weights if given.
        losses (Optional[Dict[str, float]]): Adds this component's loss to it.
        RETURNS (Dict[str, float]): The losses.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "NTKEntityRecognizer.update")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        n_passes = self.cfg["n_passes"]
        check_passes_encoder(self.name, n_passes, self.model)
        warm = self._n_updates >= self.cfg["agreement_warmup_steps"]
        weight = self.cfg["agreement_weight"] if warm else 0.0
        set_dropout_rate(self.model, drop)
        # Copies, not the same Doc again: spacy-transformers maps tokens to wordpieces
        # by the Doc they belong to.
        copies = [doc.copy() for _ in range(n_passes - 1) for doc in docs]
        outputs, backprop = self.model.begin_update(docs + copies)
        loss, d_outputs, d_params = self._loss(examples, outputs, n_passes, weight)
        backprop(d_outputs)
        for name, grad in zip(Params._fields, d_params):
            self.model.inc_grad(name, grad)
        if sgd is not None:
            self.finish_update(sgd)
        # The one number brought back from the device per update.
        losses[self.name] += float(loss)
        return losses

    def get_loss(
        self, examples: Iterable[Example], scores: List[Floats2d]
    ) -> Tuple[float, List[Floats2d]]:
        """The CRF's negative log-likelihood of the gold tags (tokens without gold
        marginalized out) and its gradient with respect to the emission scores.

        examples (Iterable[Example]): The batch.
        scores (List[Floats2d]): The model's output for it.
        RETURNS (Tuple[float, List[Floats2d]]): The loss and the gradient.
        """
        loss, d_scores, _ = self._loss(list(examples), scores, 1, 0.0)
        return float(loss), d_scores

    def _gold(self, examples: Sequence[Example], T: int) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): `(B, T)`, the gold tag index of each token of the
        examples' predicted docs, -1 where there is none (and at padding)."""
        gold = numpy.full((len(examples), T), -1, dtype="int32")
        ts = self.tag_scheme
        label_ids = {self.vocab.strings.add(label): i for i, label in enumerate(ts.labels)}
        for i, eg in enumerate(examples):
            x, y = eg.predicted, eg.reference
            if len(x) == len(y) and numpy.array_equal(x.to_array(ORTH), y.to_array(ORTH)):
                # Same tokens: read the gold straight from the reference's arrays.
                iob, types = y.to_array([ENT_IOB, ENT_TYPE]).T
                label = numpy.fromiter(
                    (label_ids.get(h, -1) for h in types.tolist()), "int64", len(types)
                )
                gold[i, : len(x)] = ts.tags_from_iob(iob, label)
            else:
                tags = ts.gold_index(eg.get_aligned_ner())
                gold[i, : len(tags)] = tags
        return gold

    def _loss(
        self,
        examples: Sequence[Example],
        outputs: List[Floats2d],
        n_passes: int,
        agreement_weight: float,
    ) -> Tuple[Any, List[Floats2d], Params]:
        """The loss of a batch, its gradient for each output, and the CRF's gradients.

        outputs (List[Floats2d]): The passes' outputs one pass after the other: doc i
            of pass p at `p * len(examples) + i`.
        n_passes (int): The number of passes.
        agreement_weight (float): The agreement loss's weight (0 during the warm-up).
        RETURNS (Tuple[Any, List[Floats2d], Params]): The loss (a scalar on the
            model's device), the gradients of `outputs`, and those of the CRF's params.
        """
        xp = self.model.ops.xp
        d_params = Params(*(xp.zeros_like(p) for p in self._crf_params()))
        d_outputs: List[Any] = [None] * len(outputs)
        total = xp.zeros((), dtype="float32")
        n = len(examples)
        for bucket in length_buckets([len(eg.predicted) for eg in examples]):
            index = [p * n + i for p in range(n_passes) for i in bucket]
            loss, d_bucket, grads = self._loss_bucket(
                [examples[i] for i in bucket],
                [outputs[j] for j in index],
                n_passes,
                agreement_weight,
            )
            total = total + loss
            d_params = Params(*(d + g for d, g in zip(d_params, d_bucket)))
            for j, d in zip(index, grads):
                d_outputs[j] = d
        # Empty docs: empty gradients.
        d_outputs = [xp.zeros_like(o) if d is None else d for o, d in zip(outputs, d_outputs)]
        return total, d_outputs, d_params

    def _loss_bucket(
        self,
        examples: Sequence[Example],
        outputs: List[Floats2d],
        n_passes: int,
        agreement_weight: float,
    ) -> Tuple[Any, Params, List[Floats2d]]:
        """The loss of docs of similar length over the passes (`passes_loss`).

        examples (Sequence[Example]): The docs.
        outputs (List[Floats2d]): Their outputs, one pass after the other.
        RETURNS (Tuple[Any, Params, List[Floats2d]]): The loss (a scalar on the
            model's device), the CRF's gradients and those of `outputs`.
        """
        ops = self.model.ops
        xp = ops.xp
        lengths_h = numpy.asarray([len(eg.predicted) for eg in examples], dtype="int32")
        T = int(lengths_h.max())
        gold = xp.asarray(numpy.tile(self._gold(examples, T), (n_passes, 1)))[:, :, None]
        lengths = xp.asarray(numpy.tile(lengths_h, n_passes))
        lattice = Lattice(xp, ops.pad(outputs), lengths, self._crf_params(), self.tag_scheme)
        result = passes_loss(
            lattice, gold, n_passes, self.cfg["o_unknown_weight"], agreement_weight
        )
        grads = result.d_emissions.astype(outputs[0].dtype, copy=False)
        d_outputs = cast(List[Floats2d], ops.unpad(grads, lengths_h.tolist() * n_passes))
        return result.loss, result.d_params, d_outputs

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights with the gradients collected so far. A model that sets
        `attrs["head_lr_scale"]` (`TokenClassifier.v2`) has its linear layer and CRF
        updated at that multiple of the optimizer's rate. Each call is one optimizer
        step: `agreement_warmup_steps` counts these calls.

        sgd (Optimizer): The optimizer.
        """
        self._n_updates += 1
        self.model.finish_update(head_scaled_optimizer(sgd, self.model))

    def _crf_params(self) -> Params:
        """RETURNS (Params): The CRF's scores, the model's params of these names."""
        return Params(*(self.model.get_param(name) for name in Params._fields))

    # ---- serialization. The saved cfg carries every setting, but on load only what was
    # learned (labels, calibration) comes from it: the settings are the config's, so that
    # `spacy.load(path, config=...)` changes them. The scheme must match the weights.

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = SimpleFrozenList()):
        """Load the component from bytes: the labels and calibration it learned, and its
        weights, checked against each other.

        bytes_data (bytes): What `to_bytes` returned.
        exclude (Iterable[str]): Fields to leave out.
        RETURNS (NTKEntityRecognizer): The component.
        """
        source = f"[{self.name}] bytes"
        deserialize = {
            "cfg": lambda b: self._load_learned(read_json(lambda: srsly.json_loads(b), source)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: load_weights(self.model, b, source),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        self._check_weights(source)
        return self

    def from_disk(self, path: Any, *, exclude: Iterable[str] = SimpleFrozenList()):
        """Load the component from a folder: the labels and calibration it learned
        (`cfg`), and its weights (`model`), checked against each other.

        path (Union[str, Path]): The component's folder.
        exclude (Iterable[str]): Fields to leave out.
        RETURNS (NTKEntityRecognizer): The component.
        """
        path = util.ensure_path(path)

        def load_cfg(p: Path) -> None:
            self._load_learned(read_json(lambda: srsly.read_json(p), str(p)), str(p))

        def load_model(p: Path) -> None:
            try:
                data = p.read_bytes()
            except OSError as err:
                raise UserError(f"{p}: the weights cannot be read ({err.strerror})") from None
            load_weights(self.model, data, str(p))

        def load_vocab(p: Path) -> None:
            self.vocab.from_disk(p, exclude=exclude)

        deserialize: Dict[str, Callable[[Path], None]] = {
            "vocab": load_vocab,
            "cfg": load_cfg,
            "model": load_model,
        }
        util.from_disk(path, deserialize, exclude)
        self._check_weights(str(path / "model"))
        return self

    def _load_learned(self, saved: Any, source: str = "") -> None:
        """Take the labels and calibration from a saved cfg; check its scheme."""
        source = source or f"[{self.name}] cfg"
        learned = learned_from_cfg(saved, source, self.name, self.cfg["scheme"])
        self.cfg.update(learned)
        for label in learned["labels"]:
            self.vocab.strings.add(label)
        self._tag_scheme = None

    def _check_weights(self, source: str) -> None:
        self._tag_scheme = None
        check_weights(self.model, self.tag_scheme, source)
