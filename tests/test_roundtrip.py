"""Convert then export gives back the same tokens, tags and sentences, for any valid IOB2 corpus."""

import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_ntk_ner.cli import main
from spacy_ntk_ner.corpus.convert import convert
from spacy_ntk_ner.corpus.docbin import iter_docbin_sentences
from spacy_ntk_ner.corpus.options import ReadOptions
from spacy_ntk_ner.corpus.writer import write_sentences

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


# Tokens spaCy can make, BIO-unwritable ones included: whitespace, tabs, line breaks.
ANY_TOKEN = st.one_of(
    TOKEN,
    st.sampled_from(
        ["  ", "\n", "\t", "a\tb", "x\ny", "-DOCSTART-", "-DOCSTART- x", "<s>", "</s>"]
    ),
    st.text(alphabet=" \t\r\n\x00\x0babc", min_size=1, max_size=4),
)
ANY_LABEL = st.one_of(LABEL, st.sampled_from(["Two words", "Data_Structure"]))


def writable(word: str) -> bool:
    """Whether a token can be a line of BIO text, decided apart from the package."""
    if not word.strip() or any(c in word for c in "\t\n\r\x00"):
        return False
    return not (word.startswith("-DOCSTART-") and (len(word) == 10 or word[10].isspace()))


@st.composite
def spacy_doc(draw: st.DrawFn) -> Tuple[List[str], List[Optional[str]], List[bool]]:
    words = draw(st.lists(ANY_TOKEN, min_size=1, max_size=8))
    tags: List[Optional[str]] = []
    for _ in words:
        choice = draw(st.integers(0, 3))
        prev = tags[-1] if tags else None
        if choice == 1 or (choice == 2 and not (prev or "O").startswith(("B-", "I-"))):
            tags.append("B-" + draw(ANY_LABEL))
        elif choice == 2:
            tags.append("I-" + (prev or "")[2:])
        else:
            tags.append(None if choice == 3 else "O")  # None: annotation missing
    starts = [True] + [draw(st.booleans()) for _ in words[1:]]
    return words, tags, starts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(spacy_doc(), min_size=1, max_size=4), fmt=st.sampled_from(["wikiser", "conll"])
)
# An entity across a sentence start: BIO would read it back as two (found by this test).
@example(docs=[(["0", "0", "0"], ["O", "B-A", "I-A"], [True, False, True])], fmt="wikiser")
def test_export_of_spacy_docbins_round_trips_or_refuses(
    docs: List[Tuple[List[str], List[Optional[str]], List[bool]]], fmt: str
) -> None:
    """convert(export(x)) has x's tokens, IOB2 tags (missing -> O) and sentence starts;
    a DocBin BIO cannot hold is refused and nothing is written."""
    vocab = Vocab()
    made = [Doc(vocab, words=w, ents=t, sent_starts=s) for w, t, s in docs]
    with tempfile.TemporaryDirectory() as tmp:
        DocBin(docs=made).to_disk(Path(tmp) / "x.spacy")
        bio = Path(tmp) / "x.txt"
        status = main(["export", str(Path(tmp) / "x.spacy"), str(bio), "--format", fmt])
        crosses = any(
            start and (tag or "").startswith("I-")
            for _, tags, starts in docs
            for tag, start in list(zip(tags, starts))[1:]
        )
        if crosses or not all(writable(w) for w, _, _ in docs for w in w):
            assert status == 1 and not bio.exists()
            return
        assert status == 0
        convert([bio], Path(tmp) / "back", ReadOptions(n_sents=2))
        back = [
            d
            for f in sorted((Path(tmp) / "back").glob("*.spacy"))
            for d in DocBin().from_disk(f).get_docs(vocab)
        ]
    flat = [
        (w, t or "O", s) for words, tags, starts in docs for w, t, s in zip(words, tags, starts)
    ]
    assert [
        (
            tok.text,
            f"{tok.ent_iob_}-{tok.ent_type_}" if tok.ent_type_ else "O",
            bool(tok.is_sent_start),
        )
        for doc in back
        for tok in doc
    ] == flat


def test_export_of_a_folder_keeps_shard_order(tmp_path: Path) -> None:
    vocab = Vocab()
    for n, word in ((100000, "third"), (99999, "second"), (2, "first")):
        DocBin(docs=[Doc(vocab, words=[word])]).to_disk(tmp_path / f"shard-{n}.spacy")
    assert [w for w, _ in iter_docbin_sentences(tmp_path)] == [["first"], ["second"], ["third"]]
