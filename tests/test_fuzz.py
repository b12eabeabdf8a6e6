"""Mutated BIO files: every run converts with the token count kept, or stops with one
`FILE:LINE:` (or `FILE:`) line and exit status 1, never a traceback."""

import io
import re
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import List, Tuple
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from spacy_ntk_ner.cli import main
from spacy_ntk_ner.corpus import reader
from spacy_ntk_ner.corpus.files import BIOError
from spacy_ntk_ner.corpus.reader import read_sentences
from spacy_ntk_ner.corpus.repair import TagDecoder

WORDS = ["QEMU", "uses", "gethostbyname( )", "C++", ",", "Linux", "(", "NTK", ")", "."]
TAGS = ["O", "B-Application", "I-Application", "B-Language", "I-Language", "O"]
ODD_TAGS = ["S-X", "E-X", "b-Language", "i-lang", "o", "Foo", "X-Foo", "B-", "I", "L-X", "U-Y"]
INSERTS = ["\t", " ", "\ufeff", "\r", "\x00", "\t\t", "  ", "-DOCSTART-", "<s>", "</s>"]


@st.composite
def bio_file(draw: st.DrawFn) -> Tuple[List[str], bool]:
    wikiser = draw(st.booleans())
    lines: List[str] = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 6))
        body = [f"{draw(st.sampled_from(WORDS))}\t{draw(st.sampled_from(TAGS))}" for _ in range(n)]
        lines.extend(["<s>", *body, "</s>"] if wikiser else [*body, ""])
    return lines, wikiser


MUTATION = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "insert", "tag"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.sampled_from(INSERTS + ODD_TAGS),
)


def mutate(lines: List[str], ops: List[Tuple[str, int, int, str]]) -> List[str]:
    lines = list(lines)
    for kind, a, b, payload in ops:
        if not lines:
            break
        i, j = a % len(lines), b % len(lines)
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            pos = b % (len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + payload + lines[i][pos:]
        elif "\t" in lines[i]:
            lines[i] = lines[i].split("\t")[0] + "\t" + payload
    return lines


def expected_tokens(data: bytes) -> int:
    """Token lines, counted apart from the package: not blank, no <s>/</s>, no -DOCSTART-."""
    n = 0
    for k, raw in enumerate(data.split(b"\n")):
        line = raw.decode("utf8").rstrip("\r")
        if k == 0:
            line = line.removeprefix("\ufeff")
        stripped = line.strip()
        if stripped in ("", "<s>", "</s>"):
            continue
        if line.startswith("-DOCSTART-") and (len(line) == 10 or line[10].isspace()):
            continue
        n += 1
    return n


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=bio_file(), ops=st.lists(MUTATION, min_size=1, max_size=4), crlf=st.booleans())
def test_mutated_files_convert_or_fail_in_one_line(
    base: Tuple[List[str], bool], ops: List[Tuple[str, int, int, str]], crlf: bool
) -> None:
    lines = mutate(base[0], ops)
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf8") + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        src.write_bytes(data)
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            status = main(["convert", str(src), str(Path(tmp) / "out"), "--quiet"])
        event(f"exit status {status}")
        if status == 0:
            stats = (Path(tmp) / "out" / "stats.json").read_text()
            tokens = int(re.search(r'"tokens": (\d+)', stats).group(1))  # type: ignore[union-attr]
            assert tokens == expected_tokens(data)
            assert err.getvalue() == ""
        else:
            assert status == 1
            message = err.getvalue().splitlines()
            assert len(message) == 1, message
            assert re.match(rf"{re.escape(str(src))}(:\d+)?: \S", message[0]), message
            assert not (Path(tmp) / "out").exists()


def read_all(path: Path, on_invalid: str) -> Tuple[list, list, str]:
    """Every sentence, repair and error of reading a file, as plain values."""
    sentences: list = []
    repairs: list = []
    try:
        for s in read_sentences(path, on_invalid=on_invalid, on_repair=repairs.append):
            sentences.append((s.words, s.iob, s.labels, s.line, s.doc_index, s.marked))
    except BIOError as err:
        return sentences, repairs, str(err)
    return sentences, repairs, ""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=bio_file(),
    ops=st.lists(MUTATION, max_size=3),
    crlf=st.booleans(),
    chunk=st.sampled_from([1, 16, 64, 1 << 20]),
    on_invalid=st.sampled_from(["repair", "error"]),
)
def test_block_reader_reads_as_line_by_line(
    base: Tuple[List[str], bool],
    ops: List[Tuple[str, int, int, str]],
    crlf: bool,
    chunk: int,
    on_invalid: str,
) -> None:
    """The chunked `<s>` block reader and the IOB2 decoder's shortcut give the sentences,
    repairs and errors of reading every line on its own and decoding every tag."""
    lines = mutate(base[0], ops)
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf8") + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        src.write_bytes(data)
        with mock.patch.object(reader, "CHUNK_BYTES", chunk):
            fast = read_all(src, on_invalid)
        with mock.patch.object(reader, "_reads_by_block", lambda dialect: False):
            with mock.patch.object(TagDecoder, "need_no_repair", lambda self, *args: False):
                slow = read_all(src, on_invalid)
    event(f"error: {bool(slow[2])}")
    assert fast == slow
