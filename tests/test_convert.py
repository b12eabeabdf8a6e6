import json
import random
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from spacy.strings import get_string_id
from spacy.symbols import IDS
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus
from spacy.vocab import Vocab
from util import assert_cli_error, run_cli, write

from spacy_ntk_ner.corpus.convert import convert
from spacy_ntk_ner.corpus.docbin_writer import DocBinWriter
from spacy_ntk_ner.corpus.grouping import DocRecord
from spacy_ntk_ner.corpus.options import ReadOptions
from spacy_ntk_ner.corpus.readers import read_bio, record_to_doc
from spacy_ntk_ner.corpus.splits import assign_split
from spacy_ntk_ner.corpus.strings import SYMBOLS, string_ids


def sentence(i: int, n: int = 3) -> str:
    words = [f"w{i}_{j}" for j in range(n)]
    tags = ["B-X"] + ["O"] * (n - 1)
    return "<s>\n" + "".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "</s>\n"


def load_dir(folder: Path) -> List:
    vocab = Vocab()
    docs = []
    for f in sorted(folder.glob("*.spacy")):
        docs.extend(DocBin().from_disk(f).get_docs(vocab))
    return docs


def test_docbin_writer_matches_spacy(tmp_path: Path) -> None:
    # "HEAD", "number" and "LOC" are spaCy symbols with fixed ids, not hashes.
    rec = DocRecord(
        words=["HEAD", "number", "gethostbyname( )", "Übung", "."],
        spaces=[True, True, True, False, False],
        iob=[3, 1, 2, 3, 2],
        labels=["LOC", "LOC", "", "Error_Name", ""],
        sent_starts=[1, -1, -1, 1, -1],
        n_sents=2,
    )
    writer = DocBinWriter()
    writer.add(rec)
    writer.to_disk(tmp_path / "a.spacy")
    vocab = Vocab()
    (ours,) = DocBin().from_disk(tmp_path / "a.spacy").get_docs(vocab)
    theirs = record_to_doc(rec, vocab)
    assert ours.text == theirs.text == "HEAD number gethostbyname( ) Übung."
    assert [t.text for t in ours] == rec.words
    assert [(e.text, e.label_) for e in ours.ents] == [
        ("HEAD number", "LOC"),
        ("Übung", "Error_Name"),
    ]
    assert [s.text for s in ours.sents] == [s.text for s in theirs.sents]
    assert (
        ours.to_array(["ENT_IOB", "ENT_TYPE"]).tolist()
        == theirs.to_array(["ENT_IOB", "ENT_TYPE"]).tolist()
    )


def test_string_ids_are_spacys() -> None:
    """The writer's ids, computed without spaCy, are `get_string_id`'s: every symbol,
    and hashes of strings of every length mod 8, non-ASCII ones and a long one."""
    assert {name: i for i, name in enumerate(SYMBOLS)} == IDS
    rng = random.Random(0)
    strings = [
        "".join(rng.choice("aZ-_.Ü€😀 \t") for _ in range(rng.randrange(40))) for _ in range(3000)
    ]
    strings += [*IDS, "ORG", "Error_Name", "x" * 1001]
    assert string_ids(strings) == [get_string_id(s) for s in strings]
    assert string_ids([]) == []


def test_docbin_writer_writes_spacys_own_message(tmp_path: Path) -> None:
    """The writer's msgpack message has exactly the keys, attrs and token columns of
    spaCy's `DocBin.to_bytes` for the same Doc, so a spaCy upgrade that changes the
    format fails here and not when a user loads a corpus."""
    import zlib

    import srsly

    words = ["HEAD", "number", "gethostbyname( )", "Übung", "."]
    spaces = [True, True, True, False, False]
    tags = ["B-LOC", "I-LOC", "O", "B-Error_Name", "O"]
    vocab = Vocab()
    doc = Doc(
        vocab, words=words, spaces=spaces, ents=tags, sent_starts=[True, False, False, True, False]
    )
    theirs_bin = DocBin(attrs=["ORTH", "ENT_IOB", "ENT_TYPE", "SENT_START"])
    theirs_bin.add(doc)
    theirs = srsly.msgpack_loads(zlib.decompress(theirs_bin.to_bytes()))
    writer = DocBinWriter()
    writer.add(
        DocRecord(
            words=words,
            spaces=spaces,
            iob=[3, 1, 2, 3, 2],
            labels=["LOC", "LOC", "", "Error_Name", ""],
            sent_starts=[1, -1, -1, 1, -1],
        )
    )
    ours = srsly.msgpack_loads(zlib.decompress(writer.to_bytes()))
    assert sorted(ours) == sorted(theirs)
    for key in ("version", "attrs", "tokens", "spaces", "lengths", "cats", "span_groups"):
        assert ours[key] == theirs[key], key
    assert set(ours["strings"]) == set(theirs["strings"])
    assert [f["has_unknown_spaces"] for f in ours["flags"]] == [
        f["has_unknown_spaces"] for f in theirs["flags"]
    ]


