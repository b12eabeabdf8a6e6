"""Turn annotated Docs into plain records: the entities with their scores, as
annotation tools (Prodigy's `spans` format) read them.

Both engines of `annotate` use these, the local one in its own process and the Ray
one inside each actor, so their output is the same document for document. A record
holds only plain values (no Doc, no Vocab), so it crosses process boundaries cheaply.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from spacy.language import Language
from spacy.tokens import Doc

from .._format import rounded
from ..errors import UserError

# The factory of the components whose scored spans are written.
NTK_FACTORY = "ntk_ner"

Record = Tuple[int, Dict[str, Any]]


@dataclass(frozen=True)
class SpanSource:
    """Where a pipeline puts the entities `annotate` writes.

    component (str): The component's name.
    spans_key (Optional[str]): The `doc.spans` key of an `ntk_ner` component's scored
        spans, or None to take `doc.ents` (with no scores).
    """

    component: str
    spans_key: Optional[str]


def find_span_source(nlp: Language, component: Optional[str] = None) -> SpanSource:
    """Pick the component whose entities are written: the pipeline's `ntk_ner`, or the
    one named; without any `ntk_ner`, the component that sets `doc.ents`.

    nlp (Language): The pipeline.
    component (Optional[str]): The component to use, or None to find it.
    RETURNS (SpanSource): The component and where its entities are.
    """
    if component is not None:
        if component not in nlp.pipe_names:
            raise UserError(
                f"--component: the pipeline has no component {component!r} "
                f"(it has {', '.join(nlp.pipe_names) or 'none'})"
            )
        return _source_of(nlp, component)
    ntk = [name for name in nlp.pipe_names if _is_ntk_ner(nlp, name)]
    if len(ntk) > 1:
        raise UserError(
            f"the pipeline has {len(ntk)} ntk_ner components ({', '.join(ntk)}): "
            "pick one with --component"
        )
    if ntk:
        return _source_of(nlp, ntk[0])
    ents = [name for name in nlp.pipe_names if _sets_ents(nlp, name)]
    if not ents:
        raise UserError("the pipeline has no ntk_ner component and nothing else that sets doc.ents")
    # Later components may overwrite earlier ones' doc.ents: the last one has the say.
    return SpanSource(ents[-1], None)


def _source_of(nlp: Language, name: str) -> SpanSource:
    if _is_ntk_ner(nlp, name):
        pipe: Any = nlp.get_pipe(name)
        return SpanSource(name, pipe.cfg["spans_key"])
    if not _sets_ents(nlp, name):
        raise UserError(f"--component: {name!r} neither is an ntk_ner nor sets doc.ents")
    return SpanSource(name, None)


def _is_ntk_ner(nlp: Language, name: str) -> bool:
    # By factory name, so that reading records does not import the pipe's class.
    return nlp.get_pipe_meta(name).factory == NTK_FACTORY


def _sets_ents(nlp: Language, name: str) -> bool:
    return "doc.ents" in nlp.get_pipe_meta(name).assigns


def doc_spans(doc: Doc, source: SpanSource, threshold: Optional[float]) -> List[Dict[str, Any]]:
    """The entities of an annotated Doc in Prodigy's span format, `token_end` inclusive.

    doc (Doc): The annotated Doc.
    source (SpanSource): Where its entities are.
    threshold (Optional[float]): Leave out spans scored below it (None keeps all; spans
        without a score are always kept).
    RETURNS (List[Dict[str, Any]]): `start`, `end` (characters), `token_start`,
        `token_end`, `label` and `score` (None from `doc.ents`) of each entity.
    """
    if source.spans_key is None:
        pairs: List[Any] = [(span, None) for span in doc.ents]
    else:
        group = doc.spans.get(source.spans_key)
        pairs = [] if group is None else list(zip(group, group.attrs.get("scores", [])))
        if threshold is not None:
            pairs = [(span, score) for span, score in pairs if score >= threshold]
    return [
        {
            "start": span.start_char,
            "end": span.end_char,
            "token_start": span.start,
            "token_end": span.end - 1,
            "label": span.label_,
            "score": None if score is None else rounded(float(score)),
        }
        for span, score in pairs
    ]


def keep_spans(doc: Doc, source: SpanSource, threshold: Optional[float]) -> None:
    """Keep a Doc's scored spans of at least the threshold, in place, before it is saved,
    and make `doc.ents` hold the same entities (the ones the JSONL output writes): the
    component set them at its own threshold. Other components' entities that none of
    the kept spans overlaps stay.

    doc (Doc): The annotated Doc.
    source (SpanSource): Where its entities are.
    threshold (Optional[float]): The least score kept (None keeps all).
    """
    from spacy.tokens import SpanGroup

    if threshold is None or source.spans_key is None or source.spans_key not in doc.spans:
        return
    group = doc.spans[source.spans_key]
    pairs = list(zip(group, group.attrs.get("scores", [])))
    kept = [(s, sc) for s, sc in pairs if sc >= threshold]
    attrs = dict(group.attrs, scores=[sc for _, sc in kept])
    doc.spans[source.spans_key] = SpanGroup(
        doc, name=group.name, spans=[s for s, _ in kept], attrs=attrs
    )
    scored = {(s.start, s.end, s.label) for s, _ in pairs}
    spans = [s for s, _ in kept]
    taken = {i for s in spans for i in range(s.start, s.end)}
    others = [
        e
        for e in doc.ents
        if (e.start, e.end, e.label) not in scored and taken.isdisjoint(range(e.start, e.end))
    ]
    doc.set_ents(sorted(spans + others, key=lambda s: s.start), default="outside")


def doc_record(
    doc: Doc, source: SpanSource, threshold: Optional[float], with_doc: bool
) -> Dict[str, Any]:
    """What a worker sends back for one annotated Doc.

    doc (Doc): The annotated Doc.
    source (SpanSource): Where its entities are.
    threshold (Optional[float]): The least score kept (None keeps all).
    with_doc (bool): Whether to add the Doc's bytes (for DocBin output).
    RETURNS (Dict[str, Any]): "spans", "words" and, with `with_doc`, "doc" (bytes,
        without the tensor and user data, which a transformer's output would bloat).
    """
    out: Dict[str, Any] = {"spans": doc_spans(doc, source, threshold), "words": len(doc)}
    if with_doc:
        keep_spans(doc, source, threshold)
        out["doc"] = doc.to_bytes(exclude=["tensor", "user_data"])
    return out


def model_fingerprint(model: str) -> Dict[str, Any]:
    """Name a pipeline and its exact weights: its meta's name and version, and a hash
    of the files of its folder (an installed package's folder for a package name).

    model (str): What `spacy.load` takes.
    RETURNS (Dict[str, Any]): "model", "name", "version" and "weights".
    """
    from spacy.util import get_package_path, is_package

    path = Path(model)
    if not path.exists():
        if not is_package(model):
            raise UserError(f"{model}: neither a pipeline folder nor an installed package")
        path = get_package_path(model)
    meta_path = path / "meta.json"
    meta = srsly.read_json(meta_path) if meta_path.is_file() else {}
    return {
        "model": model,
        "name": f"{meta.get('lang', '')}_{meta.get('name', '')}",
        "version": meta.get("version"),
        "weights": hash_folder(path),
    }


def hash_folder(path: Path) -> str:
    """Hash every file under a folder (relative names and contents) in a fixed order,
    leaving out Python's byte-code caches, which differ from machine to machine.

    path (Path): The folder.
    RETURNS (str): The hex digest.
    """
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() + b"\x00")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()
