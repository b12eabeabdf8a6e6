"""Decoding a batch: the Viterbi path of each doc, long docs in windows, in buckets of
similar length, then the log-probability of each entity found.

Two transfers from the device for the whole batch (the paths, then the scores), one
to it per bucket holding windows (their joined paths), and one more from it (the
paths) if some docs must be decoded whole after all.
"""

from typing import Any, List, NamedTuple, Optional

import numpy
from thinc.api import Ops
from thinc.types import Floats2d

from . import windows
from .lattice import NEG, Lattice, Params, promote, recursions, span_log_probs, viterbi
from .tag_scheme import Entities, TagScheme
from .windows import Chains


class ScoredEntities(NamedTuple):
    """The entities of a batch, one element per entity, each doc's in order.

    doc (numpy.ndarray): The doc's index in the batch.
    first (numpy.ndarray): Its first token.
    last (numpy.ndarray): Its last token (inclusive).
    label (numpy.ndarray): Its label index.
    log_probs (Floats1d): The log-probability that it is exactly right, on the device.
    """

    doc: numpy.ndarray
    first: numpy.ndarray
    last: numpy.ndarray
    label: numpy.ndarray
    log_probs: Any


class DecodedBucket(NamedTuple):
    """The lattices of a bucket of chains, and their Viterbi paths `(B, T)`."""

    lattice: Lattice
    path: Any