def test_convert_split_is_stable_and_keeps_docs_whole(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for i in range(30):
        write(corpus, f"art{i:02d}.txt", sentence(i) + sentence(100 + i))
    out = tmp_path / "out"
    stats = convert([corpus], out, ReadOptions(n_sents=1), split="train=0.6,dev=0.4", seed=3)
    assert stats.files == 30
    splits = {}
    for name in ("train", "dev"):
        for doc in load_dir(out / name):
            splits.setdefault(doc[0].text.split("_")[0][1:], set()).add(name)
    # Each article's two sentences went to one split.
    assert all(len(v) == 1 for v in splits.values())
    assert stats.splits["train"].docs + stats.splits["dev"].docs == 60
    # Adding articles does not move the old ones.
    for i in range(30, 60):
        write(corpus, f"art{i:02d}.txt", sentence(i))
    convert([corpus], out, ReadOptions(), split="train=0.6,dev=0.4", seed=3)
    for name in ("train", "dev"):
        for doc in load_dir(out / name):
            key = doc[0].text.split("_")[0][1:]
            if int(key) < 30:
                assert splits[key] == {name}


def test_split_of_plain_sentences_is_by_content() -> None:
    splits = [("a", 0.5), ("b", 0.5)]
    assert assign_split("x", splits, 0) == assign_split("x", splits, 0)
    got = {assign_split(str(i), splits, 0) for i in range(50)}
    assert got == {"a", "b"}


def test_shards_n_sents_and_spacy_corpus(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "".join(sentence(i) for i in range(10)))
    out = tmp_path / "out"
    stats = convert([path], out, ReadOptions(n_sents=3), shard_size=2)
    assert stats.splits["all"].docs == 4
    assert stats.splits["all"].shards == 2
    assert stats.splits["all"].sentences == 10
    docs = load_dir(out)
    assert [len(list(d.sents)) for d in docs] == [3, 3, 3, 1]
    # `spacy train` reads the folder as it is.
    nlp = spacy.blank("en")
    examples = list(Corpus(out)(nlp))
    assert len(examples) == 4
    assert sum(len(eg.reference.ents) for eg in examples) == 10
    report = json.loads((out / "stats.json").read_text())
    assert report["splits"]["all"]["entities"] == {"X": 10}


def test_rerun_replaces_old_shards(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "".join(sentence(i) for i in range(6)))
    out = tmp_path / "out"
    convert([path], out, shard_size=1)
    assert len(list(out.glob("*.spacy"))) == 6
    convert([path], out, shard_size=10, overwrite=True)
    assert len(list(out.glob("*.spacy"))) == 1


def test_read_bio_docs(tmp_path: Path) -> None:
    path = write(tmp_path, "a.conll", "Use\tO\nC++\tB-Language\n(\tO\nfast\tO\n)\tO\n.\tO\n\n")
    (doc,) = read_bio(path)
    assert doc.text == "Use C++ (fast)."
    assert [(e.text, e.label_) for e in doc.ents] == [("C++", "Language")]
    (plain,) = read_bio(path, options=ReadOptions(plain_spaces=True))
    assert plain.text == "Use C++ ( fast ) ."


# Entities next to punctuation, clitics, brackets and quotes, as WikiSER has them.
BOUNDARY_FIXTURE: List[Tuple[str, ...]] = [
    ("It", "runs", "on", "[Linux]", "."),
    ("The", "[neural", "tangent", "kernel]", "(", "[NTK]", ")", "is", "used", "."),
    ("[ANN]", "'s", "weights", "change", ",", "says", "[Jacot]", "."),
    ("Use", '"', "[pip]", '"', "or", "[conda]", ";", "both", "work", "!"),
    ("[Python]", "3", "does", "n't", "need", "[setuptools]", ":", "see", "[PEP", "517]", "."),
    ("Written", "in", "[C++]", ",", "[Rust]", "and", "[Go]", "."),
    ("The", "[x86-64]", "port", "[", "of", "[FreeBSD]", "]", "boots", "."),
    ("It", "costs", "50", "%", "less", "than", "[AWS]", "?"),
    ("[Node.js]", "and", "[Vue.js]", "run", "in", "[V8]", "."),
    ("Call", "[gethostbyname( )]", "from", "[libc]", "."),
]


def test_reconstructed_text_keeps_entity_boundaries(tmp_path: Path) -> None:
    lines = []
    n_ents = 0
    for sent in BOUNDARY_FIXTURE:
        lines.append("<s>")
        inside = False
        for tok in sent:
            word = tok.strip("[]") if tok not in ("[", "]") else tok
            starts, ends = tok.startswith("[") and tok != "[", tok.endswith("]") and tok != "]"
            tag = "B-E" if starts else "I-E" if inside else "O"
            n_ents += starts
            inside = (inside or starts) and not ends
            lines.append(f"{word}\t{tag}")
        lines.append("</s>")
    path = write(tmp_path, "b.txt", "\n".join(lines) + "\n")
    nlp = spacy.blank("en")
    kept = total = 0
    for doc in read_bio(path, nlp.vocab):
        retok = nlp.make_doc(doc.text)
        for ent in doc.ents:
            total += 1
            kept += retok.char_span(ent.start_char, ent.end_char) is not None
    assert total == n_ents
    assert kept / total >= 0.998 or total - kept == 0, (kept, total)


def test_cli_convert_report_and_export(tmp_path: Path) -> None:
    src = write(tmp_path, "in.txt", sentence(1) + sentence(2) + "<s>\nx\tO\ny\tI-X\n</s>\n")
    res = run_cli(["convert", str(src), str(tmp_path / "out"), "--shard-size", "2"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "tokens" in res.stdout and "I- without B-" in res.stdout
    assert f"{src}:13: 'I-X' follows O" in res.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["repairs"]["I- without B-"]["count"] == 1
    for fmt, marker in (("wikiser", "<s>\n"), ("conll", "\n\n")):
        out = tmp_path / f"back.{fmt}"
        res = run_cli(["export", str(tmp_path / "out"), str(out), "--format", fmt], tmp_path)
        assert res.returncode == 0, res.stderr
        text = out.read_text()
        assert marker in text
        assert "y\tB-X" in text and "w1_0\tB-X" in text


@pytest.mark.parametrize(
    "content,args,message",
    [
        (b"a\tO\nb\xff\tO\n", [], "in.txt:2: not valid UTF-8"),
        (b"a\tO\nb\n", [], "in.txt:2: token 'b' has no tag"),
        (b"<s>\na\tO\n", [], "in.txt:1: <s> without </s>"),
        (b"", [], "in.txt:1: empty file"),
        (b"a\tB-X\nb\tO\nc\tI-X\n", ["--on-invalid", "error"], "in.txt:3: 'I-X' follows O"),
        (b"a\tO\n", ["--split", "train=0.5,dev=0.4"], "--split: the fractions add up to 0.9"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, content: bytes, args: List[str], message: str
) -> None:
    (tmp_path / "in.txt").write_bytes(content)
    res = run_cli(["convert", "in.txt", "out", *args], tmp_path)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith(message)
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_missing_input_and_bad_option(tmp_path: Path) -> None:
    res = run_cli(["convert", "nope.txt", "out"], tmp_path)
    assert_cli_error(res, "nope.txt", "no such file")
    res = run_cli(["convert", "nope.txt", "out", "--tag-column", "1"], tmp_path)
    assert res.returncode == 2
    assert "column 1 holds the tokens" in res.stderr
    res = run_cli(["export", "nope", "out.txt"], tmp_path)
    assert_cli_error(res, "nope", "no such file")


def test_directory_is_read_recursively_with_glob(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write(corpus, "a/one.bio", sentence(1))
    write(corpus, "b/c/two.bio", sentence(2) + sentence(3))
    write(corpus, "b/notes.md", "not a corpus file\n")
    write(corpus, ".hidden/three.bio", sentence(4))
    stats = convert([corpus], tmp_path / "out", ReadOptions(n_sents=0, glob="*.bio"))
    assert stats.files == 2
    # One Doc per file: a file is a document.
    assert [len(d) for d in load_dir(tmp_path / "out")] == [3, 6]
    with pytest.raises(ValueError, match="no files matching"):
        convert([corpus], tmp_path / "out2", ReadOptions(glob="*.nothing"))


def test_bio_corpus_reader(tmp_path: Path) -> None:
    from spacy.util import registry

    path = write(tmp_path, "a.txt", sentence(1) + sentence(2))
    reader = registry.readers.get("spacy_ntk_ner.BIOCorpus.v1")(path, n_sents=1)
    examples = list(reader(spacy.blank("en")))
    assert [eg.reference.text for eg in examples] == ["w1_0 w1_1 w1_2", "w2_0 w2_1 w2_2"]
    assert [[e.text for e in eg.reference.ents] for eg in examples] == [["w1_0"], ["w2_0"]]
    assert examples[0].predicted.text == examples[0].reference.text


def test_one_document_cannot_be_split(tmp_path: Path) -> None:
    write(tmp_path, "in.txt", sentence(1) + sentence(2))
    res = run_cli(
        ["convert", "in.txt", "out", "--n-sents", "0", "--split", "a=0.5,b=0.5"], tmp_path
    )
    assert_cli_error(res, "--split", "single document")
    assert not (tmp_path / "out").exists()


def test_visualize_limit_zero_is_refused(tmp_path: Path) -> None:
    res = run_cli(["visualize", "model", "data.spacy", "out.html", "--limit", "0"], tmp_path)
    assert res.returncode == 2
    assert "--limit: must be 1 or more, not 0" in res.stderr


def test_convert_says_how_each_file_is_written(tmp_path: Path) -> None:
    """Per file, on screen and in stats.json: block format, delimiter, tag column and
    scheme, each with what decided it (the option, or what the sample showed)."""
    write(tmp_path, "in/a.txt", sentence(1) + sentence(2))
    write(
        tmp_path,
        "in/b.txt",
        "Python S-Language CTC_PRED:0 pred_seg_label:O\nruns O CTC_PRED:0 pred_seg_label:O\n\n"
        "Linux S-OS CTC_PRED:1 pred_seg_label:O\n\n",
    )
    write(tmp_path, "in/c.txt", "Linux\tB-OS\nruns\tO\n\n")
    res = run_cli(["convert", "in", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    dialects = json.loads((tmp_path / "out" / "stats.json").read_text())["dialects"]
    assert sorted(dialects) == ["in/a.txt", "in/b.txt", "in/c.txt"]
    a, b = dialects["in/a.txt"], dialects["in/b.txt"]
    assert (a["block_format"], a["tag_column"], a["scheme"]) == ("wikiser", 2, "iob2")
    assert a["evidence"]["block_format"] == "first line <s>"
    assert a["evidence"]["delimiter"] == "tabs on 6 of 6 token lines"
    assert (b["block_format"], b["tag_column"], b["scheme"]) == ("conll", 2, "bioes")
    assert b["evidence"]["tag_column"] == "the only tag column of 4"
    assert b["evidence"]["scheme"] == "2 E-/S-/L-/U- tags in 3 lines"
    assert "in/a.txt: <s> blocks (first line <s>)" in res.stdout
    assert "tags in column 2 (the only tag column of 4), BIOES" in res.stdout
    # Set by options: the evidence names them.
    res = run_cli(
        ["convert", "in/c.txt", "out2", "--scheme", "iob2", "--tag-column", "2"], tmp_path
    )
    assert res.returncode == 0, res.stderr
    c = json.loads((tmp_path / "out2" / "stats.json").read_text())["dialects"]
    (only,) = c.values()
    assert only["evidence"]["scheme"] == "--scheme"
    assert only["evidence"]["tag_column"] == "--tag-column"
    assert "in/c.txt: blank lines (no <s>), tab, else whitespace" in res.stdout
