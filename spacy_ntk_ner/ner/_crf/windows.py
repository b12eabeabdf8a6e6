"""Decoding long docs in windows, and grouping docs by length.

A doc longer than WINDOW tokens is decoded in windows of at most WINDOW tokens, so the
CRF's loops (one step per position of a bucket's longest chain) stay short.
Neighbouring windows share 2 * WINDOW_OVERLAP tokens, centred on the seam between
them; their Viterbi paths are joined where they agree inside that overlap (so the
joined path is valid), and each entity's probability is computed in the window where it
has the most context on both sides. A linear-chain CRF's dependence on far positions
decays fast, so the scores differ from exact decoding by little (benchmarks/README.md,
"Long documents"). Docs the windows cannot decode are decoded whole.
"""

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

from .tag_scheme import Entities, TagScheme

# Docs x longest doc that the CRF pads into one array (see `length_buckets`).
PADDED_BUDGET = 4096
# Chains the CRF decodes at least in one array (while they fit `CRF_ROWS * WINDOW`
# positions): each step of its loops costs a few microseconds of Python whatever the
# array's size, and below about this many rows that is most of the cost.
CRF_ROWS = 32
# At least 4 * WINDOW_OVERLAP, so that a window's two overlaps do not meet.
WINDOW = 512
WINDOW_OVERLAP = 64
# Context (tokens on each side, or the doc's edge) an entity needs in the window that
# scores it; a doc with an entity that has less in every window (one longer than about
# WINDOW_OVERLAP tokens) is decoded exactly instead.
WINDOW_CONTEXT = WINDOW_OVERLAP // 2


def length_buckets(
    lengths: Sequence[int], max_padded: int = PADDED_BUDGET, min_rows: int = 1
) -> List[List[int]]:
    """Group the non-empty docs by length so that padding wastes little: sorted by
    length, each group holds as many as fit `max_padded` padded positions, and a group
    of fewer than `min_rows` docs takes more, up to `min_rows * WINDOW` positions.

    lengths (Sequence[int]): Tokens per doc.
    max_padded (int): Budget of docs x longest length per group (a longer doc goes alone).
    min_rows (int): Docs a group takes past the budget, if it has fewer.
    RETURNS (List[List[int]]): Doc indices per group.
    """
    order = sorted((n, i) for i, n in enumerate(lengths) if n)
    ceiling = max(max_padded, min_rows * WINDOW)
    buckets: List[List[int]] = []
    current: List[int] = []
    for n, i in order:
        padded = (len(current) + 1) * n
        if current and padded > max_padded and (len(current) >= min_rows or padded > ceiling):
            buckets.append(current)
            current = []
        current.append(i)
    if current:
        buckets.append(current)
    return buckets


class Chains(NamedTuple):
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