class Decoder:
    """Decodes batches of emissions with one set of CRF scores, on `ops`' device."""

    def __init__(self, ops: Ops, params: Params, scheme: TagScheme) -> None:
        """Initialize the decoder.

        ops (Ops): The model's ops.
        params (Params): The CRF's scores.
        scheme (TagScheme): The tags.
        """
        self.ops = ops
        self.params = params
        self.scheme = scheme

    def decode(
        self, emissions: List[Floats2d], spaces: Optional[List[numpy.ndarray]] = None
    ) -> Optional[ScoredEntities]:
        """The entities of the docs and their log-probabilities. Windows first; the
        docs they cannot decode (no seam where neighbouring windows agree, or an entity
        too long for the overlap) are decoded whole.

        emissions (List[Floats2d]): Each doc's tag scores.
        spaces (Optional[List[numpy.ndarray]]): Per doc, True at whitespace tokens,
            which are tagged O (as spaCy's `ner` never starts an entity on one).
        RETURNS (Optional[ScoredEntities]): The entities; None if there are none.
        """
        rounds: List[ScoredEntities] = []
        docs = [i for i, e in enumerate(emissions) if len(e)]
        for window in (windows.WINDOW, None):
            if docs:
                docs = self._decode_round(emissions, docs, window, spaces, rounds)
        if not rounds:
            return None
        if len(rounds) == 1:
            return rounds[0]
        return ScoredEntities(
            numpy.concatenate([entities.doc for entities in rounds]),
            numpy.concatenate([entities.first for entities in rounds]),
            numpy.concatenate([entities.last for entities in rounds]),
            numpy.concatenate([entities.label for entities in rounds]),
            self.ops.xp.concatenate([entities.log_probs for entities in rounds]),
        )

    def _decode_round(
        self,
        emissions: List[Floats2d],
        docs: List[int],
        window: Optional[int],
        spaces: Optional[List[numpy.ndarray]],
        rounds: List[ScoredEntities],
    ) -> List[int]:
        """Decode the docs at the indices `docs`, those longer than `window` (None:
        none) in overlapping windows, and add their entities to `rounds`.

        RETURNS (List[int]): The docs left undecoded, for an exact round.
        """
        ops = self.ops
        xp = ops.xp
        lengths = numpy.asarray([len(emissions[d]) for d in docs], dtype="int64")
        chains = windows.plan_chains(lengths, window)
        buckets = windows.length_buckets(chains.length.tolist(), min_rows=windows.CRF_ROWS)
        decoded = [
            self._decode_bucket(
                [emissions[docs[c]][a:z] for c, a, z in chains.slices(b)],
                chains,
                b,
                windows.bucket_spaces(spaces, docs, chains, b),
            )
            for b in buckets
        ]
        paths = ops.to_numpy(xp.concatenate([bucket.path.ravel() for bucket in decoded]))
        shapes = [bucket.path.shape for bucket in decoded]
        doc_paths, failed = windows.stitch(
            windows.chain_paths(paths, shapes, buckets, chains), chains
        )
        ents = windows.flat_spans(doc_paths, self.scheme)
        scoring_chain = windows.scoring_chains(chains, lengths, ents, window)
        failed[ents.doc[scoring_chain < 0]] = True
        keep = ~failed[ents.doc]
        ents, scoring_chain = Entities(*(x[keep] for x in ents)), scoring_chain[keep]
        if len(scoring_chain):
            log_p = self._chain_log_probs(decoded, buckets, chains, doc_paths, ents, scoring_chain)
            doc = numpy.asarray(docs)[ents.doc]
            rounds.append(ScoredEntities(doc, ents.first, ents.last, ents.label, log_p))
        return [docs[i] for i in numpy.flatnonzero(failed)]

    def _decode_bucket(
        self, emissions: List[Floats2d], chains: Chains, bucket: List[int], spaces: Any
    ) -> DecodedBucket:
        """The lattices and Viterbi paths of chains (docs or windows of docs) of
        similar length, on the model's device.

        emissions (List[Floats2d]): The chains' emissions.
        chains (Chains): All chains of the round.
        bucket (List[int]): The indices of these chains.
        spaces (Optional[numpy.ndarray]): `(B, T)`, True at whitespace tokens.
        RETURNS (DecodedBucket): The lattices and their paths.
        """
        xp = self.ops.xp
        E = promote(xp, self.ops.pad(emissions))
        if spaces is not None:
            # Only O at whitespace: a non-O tag scores NEG there, so Viterbi, the
            # marginals and the span probabilities all see the same lattice.
            not_o = xp.arange(E.shape[2]) > 0
            E = xp.where(xp.asarray(spaces)[:, :, None] & not_o, NEG, E)
        lengths = xp.asarray(chains.length[bucket], dtype="int32")
        cuts: Any = (None, None)
        if chains.cut_start[bucket].any() or chains.cut_end[bucket].any():
            cuts = (xp.asarray(chains.cut_start[bucket]), xp.asarray(chains.cut_end[bucket]))
        lattice = Lattice(xp, E, lengths, self.params, self.scheme, cuts)
        return DecodedBucket(lattice, viterbi(lattice))

    def _chain_log_probs(
        self,
        decoded: List[DecodedBucket],
        buckets: List[List[int]],
        chains: Chains,
        doc_paths: List[numpy.ndarray],
        ents: Entities,
        scoring_chain: numpy.ndarray,
    ) -> Any:
        """Log-probabilities of the entities `ents` (doc, first token, last token,
        label), each computed in its chain in `scoring_chain`, in the order of `ents`,
        on the model's device."""
        xp = self.ops.xp
        bucket_of = numpy.full(len(chains.doc), -1, dtype="int64")
        row_of = numpy.full(len(chains.doc), -1, dtype="int64")
        for b, bucket in enumerate(buckets):
            bucket_of[bucket] = b
            row_of[bucket] = numpy.arange(len(bucket))
        out, order = [], []
        for b, (bucket, (lattice, path)) in enumerate(zip(buckets, decoded)):
            sel = numpy.flatnonzero(bucket_of[scoring_chain] == b)
            if not len(sel):
                continue
            if lattice.cuts[0] is not None:
                # Windows: the span scores read the stitched path, not each window's own.
                path = xp.asarray(windows.local_paths(doc_paths, chains, bucket, path.shape[1]))
            c = scoring_chain[sel]
            offset = chains.start[c]
            spans = Entities(
                row_of[c], ents.first[sel] - offset, ents.last[sel] - offset, ents.label[sel]
            )
            on_device = Entities(*(xp.asarray(x) for x in spans))
            out.append(span_log_probs(lattice, recursions(lattice), path, on_device))
            order.append(sel)
        log_p = xp.concatenate(out)
        return log_p[xp.asarray(numpy.argsort(numpy.concatenate(order)))]
