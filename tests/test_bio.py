import random
from pathlib import Path
from typing import List, Tuple

import pytest
from util import assert_user_error, write

from spacy_ntk_ner.corpus.dialect import detect_dialect
from spacy_ntk_ner.corpus.files import BIOError, numbered_lines
from spacy_ntk_ner.corpus.grouping import space_after
from spacy_ntk_ner.corpus.reader import read_sentences
from spacy_ntk_ner.corpus.repair import Repair

WIKISER = """<s>
QEMU\tB-Application
uses\tO
gethostbyname( )\tB-Error_Name
and\tO
distributed\tB-Protocol
version\tI-Protocol
control\tI-Protocol
.\tO
</s>
<s>
It\tO
runs\tO
</s>
"""


def ents(path: Path, **kw) -> List[List[Tuple[str, str]]]:
    """Read a file and return each sentence's entities as (text, label)."""
    out = []
    for sent in read_sentences(path, **kw):
        found = []
        for i, code in enumerate(sent.iob):
            if code == 3:
                j = i + 1
                while j < len(sent.iob) and sent.iob[j] == 1:
                    j += 1
                found.append((" ".join(sent.words[i:j]), sent.labels[i]))
        out.append(found)
    return out


def test_wikiser_keeps_tokens_with_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", WIKISER)
    sents = list(read_sentences(path))
    assert [s.words for s in sents] == [
        ["QEMU", "uses", "gethostbyname( )", "and", "distributed", "version", "control", "."],
        ["It", "runs"],
    ]
    assert [s.line for s in sents] == [2, 12]
    assert ents(path)[0] == [
        ("QEMU", "Application"),
        ("gethostbyname( )", "Error_Name"),
        ("distributed version control", "Protocol"),
    ]


def test_conll_blank_lines_whitespace_lines_and_docstart(tmp_path: Path) -> None:
    text = "-DOCSTART- -X- O O\n\nA\tB-X\nb\tO\n \t \nc\tB-Y\n\n-DOCSTART-\td\tO\ne\tB-X\n"
    path = write(tmp_path, "a.conll", text)
    sents = list(read_sentences(path))
    assert [s.words for s in sents] == [["A", "b"], ["c"], ["e"]]
    assert [s.doc_index for s in sents] == [0, 0, 1]
    assert all(s.marked for s in sents)


def test_whitespace_separated_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "Use   B-Lang\nPython\tI-Lang\n\nok O\n".replace("\t", " "))
    assert [s.words for s in read_sentences(path)] == [["Use", "Python"], ["ok"]]
    assert ents(path)[0] == [("Use Python", "Lang")]


def test_softner_extra_columns_take_the_second(tmp_path: Path) -> None:
    text = (
        "Use\tO\tCTC_PRED:0\tpred_seg_label:O\nJava\tB-Language\tCTC_PRED:1\tpred_seg_label:B\n\n"
    )
    path = write(tmp_path, "soft.txt", text)
    assert detect_dialect(path, text.splitlines()).tag_column == 1
    assert ents(path) == [[("Java", "Language")]]


def test_conll2003_two_tag_columns_stop_and_name_them(tmp_path: Path) -> None:
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
    path = write(tmp_path, "c3.txt", text)
    with pytest.raises(BIOError) as err:
        list(read_sentences(path))
    assert "columns 3, 4 all look like BIO tags" in str(err.value)
    assert "--tag-column" in str(err.value)
    for col in (4, -1):
        assert ents(path, tag_column=col) == [[("EU", "ORG"), ("German", "MISC")]]
    assert ents(path, tag_column=3)[0][0] == ("EU", "NP")


def test_iob1_is_detected_and_read_without_repairs(tmp_path: Path) -> None:
    text = "a\tI-X\nb\tI-X\nc\tB-X\nd\tO\ne\tI-Y\n\n"
    path = write(tmp_path, "iob1.txt", text)
    repairs: List[Repair] = []
    assert ents(path, on_repair=repairs.append) == [[("a b", "X"), ("c", "X"), ("e", "Y")]]
    assert repairs == []
    # Read as IOB2, the same text needs repairs but gives the same entities.
    assert ents(path, scheme="iob2", on_repair=repairs.append) == [
        [("a b", "X"), ("c", "X"), ("e", "Y")]
    ]
    assert {r.kind for r in repairs} == {"I- without B-"}


@pytest.mark.parametrize("single,last", [("S", "E"), ("U", "L")])
def test_bioes_and_bilou(tmp_path: Path, single: str, last: str) -> None:
    text = f"a\tB-X\nb\tI-X\nc\t{last}-X\nd\tO\ne\t{single}-Y\nf\t{single}-Y\n\n"
    path = write(tmp_path, "s.txt", text)
    repairs: List[Repair] = []
    assert ents(path, on_repair=repairs.append) == [[("a b c", "X"), ("e", "Y"), ("f", "Y")]]
    assert repairs == []


