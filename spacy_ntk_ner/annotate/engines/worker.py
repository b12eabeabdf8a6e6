"""One pipeline in one worker: loaded once, it turns texts into records.

Every engine of `annotate` annotates through `pipe_records`: the local engine's single
process on its own pipeline, the local pool's processes (`engines.local`) and Ray's
actors (`engines.ray`) each on a `PipelineWorker`, so all of them give the same
records document for document. Workers send back records (plain values, and Doc bytes
for DocBin output), never Docs: a parent that rebuilds every Doc a worker made spends
more than the worker saved.
"""

from typing import Any, Generator, Iterable, List, Optional, Tuple

import spacy

from ...loading import load_pipeline
from ..records import Record, SpanSource, doc_record


def pipe_records(
    nlp: Any,
    items: Iterable[Tuple[int, str]],
    source: SpanSource,
    threshold: Optional[float],
    with_doc: bool,
    batch_size: int,
) -> Generator[Record, None, None]:
    """Annotate texts with `nlp.pipe` and make each one's record.

    nlp (Language): The pipeline.
    items (Iterable[Tuple[int, str]]): Positions and texts.
    source (SpanSource): Where the pipeline puts its entities.
    threshold (Optional[float]): The least score kept.
    with_doc (bool): Whether to add Doc bytes to each record.
    batch_size (int): `nlp.pipe`'s batch size.
    YIELDS (Tuple[int, Dict[str, Any]]): Each position and its record, in order.
    """
    stream = ((text, pos) for pos, text in items)
    for doc, pos in nlp.pipe(stream, as_tuples=True, batch_size=batch_size):
        yield pos, doc_record(doc, source, threshold, with_doc)


class PipelineWorker:
    """A pipeline loaded once in a worker process (a pool's process, a Ray actor).

    model (str): What `spacy.load` takes.
    source (SpanSource): Where the pipeline puts its entities.
    threshold (Optional[float]): The least score kept.
    with_doc (bool): Whether to add Doc bytes to each record (DocBin output).
    batch_size (int): `nlp.pipe`'s batch size.
    gpu (bool): Whether to run on the GPU (device 0: the one Ray gave the actor).
    """

    def __init__(
        self,
        model: str,
        source: SpanSource,
        threshold: Optional[float],
        with_doc: bool,
        batch_size: int,
        gpu: bool = False,
    ) -> None:
        if gpu:
            spacy.require_gpu(0)
        self.nlp = load_pipeline(model)
        self.source = source
        self.threshold = threshold
        self.with_doc = with_doc
        self.batch_size = batch_size

    def records(self, items: Iterable[Tuple[int, str]]) -> List[Record]:
        """items (Iterable[Tuple[int, str]]): Positions and texts.
        RETURNS (List[Tuple[int, Dict[str, Any]]]): Each position and its record, in order.
        """
        return list(
            pipe_records(
                self.nlp, items, self.source, self.threshold, self.with_doc, self.batch_size
            )
        )
