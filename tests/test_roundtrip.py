"""Convert then export gives back the same tokens, tags and sentences, for any valid IOB2 corpus."""

import tempfile
from pathlib import Path
from typing import List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacy_ntk_ner.bio import write_sentences
from spacy_ntk_ner.cli import iter_docbin_sentences
from spacy_ntk_ner.convert import ReadOptions, convert

TOKEN = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\t\n\r"
    ),
    min_size=1,
    max_size=8,
).filter(lambda s: bool(s.strip()) and not s.startswith("-DOCSTART-"))
LABEL = st.from_regex(r"[A-Za-z][A-Za-z_]{0,7}", fullmatch=True)


@st.composite
def sentence(draw: st.DrawFn) -> Tuple[List[str], List[str]]:
    words = draw(st.lists(TOKEN, min_size=1, max_size=12))
    labels = draw(st.lists(LABEL, min_size=1, max_size=4))
    tags: List[str] = []
    for _ in words:
        choice = draw(st.integers(0, 2))
        prev = tags[-1] if tags else "O"
        if choice == 1 or (choice == 2 and prev == "O"):
            tags.append("B-" + draw(st.sampled_from(labels)))
        elif choice == 2:
            tags.append("I-" + prev[2:])
        else:
            tags.append("O")
    return words, tags


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    corpus=st.lists(sentence(), min_size=1, max_size=8),
    fmt=st.sampled_from(["wikiser", "conll"]),
    n_sents=st.integers(0, 3),
    shard_size=st.integers(1, 4),
)
def test_convert_then_export_round_trips(
    corpus: List[Tuple[List[str], List[str]]], fmt: str, n_sents: int, shard_size: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        with src.open("w", encoding="utf8") as fh:
            write_sentences(fh, corpus, fmt)
        out = Path(tmp) / "out"
        stats = convert([src], out, ReadOptions(n_sents=n_sents), shard_size=shard_size)
        assert stats.repairs == {}
        back = list(iter_docbin_sentences(out))
    assert back == [(list(w), list(t)) for w, t in corpus]