def plan_chains(
    lengths: numpy.ndarray, window: Optional[int], overlap: int = WINDOW_OVERLAP
) -> Chains:
    """Cut the docs longer than `window` into windows: window j's own part is
    `[j * stride, (j + 1) * stride)`, and it reaches WINDOW_OVERLAP tokens further on
    each side (within the doc). Shorter docs, or all if `window` is None, stay whole.

    lengths (numpy.ndarray): Tokens per doc, all at least 1.
    window (Optional[int]): The longest chain; None: no windows.
    overlap (int): Tokens a window reaches past its own part on each side.
    RETURNS (Chains): The chains, each doc's in order.
    """
    stride = _stride(window, lengths, overlap)
    cut = lengths > (window or lengths.max())
    n_windows = numpy.where(cut, -(-lengths // stride), 1)
    doc = numpy.repeat(numpy.arange(len(lengths)), n_windows)
    j = numpy.arange(len(doc)) - numpy.repeat(numpy.cumsum(n_windows) - n_windows, n_windows)
    n = lengths[doc]
    lo = numpy.where(cut[doc], numpy.maximum(j * stride - overlap, 0), 0)
    hi = numpy.where(cut[doc], numpy.minimum((j + 1) * stride + overlap, n), n)
    return Chains(doc, lo, hi - lo, lo > 0, hi < n)


def bucket_spaces(
    spaces: Optional[List[numpy.ndarray]], docs: List[int], chains: Chains, bucket: List[int]
) -> Optional[numpy.ndarray]:
    """RETURNS (Optional[numpy.ndarray]): `(B, T)`, True at the whitespace tokens of
    the bucket's chains; None if it has none."""
    if spaces is None:
        return None
    mask = numpy.zeros((len(bucket), int(chains.length[bucket].max())), dtype=bool)
    for row, (d, a, z) in enumerate(chains.slices(bucket)):
        mask[row, : z - a] = spaces[docs[d]][a:z]
    return mask if mask.any() else None


def space_masks(docs: Sequence[Doc]) -> Optional[List[numpy.ndarray]]:
    """RETURNS (Optional[List[numpy.ndarray]]): Per doc, True at whitespace tokens;
    None if no doc has any."""
    spaces = [doc.to_array("IS_SPACE").astype(bool) for doc in docs]
    return spaces if any(s.any() for s in spaces) else None


def chain_paths(
    paths: numpy.ndarray,
    shapes: List[Tuple[int, int]],
    buckets: List[List[int]],
    chains: Chains,
) -> List[numpy.ndarray]:
    """Split the buckets' Viterbi paths, fetched as one flat array, per chain.

    paths (numpy.ndarray): The buckets' `(B, T)` paths, raveled and concatenated.
    shapes (List[Tuple[int, int]]): Each bucket's `(B, T)`.
    buckets (List[List[int]]): Each bucket's chains.
    chains (Chains): The round's chains.
    RETURNS (List[numpy.ndarray]): The tags of each chain.
    """
    out: List[numpy.ndarray] = [numpy.empty(0, dtype=paths.dtype)] * len(chains.doc)
    offset = 0
    for bucket, (n_rows, n_cols) in zip(buckets, shapes):
        block = paths[offset : offset + n_rows * n_cols].reshape(n_rows, n_cols)
        offset += n_rows * n_cols
        for row, c in enumerate(bucket):
            out[c] = block[row, : chains.length[c]]
    return out


def stitch(
    chain_paths: List[numpy.ndarray], chains: Chains
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
        path = stitch_doc(chain_paths[a:z], chains.start[a:z])
        if path is None:
            failed[d] = True
            path = numpy.zeros(int(chains.start[z - 1] + chains.length[z - 1]), dtype="int64")
        doc_paths.append(path)
    return doc_paths, failed


def stitch_doc(paths: List[numpy.ndarray], starts: numpy.ndarray) -> Optional[numpy.ndarray]:
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


def flat_spans(doc_paths: List[numpy.ndarray], ts: TagScheme) -> Entities:
    """The entities of the docs' paths, found in one pass over their concatenation: a
    valid path starts and ends outside an entity, so none runs from one doc into the
    next.

    RETURNS (Entities): The entities, in order.
    """
    lengths = numpy.asarray([len(p) for p in doc_paths])
    offsets = numpy.cumsum(lengths) - lengths
    flat = numpy.concatenate(doc_paths)[None, :]
    _, starts, ends, labels = ts.entities(flat, lengths.sum(keepdims=True))
    doc = numpy.searchsorted(offsets, starts, side="right") - 1
    return Entities(doc, starts - offsets[doc], ends - offsets[doc], labels)


def scoring_chains(
    chains: Chains,
    lengths: numpy.ndarray,
    ents: Entities,
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
    chains: Chains, chain: numpy.ndarray, starts: numpy.ndarray, ends: numpy.ndarray
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


def local_paths(
    doc_paths: List[numpy.ndarray], chains: Chains, bucket: List[int], T: int
) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): `(B, T)`: the joined doc path under each of the
    bucket's chains (0 at padding)."""
    out = numpy.zeros((len(bucket), T), dtype="int64")
    for row, (d, a, z) in enumerate(chains.slices(bucket)):
        out[row, : z - a] = doc_paths[d][a:z]
    return out