@pytest.mark.parametrize(
    "tags,expected,kind,line",
    [
        (["O", "I-X", "I-X"], [("b c", "X")], "I- without B-", 2),
        (["B-Y", "I-X"], [("a", "Y"), ("b", "X")], "I- without B-", 2),
        (["B", "O"], [], "unknown tag", 1),
        (["Foo", "O"], [], "unknown tag", 1),
    ],
)
def test_iob2_repairs(
    tmp_path: Path, tags: List[str], expected: List[Tuple[str, str]], kind: str, line: int
) -> None:
    words = "abc"[: len(tags)]
    path = write(tmp_path, "r.txt", "".join(f"{w}\t{t}\n" for w, t in zip(words, tags)))
    repairs: List[Repair] = []
    assert ents(path, scheme="iob2", on_repair=repairs.append) == [expected]
    assert [(r.kind, r.line) for r in repairs] == [(kind, line)]
    if tags[0] == "B":
        assert "tag 'B' has no entity label" in repairs[0].message
    with pytest.raises(BIOError) as err:
        list(read_sentences(path, scheme="iob2", on_invalid="error"))
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_bioes_repairs(tmp_path: Path) -> None:
    path = write(tmp_path, "r.txt", "a\tE-X\nb\tO\nc\tB-X\nd\tO\ne\tS-Y\n\n")
    repairs: List[Repair] = []
    assert ents(path, scheme="bioes", on_repair=repairs.append) == [
        [("a", "X"), ("c", "X"), ("e", "Y")]
    ]
    assert [(r.kind, r.line) for r in repairs] == [("E- without B-", 1), ("entity without E-", 3)]


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "w.txt", "\ufeff<s>\r\nA\tB-X\r\nb\tO\r\n</s>\r\n")
    sents = list(read_sentences(path))
    assert sents[0].words == ["A", "b"]
    assert sents[0].labels == ["X", ""]


@pytest.mark.parametrize(
    "data,line,message",
    [
        (b"a\tO\n\xff\xfe\tO\n", 2, "not valid UTF-8"),
        (b"a\tO\nb\x00\tO\n", 2, "NUL byte"),
        (b"a\tO\nb\n\n", 2, "token 'b' has no tag"),
        (b"<s>\na\tO\n<s>\nb\tO\n</s>\n", 1, "<s> without </s>"),
        (b"<s>\na\tO\n", 1, "<s> without </s>"),
        (b"<s>\na\tO\n</s>\nb\tO\n", 4, "token outside <s> ... </s>"),
        (b"", 1, "empty file"),
        (b"\n \n\n", 1, "empty file"),
    ],
)
def test_bad_input_names_file_and_line(
    tmp_path: Path, data: bytes, line: int, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(BIOError) as err:
        list(read_sentences(path))
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BIOError, match="no such file"):
        list(read_sentences(tmp_path / "nope.txt"))


@pytest.mark.parametrize(
    "words,text",
    [
        (["the", "kernel", "(", "NTK", ")", "is", "ANN", "'s", "."], "the kernel (NTK) is ANN's."),
        (["it", "does", "n't", ",", "really", ";", "50", "%", "!"], "it doesn't, really; 50%!"),
        (["he", "said", '"', "hi", '"', "twice"], 'he said "hi" twice'),
        (["a", "[", "b", "]", "(", ")", "c"], "a [b] () c"),
    ],
)
def test_space_reconstruction(words: List[str], text: str) -> None:
    spaces = space_after(words)
    spaces[-1] = False
    assert "".join(w + (" " if s else "") for w, s in zip(words, spaces)) == text


def space_after_by_token(words: List[str]) -> List[bool]:
    """The spacing rules of `space_after`, applied at every token in turn."""
    before = set(". , ; : ! ? ) ] } % ... … 's 'S n't N'T 're 've 'll 'd 'm ' '' ”".split())
    after = set("( [ { $ # “ ``".split())
    spaces = [True] * len(words)
    open_quote = False
    for i, word in enumerate(words):
        if word == '"':
            if open_quote:
                spaces[i - 1] = False
            elif i + 1 < len(words):
                spaces[i] = False
            open_quote = not open_quote
        elif word in before and i > 0 and words[i - 1] not in after:
            spaces[i - 1] = False
        elif word in after and i + 1 < len(words):
            spaces[i] = False
    return spaces


def test_space_reconstruction_matches_rules_at_every_token() -> None:
    rng = random.Random(0)
    vocab = ['"', "(", ")", "``", "''", "'s", ".", "$", "“", "”", "a", "b", "%", "'"]
    for _ in range(3000):
        words = [rng.choice(vocab) for _ in range(rng.randrange(1, 12))]
        assert space_after(words) == space_after_by_token(words), words


def tagged(pairs: List[Tuple[str, str]], sep: str = "\t") -> str:
    return "".join(f"{w}{sep}{t}\n" for w, t in pairs)


