"""The `ntk_ner` component: token-classification NER with a linear-chain CRF.

An encoder gives a vector per token, a linear layer scores each token's tags
(BILUO or BIO over the labels), and a CRF with learned transition scores decodes
them with Viterbi over the allowed transitions only, so the output is always a
valid entity sequence. Forward-backward gives each entity the marginal probability
of exactly that span. Training can add the self-regularization of Nguyen et al.
(ASE 2023) for noisy labels: `n_passes` forward passes with their own dropout, and
an agreement loss (weight `agreement_weight`) that pulls each pass's tag marginals
towards their mean. (The paper's k and alpha; 0.1 pipelines used those names, which
are still read, with a FutureWarning.)

This module imports no torch or transformers: spaCy imports it whenever it builds
a `Language`.
"""

import warnings
from itertools import islice
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    cast,
)

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
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d

from ..confidence.platt import IDENTITY, Calibration
from ..errors import UserError
from ._crf import lattice as crf
from ._crf.lattice import TagScheme
from .models import HEAD_LR_SCALE

# Docs x longest doc that the CRF pads into one array (see `_length_buckets`).
PADDED_BUDGET = 4096
# At prediction a doc longer than WINDOW tokens is decoded in windows of at most WINDOW
# tokens, bucketed with the short docs: the CRF's loops run one Python step (on a GPU,
# a few kernel launches) per position of a bucket's longest chain, so a 10,000-token
# doc, alone in its bucket, took 10,000 steps for one chain. Neighbouring windows share
# 2 * WINDOW_OVERLAP tokens, centred on the seam between them; their Viterbi paths are
# joined where they agree inside that overlap (so the joined path is valid), and each
# entity's probability is computed in the window where it has the most context on both
# sides. A linear-chain CRF's dependence on far positions decays fast, so with 64 tokens
# of context the scores differ from exact decoding by little: measured on WikiSER-like
# text in benchmarks/README.md (`bench_longdocs.py`). WINDOW must be at least
# 4 * WINDOW_OVERLAP, so that a window's two overlaps do not meet.
WINDOW = 512
WINDOW_OVERLAP = 64
# Context (tokens on each side, or the doc's edge) an entity needs in the window that
# scores it; a doc with an entity that has less in every window (one longer than about
# WINDOW_OVERLAP tokens) is decoded exactly instead.
WINDOW_CONTEXT = WINDOW_OVERLAP // 2

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_ntk_ner.TokenClassifier.v1"

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


# Decoded entities of one doc: first token, end token (exclusive), label index, score.
DocEntities = List[Tuple[int, int, int, float]]


@Language.factory(
    "ntk_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "n_passes": 1,
        "agreement_weight": 0.0,
        "agreement_warmup_steps": 0,
        "o_unknown_weight": 0.0,
        "threshold": 0.0,
        "spans_key": "ntk_ner",
        "overwrite_ents": True,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
    },
)
def make_ntk_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    n_passes: int,
    agreement_weight: float,
    agreement_warmup_steps: int,
    o_unknown_weight: float,
    threshold: float,
    spans_key: str,
    overwrite_ents: bool,
    scorer: Optional[Callable],
    k: Optional[int] = None,
    alpha: Optional[float] = None,
    alpha_warmup_steps: Optional[int] = None,
) -> "NTKEntityRecognizer":
    """Create an `ntk_ner` component.

    model (Model[List[Doc], List[Floats2d]]): Gives each token's tag scores and holds
        the CRF transitions (`spacy_ntk_ner.TokenClassifier.v1` or `.v2`).
    scheme (str): "BILUO" or "BIO": the tags the CRF decodes.
    n_passes (int): Forward passes per batch in training, each with its own dropout
        (1: plain).
    agreement_weight (float): Weight of the agreement loss between the passes (0: off).
    agreement_warmup_steps (int): Optimizer steps (`finish_update` calls; with
        `accumulate_gradient = n`, n batches each) before the agreement loss starts.
    o_unknown_weight (float): Partial-label training, for corpora whose O tags
        include missed mentions: at a token tagged O in the training data, every
        other tag has this weight against O's 1 in the gold lattice (0: trust every
        O, the plain loss; 1: an O tells nothing, as a token without gold).
    threshold (float): Entities scored below it stay out of `doc.ents`.
    spans_key (str): Key of the SpanGroup in `doc.spans` holding every decoded
        entity, with their scores in `attrs["scores"]`.
    overwrite_ents (bool): Replace `doc.ents`; if False, keep the entities already
        set and add only those that do not overlap them.
    scorer (Optional[Callable]): Scores the component (`spacy.ner_scorer.v1`).
    k, alpha, alpha_warmup_steps (Optional): The 0.1 names of `n_passes`,
        `agreement_weight` and `agreement_warmup_steps`: used with a
        FutureWarning if given (not null); an error if the new name is set too.
    RETURNS (NTKEntityRecognizer): The component.
    """
    passes = _renamed_settings(
        {
            "n_passes": n_passes,
            "agreement_weight": agreement_weight,
            "agreement_warmup_steps": agreement_warmup_steps,
        },
        {"k": k, "alpha": alpha, "alpha_warmup_steps": alpha_warmup_steps},
    )
    return NTKEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        n_passes=passes["n_passes"],
        agreement_weight=passes["agreement_weight"],
        agreement_warmup_steps=passes["agreement_warmup_steps"],
        o_unknown_weight=o_unknown_weight,
        threshold=threshold,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        scorer=scorer,
    )