def test_one_stray_bioes_tag_does_not_switch_the_scheme(tmp_path: Path) -> None:
    body = "".join(
        tagged([(f"a{i}", "B-X"), (f"b{i}", "I-X"), ("c", "O")]) + "\n" for i in range(20)
    )
    path = write(tmp_path, "s.txt", body + tagged([("d", "O"), ("e", "S-X")]) + "\n")
    repairs: List[Repair] = []
    sents = list(read_sentences(path, on_repair=repairs.append))
    assert [(r.kind, r.line) for r in repairs] == [("BIOES tag in IOB file", 82)]
    assert all(s.labels[:2] == ["X", "X"] for s in sents[:20])


def test_tags_of_two_schemes_in_like_numbers_stop_and_name_lines(tmp_path: Path) -> None:
    iob = tagged([("a", "B-X"), ("b", "O")]) * 3
    bioes = tagged([("c", "S-Y"), ("d", "O")]) * 3
    path = write(tmp_path, "m.txt", iob + bioes)
    with pytest.raises(BIOError) as err:
        list(read_sentences(path))
    assert_user_error(str(err.value), str(path), "mix schemes", "7, 9, 11", "1, 3, 5", "--scheme")


def test_delimiter_is_decided_per_line(tmp_path: Path) -> None:
    spaced = tagged([(f"w{i}", "O") for i in range(2100)], sep=" ")
    path = write(tmp_path, "d.txt", spaced + "gethostbyname( )\tB-Error_Name\n")
    repairs: List[Repair] = []
    (sent,) = read_sentences(path, on_repair=repairs.append)
    assert sent.words[-1] == "gethostbyname( )"
    assert sent.labels[-1] == "Error_Name"
    assert repairs == []


def test_lowercase_prefixes_are_read_as_upper_case(tmp_path: Path) -> None:
    path = write(tmp_path, "l.txt", tagged([("C", "b-Language"), ("++", "i-Language"), ("x", "o")]))
    repairs: List[Repair] = []
    assert ents(path, on_repair=repairs.append) == [[("C ++", "Language")]]
    assert repairs == []


@pytest.mark.parametrize(
    "tag,message",
    [
        ("Foo", "tag 'Foo' has no B-/I-/E-/S- prefix"),
        ("X-Foo", "tag 'X-Foo' has no B-/I-/E-/S- prefix"),
        ("B-", "tag 'B-' has no entity label"),
        ("I-", "tag 'I-' has no entity label"),
    ],
)
def test_unknown_tags_are_counted_or_stop(tmp_path: Path, tag: str, message: str) -> None:
    path = write(tmp_path, "u.txt", tagged([("a", "O"), ("b", tag)]))
    repairs: List[Repair] = []
    assert ents(path, on_repair=repairs.append) == [[]]
    assert [(r.kind, r.line, r.message) for r in repairs] == [
        ("unknown tag", 2, f"{message}; read as O")
    ]
    with pytest.raises(BIOError) as err:
        list(read_sentences(path, on_invalid="error"))
    assert str(err.value) == f"{path}:2: {message}; read as O"


def test_cr_only_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "cr.txt", "a\tO\rb\tB-X\r\r")
    with pytest.raises(BIOError) as err:
        list(read_sentences(path))
    assert_user_error(str(err.value), str(path), "CR only")


@pytest.mark.parametrize("data", [b"a\tO\rb\tB-X\r\r", b"one\rtwo\n", b"\xef\xbb\xbfone\rtwo"])
def test_cr_only_rule_is_one_for_every_reader(tmp_path: Path, data: bytes) -> None:
    # The converter and annotate's text and JSONL readers all read through numbered
    # lines, so a CR-only file is refused the same way by each.
    path = tmp_path / "cr.txt"
    path.write_bytes(data)
    with pytest.raises(BIOError) as by_lines:
        list(numbered_lines(path))
    with pytest.raises(BIOError) as by_reader:
        list(read_sentences(path))
    assert (
        str(by_lines.value)
        == str(by_reader.value)
        == (f"{path}: lines end with CR only (old Mac line ends); convert them to LF first")
    )
    path.write_bytes(data.replace(b"\r", b"\r\n"))
    assert all(not raw.rstrip(b"\r\n").count(b"\r") for _, raw in numbered_lines(path))


def test_long_tokens_and_tags_are_shortened_in_messages(tmp_path: Path) -> None:
    long = "x" * 5000
    path = write(tmp_path, "t.txt", f"a\tO\n{long}\n")
    with pytest.raises(BIOError) as err:
        list(read_sentences(path))
    assert_user_error(str(err.value), f"{path}:2", f"'{'x' * 200}... (5,000 characters)'", "no tag")
    path = write(tmp_path, "g.txt", f"a\tO\nb\tB-{long}\nc\tI-Y\n")
    repairs: List[Repair] = []
    list(read_sentences(path, on_repair=repairs.append))
    assert all(len(r.message) < 400 for r in repairs) and repairs