class NTKEntityRecognizer(TrainablePipe):
    """Token-classification NER with a CRF, calibrated entity scores and noise-robust
    training."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "ntk_ner",
        *,
        scheme: str = "BILUO",
        n_passes: int = 1,
        agreement_weight: float = 0.0,
        agreement_warmup_steps: int = 0,
        o_unknown_weight: float = 0.0,
        threshold: float = 0.0,
        spans_key: str = "ntk_ner",
        overwrite_ents: bool = True,
        scorer: Optional[Callable] = None,
    ) -> None:
        """Initialize the component. See `make_ntk_ner` for the settings."""
        _check_settings(
            scheme,
            n_passes,
            agreement_weight,
            agreement_warmup_steps,
            o_unknown_weight,
            threshold,
            spans_key,
        )
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "scheme": scheme,
            "n_passes": n_passes,
            "agreement_weight": agreement_weight,
            "agreement_warmup_steps": agreement_warmup_steps,
            "o_unknown_weight": o_unknown_weight,
            "threshold": threshold,
            "spans_key": spans_key,
            "overwrite_ents": overwrite_ents,
            # Platt scaling of the entity scores, fitted by `calibration.calibrate`.
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
            found: Set[str] = set()
            for eg in get_examples():
                found.update(ent.label_ for ent in eg.reference.ents)
            for label in sorted(found):
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
        `_length_buckets` (at most PADDED_BUDGET padded tokens each), so an encoder
        that pads (a transformer) pads little; the CRF then decodes the batch at once,
        in the same groups. `pipe` is spaCy's: `predict` on each batch of `batch_size`
        docs, then `set_annotations`, docs out in their input order.

        docs (Iterable[Doc]): The docs.
        RETURNS (List[DocEntities]): Per doc, `(start, end, label index, score)` of
            each entity.
        """
        docs = list(docs)
        emissions: List[Floats2d] = [self.model.ops.alloc2f(0, 0) for _ in docs]
        for bucket in _length_buckets([len(doc) for doc in docs]):
            for i, scores in zip(bucket, self.model.predict([docs[i] for i in bucket])):
                emissions[i] = scores
        return self._decode(emissions, _space_masks(docs))

    def _decode(
        self, emissions: List[Floats2d], spaces: Optional[List[numpy.ndarray]] = None
    ) -> List[DocEntities]:
        """Viterbi paths of the docs, long ones in windows, in buckets of similar
        length, then the probability of each entity found. Two transfers from the
        device for the whole batch (the paths, then the scores), one to it per bucket
        holding windows (their joined paths), and one more from it (the paths) if some
        docs must be decoded whole after all (see `_decode_round`).

        emissions (List[Floats2d]): Each doc's tag scores.
        spaces (Optional[List[numpy.ndarray]]): Per doc, True at whitespace tokens,
            which are tagged O (as spaCy's `ner` never starts an entity on one).
        RETURNS (List[DocEntities]): Per doc, its entities in order.
        """
        ops = self.model.ops
        xp = ops.xp
        result: List[DocEntities] = [[] for _ in emissions]
        found: List[Any] = []
        docs = [i for i, e in enumerate(emissions) if len(e)]
        # Windows first; the docs they cannot decode (no seam where neighbouring windows
        # agree, or an entity too long for the overlap) are decoded whole.
        for window in (WINDOW, None):
            if docs:
                docs = self._decode_round(emissions, docs, window, spaces, found)
        if not found:
            return result
        log_probs = xp.concatenate([log_p for _, _, log_p in found])
        label_idx = numpy.concatenate([spans[3] for _, spans, _ in found])
        probs = iter(self._calibrated(ops.to_numpy(xp.exp(log_probs)), label_idx).tolist())
        for bucket, (doc_idx, starts, ends, label_idx), _ in found:
            for d, s, e, lab in zip(
                doc_idx.tolist(), starts.tolist(), ends.tolist(), label_idx.tolist()
            ):
                p = next(probs)
                result[bucket[d]].append((s, e + 1, lab, float(min(max(p, 0.0), 1.0))))
        return result

    def _calibrated(self, probs: numpy.ndarray, label_idx: numpy.ndarray) -> numpy.ndarray:
        """The entities' span probabilities through the fitted calibration: the map of
        their label where it has one, the shared one otherwise."""
        return Calibration.from_cfg(self.cfg).apply(probs, label_idx, self.labels)

    def _decode_round(
        self,
        emissions: List[Floats2d],
        docs: List[int],
        window: Optional[int],
        spaces: Optional[List[numpy.ndarray]],
        found: List[Any],
    ) -> List[int]:
        """Decode the docs at the indices `docs`, those longer than `window` (None:
        none) in overlapping windows, and add `(docs, entities, log-probabilities)` to
        `found`, the entities in doc order.

        RETURNS (List[int]): The docs left undecoded, for an exact round.
        """
        ops = self.model.ops
        xp = ops.xp
        lengths = numpy.asarray([len(emissions[d]) for d in docs], dtype="int64")
        chains = _plan_chains(lengths, window)
        buckets = _length_buckets(chains.length.tolist())
        decoded = [
            self._decode_bucket(
                [emissions[docs[c]][a:z] for c, a, z in chains.slices(b)],
                chains,
                b,
                _bucket_spaces(spaces, docs, chains, b),
            )
            for b in buckets
        ]
        paths = ops.to_numpy(xp.concatenate([path.ravel() for _, _, path, _ in decoded]))
        doc_paths, failed = _stitch(_chain_paths(paths, decoded, buckets, chains), chains)
        ents = _flat_spans(doc_paths, self.tag_scheme)
        owner = _assign_chains(chains, lengths, ents, window)
        failed[ents.doc[owner < 0]] = True
        keep = ~failed[ents.doc]
        ents, owner = crf.Entities(*(x[keep] for x in ents)), owner[keep]
        if len(owner):
            log_p = self._chain_log_probs(decoded, buckets, chains, doc_paths, ents, owner)
            found.append((docs, ents, log_p))
        return [docs[i] for i in numpy.flatnonzero(failed)]

    def _decode_bucket(
        self, emissions: List[Floats2d], chains: "_Chains", bucket: List[int], spaces: Any
    ) -> Tuple[Any, Any, Any, Tuple[Any, Any]]:
        """The padded emissions, lengths and Viterbi paths of chains (docs or windows of
        docs) of similar length, and which chains are cut out of a longer doc at their
        start and at their end, on the model's device.

        emissions (List[Floats2d]): The chains' emissions.
        chains (_Chains): All chains of the round.
        bucket (List[int]): The indices of these chains.
        spaces (Optional[numpy.ndarray]): `(B, T)`, True at whitespace tokens.
        """
        ops = self.model.ops
        xp = ops.xp
        E = crf.promote(xp, ops.pad(emissions))
        if spaces is not None:
            # Only O at whitespace: a non-O tag scores NEG there, so Viterbi, the
            # marginals and the span probabilities all see the same lattice.
            not_o = xp.arange(E.shape[2]) > 0
            E = xp.where(xp.asarray(spaces)[:, :, None] & not_o, crf.NEG, E)
        lengths = xp.asarray(chains.length[bucket], dtype="int32")
        cuts: Tuple[Any, Any] = (None, None)
        if chains.cut_start[bucket].any() or chains.cut_end[bucket].any():
            cuts = (xp.asarray(chains.cut_start[bucket]), xp.asarray(chains.cut_end[bucket]))
        path = crf.viterbi(xp, E, lengths, self._crf_params(), self.tag_scheme, cuts)
        return E, lengths, path, cuts

    def _chain_log_probs(
        self,
        decoded: List[Tuple[Any, Any, Any, Tuple[Any, Any]]],
        buckets: List[List[int]],
        chains: "_Chains",
        doc_paths: List[numpy.ndarray],
        ents: crf.Entities,
        owner: numpy.ndarray,
    ) -> Any:
        """Log-probabilities of the entities `ents` (doc, first token, last token,
        label), each computed in the chain `owner` holds for it, in the order of `ents`,
        on the model's device."""
        xp = self.model.ops.xp
        where = numpy.full((len(chains.doc), 2), -1, dtype="int64")
        for b, bucket in enumerate(buckets):
            where[bucket, 0] = b
            where[bucket, 1] = numpy.arange(len(bucket))
        out, order = [], []
        for b, (bucket, (E, lengths, path, cuts)) in enumerate(zip(buckets, decoded)):
            sel = numpy.flatnonzero(where[owner, 0] == b)
            if not len(sel):
                continue
            if cuts[0] is not None:
                # Windows: the span scores read the stitched path, not each window's own.
                path = xp.asarray(_local_paths(doc_paths, chains, bucket, path.shape[1]))
            c = owner[sel]
            offset = chains.start[c]
            spans = crf.Entities(
                where[c, 1], ents.first[sel] - offset, ents.last[sel] - offset, ents.label[sel]
            )
            out.append(self._span_log_probs(E, lengths, path, spans, cuts))
            order.append(sel)
        log_p = xp.concatenate(out)
        return log_p[xp.asarray(numpy.argsort(numpy.concatenate(order)))]

    def _span_log_probs(
        self,
        E: Any,
        lengths: Any,
        path: Any,
        spans: crf.Entities,
        cuts: Tuple[Any, Any] = (None, None),
    ) -> Any:
        """Log-probabilities of the entities `spans` (their doc is a chain of the
        bucket) found in one bucket's paths, on the model's device."""
        xp = self.model.ops.xp
        ts = self.tag_scheme
        params = self._crf_params()
        fb = crf.marginals(xp, E, lengths, params, ts, cuts)
        on_device = crf.Entities(*(xp.asarray(x) for x in spans))
        return crf.span_log_probs(xp, E, lengths, params, fb, path, on_device, ts, cuts)

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
        for name, grad in zip(crf.Params._fields, d_params):
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
    ) -> Tuple[Any, List[Floats2d], crf.Params]:
        """The loss of a batch, its gradient for each output, and the CRF's gradients.

        outputs (List[Floats2d]): The passes' outputs one pass after the other: doc i
            of pass p at `p * len(examples) + i`.
        n_passes (int): The number of passes.
        agreement_weight (float): The agreement loss's weight (0 during the warm-up).
        RETURNS (Tuple[Any, List[Floats2d], crf.Params]): The loss (a scalar on the
            model's device), the gradients of `outputs`, and those of the CRF's params.
        """
        xp = self.model.ops.xp
        d_params = crf.Params(*(xp.zeros_like(p) for p in self._crf_params()))
        d_outputs: List[Any] = [None] * len(outputs)
        total = xp.zeros((), dtype="float32")
        n = len(examples)
        for bucket in _length_buckets([len(eg.predicted) for eg in examples]):
            index = [p * n + i for p in range(n_passes) for i in bucket]
            loss, d_bucket, grads = self._loss_bucket(
                [examples[i] for i in bucket],
                [outputs[j] for j in index],
                n_passes,
                agreement_weight,
            )
            total = total + loss
            d_params = crf.Params(*(d + g for d, g in zip(d_params, d_bucket)))
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
    ) -> Tuple[Any, crf.Params, List[Floats2d]]:
        """The loss of docs of similar length over the passes, all passes through the
        CRF as one batch (`crf.gold_loss`), plus the agreement loss between them.

        examples (Sequence[Example]): The docs.
        outputs (List[Floats2d]): Their outputs, one pass after the other.
        RETURNS (Tuple[Any, crf.Params, List[Floats2d]]): The loss (a scalar on the
            model's device), the CRF's gradients and those of `outputs`.
        """
        ops = self.model.ops
        xp = ops.xp
        ts = self.tag_scheme
        m = len(examples)
        lengths_h = numpy.asarray([len(eg.predicted) for eg in examples], dtype="int32")
        T, K = int(lengths_h.max()), len(ts.tags)
        E = crf.promote(xp, ops.pad(outputs))
        P = n_passes
        gold = xp.asarray(numpy.tile(self._gold(examples, T), (P, 1)))[:, :, None]
        lengths = xp.asarray(numpy.tile(lengths_h, P))
        result = crf.gold_loss(
            xp, E, gold, lengths, self._crf_params(), ts, self.cfg["o_unknown_weight"], P
        )
        loss, grads = result.loss, result.d_emissions.reshape(P, m, T, K)
        if P > 1 and agreement_weight > 0:
            log_m = result.log_marginals.reshape(P, m, T, K)
            pos = crf.position_mask(xp, lengths[:m], T)
            loss = loss + self._agreement(xp, log_m, grads, pos, agreement_weight)
        grads = grads.reshape(P * m, T, K).astype(outputs[0].dtype, copy=False)
        d_outputs = cast(List[Floats2d], ops.unpad(grads, lengths_h.tolist() * P))
        return loss, result.d_params, d_outputs

    @staticmethod
    def _agreement(xp: Any, log_m: Any, grads: Any, pos: Any, weight: float) -> Any:
        """Add weight * mean_i KL(mean ‖ p_i) over the passes' tag marginals, and its
        gradient, to `grads`.

        The gradient goes through each position's own marginals with the Jacobian of
        a softmax, `diag(p) - p pᵀ`: that is exactly the block of the CRF marginals'
        Jacobian for the position's own emissions. The cross-position blocks (and the
        transitions) are left out, which keeps it to one pass over the arrays.

        log_m (Floats4d): `(P, B, T, K)`: each of the P passes' log-marginals.
        grads (Floats4d): `(P, B, T, K)`: each pass's gradient, added to in place.
        pos (Floats2d): `(B, T)`: 1.0 at real tokens.
        weight (float): The agreement loss's weight.
        RETURNS (Any): The loss, a scalar on the device.
        """
        P = log_m.shape[0]
        log_p = xp.maximum(log_m, crf.LOG_EPS)
        p = xp.exp(log_p)
        mean = p.mean(axis=0)
        log_mean = xp.log(mean)
        h = log_mean - log_p.mean(axis=0)
        mask = pos[:, :, None]
        p_dot_h = (p * h).sum(axis=3, keepdims=True)
        grads += (weight / P) * (p * h - mean - p * (p_dot_h - 1.0)) * mask
        # The mean over passes of KL(mean ‖ p_i) is the sum of mean * h.
        return weight * (mean * h * mask).sum()

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights with the gradients collected so far. A model that sets
        `attrs["head_lr_scale"]` (`TokenClassifier.v2`) has its linear layer and CRF
        updated at that multiple of the optimizer's rate. Each call is one optimizer
        step: `agreement_warmup_steps` counts these calls.

        sgd (Optimizer): The optimizer.
        """
        self._n_updates += 1
        scale = float(self.model.attrs.get(HEAD_LR_SCALE, 1.0))
        if scale == 1.0:
            self.model.finish_update(sgd)
            return
        head = {self.model.id, self.model.get_ref("output_layer").id}
        self.model.finish_update(cast(Optimizer, _HeadScaledOptimizer(sgd, head, scale)))

    def _crf_params(self) -> crf.Params:
        return crf.Params(*(self.model.get_param(name) for name in crf.Params._fields))

    # ---- serialization. The saved cfg carries every setting, but on load only what was
    # learned (LEARNED) comes from it: the settings are the config's, so that
    # `spacy.load(path, config=...)` changes them. The scheme must match the weights.

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = SimpleFrozenList()):
        """Load the component from bytes: the labels and calibration it learned, and its
        weights, checked against each other.

        bytes_data (bytes): What `to_bytes` returned.
        exclude (Iterable[str]): Fields to leave out.
        RETURNS (NTKEntityRecognizer): The component.
        """
        where = f"[{self.name}] bytes"
        deserialize = {
            "cfg": lambda b: self._load_learned(_read_json(lambda: srsly.json_loads(b), where)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_weights(b, where),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        self._check_weights(where)
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
            self._load_learned(_read_json(lambda: srsly.read_json(p), str(p)), str(p))

        def load_model(p: Path) -> None:
            try:
                data = p.read_bytes()
            except OSError as err:
                raise UserError(f"{p}: the weights cannot be read ({err.strerror})") from None
            self._load_weights(data, str(p))

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

    def _load_learned(self, saved: Any, where: str = "") -> None:
        """Take the labels and calibration from a saved cfg; check its scheme."""
        where = where or f"[{self.name}] cfg"
        if not isinstance(saved, dict):
            raise UserError(f"{where}: not a saved {self.name} cfg")
        scheme = saved.get("scheme", self.cfg["scheme"])
        if scheme != self.cfg["scheme"]:
            raise UserError(
                f"{where}: the weights were trained with scheme {scheme!r}, but the config "
                f"sets scheme {self.cfg['scheme']!r}; load with scheme = {scheme!r}"
            )
        labels = saved.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise UserError(f"{where}: 'labels' must be a list of label names")
        calibration = saved.get("calibration", list(IDENTITY))
        if not _is_platt(calibration):
            raise UserError(f"{where}: 'calibration' must be two numbers [a, b]")
        # Absent from pipelines calibrated before there were maps per label.
        per_label = saved.get("calibration_per_label", {})
        if not (
            isinstance(per_label, dict)
            and all(k in labels and _is_platt(v) for k, v in per_label.items())
        ):
            raise UserError(
                f"{where}: 'calibration_per_label' must map saved labels to two numbers [a, b]"
            )
        self.cfg["labels"] = list(labels)
        self.cfg["calibration"] = [float(x) for x in calibration]
        self.cfg["calibration_per_label"] = {k: [float(x) for x in v] for k, v in per_label.items()}
        for label in labels:
            self.vocab.strings.add(label)
        self._tag_scheme = None

    def _load_weights(self, data: bytes, where: str) -> None:
        try:
            self.model.from_bytes(data)
        except Exception as err:  # thinc and msgpack raise many kinds on bad bytes
            raise UserError(
                f"{where}: the weights cannot be read ({type(err).__name__}: {str(err)[:200]})"
            ) from None

    def _check_weights(self, where: str) -> None:
        """Stop at load, not at the first prediction, when the weights do not score the
        tags of the saved labels."""
        self._tag_scheme = None
        n_tags = len(self.tag_scheme.tags)
        shapes = {"nO": self.model.maybe_get_dim("nO")}
        for name in ("transitions", "start", "end"):
            if self.model.has_param(name):
                shapes[name] = self.model.get_param(name).shape[0]
        wrong = {k: n for k, n in shapes.items() if n is not None and n != n_tags}
        if wrong:
            got = ", ".join(f"{k} {n}" for k, n in wrong.items())
            raise UserError(
                f"{where}: the weights score {got} tags, but the {len(self.labels)} saved "
                f"labels in scheme {self.cfg['scheme']} need {n_tags}; the labels (cfg) "
                "and the weights (model) do not belong together"
            )


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


def _is_platt(params: Any) -> bool:
    """RETURNS (bool): Whether `params` is a Platt map [a, b] as a saved cfg holds it."""
    return (
        isinstance(params, list)
        and len(params) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in params)
    )


def _read_json(read: Callable[[], Any], where: str) -> Any:
    try:
        return read()
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: not readable as JSON ({str(err)[:200]})") from None


# Encoders shared through a listener, by their model's name.
LISTENERS = {
    "tok2vec-listener": "spacy.Tok2VecListener",
    "transformer-listener": "spacy-transformers.TransformerListener",
}


def check_passes_encoder(name: str, n_passes: int, model: Model) -> None:
    """Refuse n_passes > 1 with an encoder shared through a listener: it hands every
    pass the same vectors (no dropout of their own), and the upstream component takes
    the gradient once per pass.

    name (str): The component's name.
    n_passes (int): Forward passes per batch.
    model (Model): The component's model.
    """
    if n_passes <= 1:
        return
    for node in model.walk():
        kind = LISTENERS.get(node.name)
        if kind is not None:
            upstream = getattr(node, "upstream_name", "?")
            raise UserError(
                f"[{name}] n_passes = {n_passes} needs an encoder of the component's own, "
                f"but its model listens to an upstream component through a {kind} "
                f"(upstream {upstream!r}): every pass would get the same vectors and that "
                f"component would take the gradient {n_passes} times. Embed the encoder in "
                "the component (as configs/cpu.cfg and configs/trf.cfg do), or set "
                "n_passes = 1"
            )


# The settings' 0.1 names (the paper's symbols), the new names and their defaults.
RENAMED_SETTINGS = {
    "k": "n_passes",
    "alpha": "agreement_weight",
    "alpha_warmup_steps": "agreement_warmup_steps",
}
PASS_DEFAULTS: Dict[str, Any] = {
    "n_passes": 1,
    "agreement_weight": 0.0,
    "agreement_warmup_steps": 0,
}


def _renamed_settings(settings: Dict[str, Any], old: Dict[str, Any]) -> Dict[str, Any]:
    """The settings, with each old name given (not None) taking its new name's place.

    settings (Dict[str, Any]): The settings under their new names.
    old (Dict[str, Any]): The same under their 0.1 names, None where not given.
    RETURNS (Dict[str, Any]): The settings to use.
    """
    out = dict(settings)
    for old_name, value in old.items():
        if value is None:
            continue
        new_name = RENAMED_SETTINGS[old_name]
        if out[new_name] != PASS_DEFAULTS[new_name]:
            raise UserError(
                f"[ntk_ner] both {old_name} = {value!r} and {new_name} = {out[new_name]!r} "
                f"are set: {old_name} is the old name of {new_name}; set only {new_name}"
            )
        warnings.warn(
            f"[ntk_ner] the setting {old_name!r} is deprecated: use {new_name!r} "
            f"({new_name} = {value!r})",
            # Shown by default (a DeprecationWarning is not, outside __main__): the
            # reader is whoever loads a 0.1 pipeline, not its developer.
            FutureWarning,
            stacklevel=3,
        )
        out[new_name] = value
    return out


def _check_settings(
    scheme: str,
    n_passes: int,
    agreement_weight: float,
    agreement_warmup_steps: int,
    o_unknown_weight: float,
    threshold: float,
    spans_key: str,
) -> None:
    problems = []
    if scheme not in TagScheme.NAMES:
        problems.append(f"scheme must be one of {', '.join(TagScheme.NAMES)}, not {scheme!r}")
    if not isinstance(n_passes, int) or n_passes < 1:
        problems.append(f"n_passes (forward passes per batch) must be at least 1, not {n_passes!r}")
    if not agreement_weight >= 0:
        problems.append(f"agreement_weight must be 0 or more, not {agreement_weight!r}")
    if agreement_warmup_steps < 0:
        problems.append(f"agreement_warmup_steps must be 0 or more, not {agreement_warmup_steps!r}")
    if not 0.0 <= o_unknown_weight <= 1.0:
        problems.append(f"o_unknown_weight must be between 0 and 1, not {o_unknown_weight!r}")
    if not 0.0 <= threshold <= 1.0:
        problems.append(f"threshold must be between 0 and 1, not {threshold!r}")
    if not spans_key:
        problems.append("spans_key must not be empty")
    if problems:
        raise UserError("[ntk_ner] " + "; ".join(problems))


def _length_buckets(lengths: Sequence[int], max_padded: int = PADDED_BUDGET) -> List[List[int]]:
    """Group the non-empty docs by length so that padding wastes little: sorted by
    length, each group holds as many as fit `max_padded` padded positions.

    lengths (Sequence[int]): Tokens per doc.
    max_padded (int): Budget of docs x longest length per group (a longer doc goes alone).
    RETURNS (List[List[int]]): Doc indices per group.
    """
    order = sorted((n, i) for i, n in enumerate(lengths) if n)
    buckets: List[List[int]] = []
    current: List[int] = []
    for n, i in order:
        if current and (len(current) + 1) * n > max_padded:
            buckets.append(current)
            current = []
        current.append(i)
    if current:
        buckets.append(current)
    return buckets


class _Chains(NamedTuple):
    """What the CRF decodes in a round: whole docs, or windows cut out of long docs.

    doc (numpy.ndarray): The doc of each chain (an index into the round's docs).
    start (numpy.ndarray): Its first token in the doc.
    length (numpy.ndarray): Its number of tokens.
    cut_start (numpy.ndarray): Whether it starts after the doc's start.
    cut_end (numpy.ndarray): Whether it ends before the doc's end.
    """

    doc: numpy.ndarray
    start: numpy.ndarray
    length: numpy.ndarray
    cut_start: numpy.ndarray
    cut_end: numpy.ndarray

    def slices(self, chains: List[int]) -> Iterator[Tuple[int, int, int]]:
        """YIELDS (Tuple[int, int, int]): Doc, first token, end token of each chain."""
        for i in chains:
            a = int(self.start[i])
            yield int(self.doc[i]), a, a + int(self.length[i])


def _stride(window: Optional[int], lengths: numpy.ndarray, overlap: int = WINDOW_OVERLAP) -> int:
    """Tokens between the seams of neighbouring windows (no windows: past every doc)."""
    return window - 2 * overlap if window else int(lengths.max()) + 1


def _plan_chains(
    lengths: numpy.ndarray, window: Optional[int], overlap: int = WINDOW_OVERLAP
) -> _Chains:
    """Cut the docs longer than `window` into windows: window j's own part is
    `[j * stride, (j + 1) * stride)`, and it reaches WINDOW_OVERLAP tokens further on
    each side (within the doc). Shorter docs, or all if `window` is None, stay whole.

    lengths (numpy.ndarray): Tokens per doc, all at least 1.
    window (Optional[int]): The longest chain; None: no windows.
    overlap (int): Tokens a window reaches past its own part on each side.
    RETURNS (_Chains): The chains, each doc's in order.
    """
    stride = _stride(window, lengths, overlap)
    cut = lengths > (window or lengths.max())
    n_windows = numpy.where(cut, -(-lengths // stride), 1)
    doc = numpy.repeat(numpy.arange(len(lengths)), n_windows)
    j = numpy.arange(len(doc)) - numpy.repeat(numpy.cumsum(n_windows) - n_windows, n_windows)
    n = lengths[doc]
    lo = numpy.where(cut[doc], numpy.maximum(j * stride - overlap, 0), 0)
    hi = numpy.where(cut[doc], numpy.minimum((j + 1) * stride + overlap, n), n)
    return _Chains(doc, lo, hi - lo, lo > 0, hi < n)


def _bucket_spaces(
    spaces: Optional[List[numpy.ndarray]], docs: List[int], chains: _Chains, bucket: List[int]
) -> Optional[numpy.ndarray]:
    """RETURNS (Optional[numpy.ndarray]): `(B, T)`, True at the whitespace tokens of
    the bucket's chains; None if it has none."""
    if spaces is None:
        return None
    mask = numpy.zeros((len(bucket), int(chains.length[bucket].max())), dtype=bool)
    for row, (d, a, z) in enumerate(chains.slices(bucket)):
        mask[row, : z - a] = spaces[docs[d]][a:z]
    return mask if mask.any() else None


def _space_masks(docs: Sequence[Doc]) -> Optional[List[numpy.ndarray]]:
    """RETURNS (Optional[List[numpy.ndarray]]): Per doc, True at whitespace tokens;
    None if no doc has any."""
    spaces = [doc.to_array("IS_SPACE").astype(bool) for doc in docs]
    return spaces if any(s.any() for s in spaces) else None


def _chain_paths(
    paths: numpy.ndarray, decoded: List[Any], buckets: List[List[int]], chains: _Chains
) -> List[numpy.ndarray]:
    """Split the buckets' Viterbi paths, fetched as one flat array, per chain.

    RETURNS (List[numpy.ndarray]): The tags of each chain.
    """
    out: List[numpy.ndarray] = [numpy.empty(0, dtype=paths.dtype)] * len(chains.doc)
    offset = 0
    for bucket, (_, _, path, _) in zip(buckets, decoded):
        block = paths[offset : offset + path.size].reshape(path.shape)
        offset += path.size
        for row, c in enumerate(bucket):
            out[c] = block[row, : chains.length[c]]
    return out


def _stitch(
    chain_paths: List[numpy.ndarray], chains: _Chains
) -> Tuple[List[numpy.ndarray], numpy.ndarray]:
    """Join the paths of each doc's windows.

    RETURNS (Tuple[List[numpy.ndarray], numpy.ndarray]): Each doc's path (all O where
        its windows could not be joined), and which docs could not be.
    """
    n_docs = int(chains.doc[-1]) + 1
    first = numpy.searchsorted(chains.doc, numpy.arange(n_docs))
    last = numpy.append(first[1:], len(chains.doc))
    doc_paths: List[numpy.ndarray] = []
    failed = numpy.zeros(n_docs, dtype=bool)
    for d, (a, z) in enumerate(zip(first.tolist(), last.tolist())):
        path = _stitch_doc(chain_paths[a:z], chains.start[a:z])
        if path is None:
            failed[d] = True
            path = numpy.zeros(int(chains.start[z - 1] + chains.length[z - 1]), dtype="int64")
        doc_paths.append(path)
    return doc_paths, failed


def _stitch_doc(paths: List[numpy.ndarray], starts: numpy.ndarray) -> Optional[numpy.ndarray]:
    """Join one doc's window paths: at each seam, at the position of the overlap
    nearest its middle where both windows have the same tag. Up to there the path is
    the left window's, after it the right one's: each transition is one of a window's
    own valid path, so the joined path is valid.

    paths (List[numpy.ndarray]): The windows' paths, in order.
    starts (numpy.ndarray): The windows' first tokens.
    RETURNS (Optional[numpy.ndarray]): The doc's path; None if at some seam the windows
        agree nowhere.
    """
    if len(paths) == 1:
        return paths[0]
    pieces = []
    taken = 0
    for j in range(len(paths) - 1):
        lo, hi = int(starts[j + 1]), int(starts[j]) + len(paths[j])
        agree = numpy.flatnonzero(paths[j][lo - starts[j] :] == paths[j + 1][: hi - lo])
        if not len(agree):
            return None
        t = lo + int(agree[numpy.abs(2 * agree + 2 * lo - lo - hi).argmin()])
        pieces.append(paths[j][taken - starts[j] : t + 1 - starts[j]])
        taken = t + 1
    pieces.append(paths[-1][taken - starts[-1] :])
    return numpy.concatenate(pieces)


def _flat_spans(doc_paths: List[numpy.ndarray], ts: TagScheme) -> crf.Entities:
    """The entities of the docs' paths, found in one pass over their concatenation: a
    valid path starts and ends outside an entity, so none runs from one doc into the
    next.

    RETURNS (crf.Entities): The entities, in order.
    """
    lengths = numpy.asarray([len(p) for p in doc_paths])
    offsets = numpy.cumsum(lengths) - lengths
    flat = numpy.concatenate(doc_paths)[None, :]
    _, starts, ends, labels = ts.entities(flat, lengths.sum(keepdims=True))
    doc = numpy.searchsorted(offsets, starts, side="right") - 1
    return crf.Entities(doc, starts - offsets[doc], ends - offsets[doc], labels)


def _assign_chains(
    chains: _Chains,
    lengths: numpy.ndarray,
    ents: crf.Entities,
    window: Optional[int],
) -> numpy.ndarray:
    """The chain that scores each entity: of the window holding its first token in its
    own part and the next one, the one where it has more context on its scarcer side.

    RETURNS (numpy.ndarray): A chain per entity; -1 where it has less than
        WINDOW_CONTEXT tokens of context in both (the doc must be decoded exactly).
    """
    doc, starts, ends = ents.doc, ents.first, ents.last
    n_docs = len(lengths)
    first = numpy.searchsorted(chains.doc, numpy.arange(n_docs))
    n_windows = numpy.bincount(chains.doc, minlength=n_docs)[doc]
    j = numpy.minimum(starts // _stride(window, lengths), n_windows - 1)
    own = first[doc] + j
    nxt = numpy.where(j + 1 < n_windows, own + 1, own)
    ctx_own = _context(chains, own, starts, ends)
    ctx_nxt = _context(chains, nxt, starts, ends)
    best = numpy.where(ctx_nxt > ctx_own, nxt, own)
    return numpy.where(numpy.maximum(ctx_own, ctx_nxt) >= WINDOW_CONTEXT, best, -1)


def _context(
    chains: _Chains, chain: numpy.ndarray, starts: numpy.ndarray, ends: numpy.ndarray
) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): Tokens of `chain` before and after each entity, the
    fewer of the two (a side where the chain is not cut counts as plenty; negative if
    the entity is not inside the chain)."""
    lo = chains.start[chain]
    hi = lo + chains.length[chain]
    plenty = numpy.iinfo("int64").max // 2
    left = numpy.where(chains.cut_start[chain], starts - lo, plenty)
    right = numpy.where(chains.cut_end[chain], hi - 1 - ends, plenty)
    inside = (starts >= lo) & (ends < hi)
    return numpy.where(inside, numpy.minimum(left, right), -1)


def _local_paths(
    doc_paths: List[numpy.ndarray], chains: _Chains, bucket: List[int], T: int
) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): `(B, T)`: the joined doc path under each of the
    bucket's chains (0 at padding)."""
    out = numpy.zeros((len(bucket), T), dtype="int64")
    for row, (d, a, z) in enumerate(chains.slices(bucket)):
        out[row, : z - a] = doc_paths[d][a:z]
    return out
