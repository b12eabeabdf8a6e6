import gzip
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import DocBin
from util import (
    assert_cli_error,
    assert_user_error,
    char_examples,
    run_cli,
    train_pipeline,
    write,
)

from spacy_ntk_ner.annotate import (
    AnnotateOptions,
    InputOptions,
    Settings,
    annotate,
    job,
    run_annotation,
)
from spacy_ntk_ner.annotate.engines import local
from spacy_ntk_ner.annotate.engines.local import pool_size, run_pool
from spacy_ntk_ner.annotate.engines.ray import check_nodes
from spacy_ntk_ner.annotate.records import SpanSource
from spacy_ntk_ner.annotate.report import format_annotate_report
from spacy_ntk_ner.corpus.files import BIOError
from spacy_ntk_ner.corpus.grouping import space_after
from spacy_ntk_ner.errors import UserError

TRAIN = [
    ("I like London and Berlin .", [(7, 13, "LOC"), (18, 24, "LOC")]),
    ("Guido van Rossum wrote Python .", [(0, 16, "PER"), (23, 29, "LANG")]),
    ("Python runs on Linux", [(0, 6, "LANG"), (15, 20, "OS")]),
    ("Berlin is big", [(0, 6, "LOC")]),
]
# Empty and whitespace-only documents among the others, and a repeated text.
TEXTS = [
    "I like London and Berlin .",
    "",
    "Python runs on Linux",
    "   ",
    "Guido van Rossum wrote Python .",
    "Berlin is big",
    "Linux and Python and London",
    "I like London and Berlin .",
]


def _train(components: Dict[str, Dict[str, Any]], steps: int = 25) -> Language:
    nlp, _ = train_pipeline(lambda nlp: char_examples(nlp, TRAIN), components, steps=steps)
    return nlp


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small pipelines: one ntk_ner, two ntk_ners, and spaCy's own ner."""
    folder = tmp_path_factory.mktemp("models")
    _train({"ntk_ner": {}}).to_disk(folder / "ntk")
    _train({"a": {"spans_key": "a"}, "b": {"spans_key": "b"}}, steps=5).to_disk(folder / "two")
    _train({"ner": {"factory": "ner"}}, steps=10).to_disk(folder / "ner")
    return folder


def expected(
    model: Path, texts: List[str], key: Optional[str] = "ntk_ner", threshold: float = 0.0
) -> List[List[Tuple]]:
    """Spans and scores (those of at least `threshold`) straight from the pipeline, one
    text at a time."""
    nlp = spacy.load(model)
    out = []
    for text in texts:
        doc = nlp(text)
        if key is None:
            pairs: List[Any] = [(e, None) for e in doc.ents]
        else:
            pairs = list(zip(doc.spans[key], doc.spans[key].attrs["scores"]))
            pairs = [(s, sc) for s, sc in pairs if sc >= threshold]
        out.append(
            [(s.start_char, s.end_char, s.start, s.end - 1, s.label_, sc) for s, sc in pairs]
        )
    return out


def lines(out: Path) -> List[Dict[str, Any]]:
    return [
        json.loads(line)
        for shard in sorted(out.glob("shard-*.jsonl"))
        for line in shard.read_text("utf8").splitlines()
    ]


def spans_of(line: Dict[str, Any]) -> List[Tuple]:
    return [
        (s["start"], s["end"], s["token_start"], s["token_end"], s["label"], s["score"])
        for s in line["spans"]
    ]


def close(a: List[List[Tuple]], b: List[List[Tuple]]) -> bool:
    if [[s[:5] for s in d] for d in a] != [[s[:5] for s in d] for d in b]:
        return False
    pairs = [(x[5], y[5]) for da, db in zip(a, b) for x, y in zip(da, db)]
    return all((x is None and y is None) or abs(x - y) <= 1e-6 for x, y in pairs)


def bio_text(texts: List[str]) -> str:
    """WikiSER-style BIO of the non-blank texts, all tagged O except `Python`."""
    blocks = []
    for text in texts:
        if text.strip():
            rows = [f"{w}\t{'B-LANG' if w == 'Python' else 'O'}" for w in text.split()]
            blocks.append("<s>\n" + "\n".join(rows) + "\n</s>\n")
    return "".join(blocks)


def make_input(folder: Path, fmt: str, texts: List[str]) -> Path:
    gz = fmt.endswith(".gz")
    base = fmt[:-3] if gz else fmt
    if base == "txt":
        data = "".join(t + "\n" for t in texts).encode()
    elif base == "jsonl":
        data = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    elif base == "spacy":
        nlp = spacy.blank("en")
        data = DocBin(docs=[nlp.make_doc(t) for t in texts]).to_bytes()
    else:
        data = bio_text(texts).encode()
    path = folder / f"in.{fmt}"
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize(
    "fmt", ["txt", "txt.gz", "jsonl", "jsonl.gz", "spacy", "spacy.gz", "bio", "bio.gz"]
)
def test_every_input_format(models: Path, tmp_path: Path, fmt: str) -> None:
    path = make_input(tmp_path, fmt, TEXTS)
    options = InputOptions(input_format="bio" if fmt.startswith("bio") else "auto")
    report = annotate(str(models / "ntk"), [path], tmp_path / "out", input_options=options)
    got = lines(tmp_path / "out")
    if fmt.startswith("bio"):
        # The converter's text: spaces reconstructed (no space before the final ".").
        words = [t.split() for t in TEXTS if t.strip()]
        texts = [
            "".join(w + " " * s for w, s in zip(ws, space_after(ws)[:-1] + [False])) for ws in words
        ]
        # Each sentence's id is the line of its first token: <s> lines come between.
        starts, line = [], 1
        for ws in words:
            starts.append(line + 1)
            line += len(ws) + 2
        ids = [f"{path}:{n}" for n in starts]
    elif fmt.startswith("spacy"):
        texts, ids = TEXTS, [f"{path}#{i}" for i in range(len(TEXTS))]
    else:
        texts, ids = TEXTS, [f"{path}:{i + 1}" for i in range(len(TEXTS))]
    assert [g["id"] for g in got] == ids
    assert [g["text"] for g in got] == texts
    assert close([spans_of(g) for g in got], expected(models / "ntk", texts))
    assert report["documents"] == len(texts)
    if fmt.startswith("bio"):
        gold = [[(s["start"], s["end"], s["label"]) for s in g["gold_spans"]] for g in got]
        assert gold == [
            [(t.index("Python"), t.index("Python") + 6, "LANG")] if "Python" in t else []
            for t in texts
        ]


def test_jsonl_ids_meta_and_duplicates(models: Path, tmp_path: Path) -> None:
    rows = [
        {"body": "Python runs on Linux", "id": "a", "source": "x", "n": 1},
        {"body": "Berlin is big", "id": None, "source": "y"},  # a null id counts as none
        {"body": "I like London", "id": "a"},
        {"body": "", "id": 7},
    ]
    path = write(tmp_path, "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    options = InputOptions(text_key="body")
    report = annotate(str(models / "ntk"), [path], tmp_path / "out", input_options=options)
    got = lines(tmp_path / "out")
    assert [g["id"] for g in got] == ["a", f"{path}:2", "a", 7]
    assert [g["meta"] for g in got] == [{"source": "x", "n": 1}, {"source": "y"}, {}, {}]
    assert report["duplicate_ids"] == 1
    assert report["documents"] == 4


def test_one_line_per_document_in_order_across_shards(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    report = annotate(
        str(models / "ntk"), [path], tmp_path / "out", settings=Settings(shard_size=3)
    )
    shards = sorted((tmp_path / "out").glob("shard-*.jsonl"))
    assert [s.name for s in shards] == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    assert [len(s.read_text().splitlines()) for s in shards] == [3, 3, 2]
    got = lines(tmp_path / "out")
    assert [g["id"] for g in got] == [f"{path}:{i + 1}" for i in range(len(TEXTS))]
    assert got[1]["text"] == "" and got[1]["spans"] == []
    assert report["shards"] == 3
    assert report["words"] == sum(len(d) for d in spacy.blank("en").pipe(TEXTS))
    assert sorted(os.listdir(tmp_path / "out")) == [
        ".annotate.lock",
        "manifest.json",
        "report.json",
        *[s.name for s in shards],
    ]


def test_an_options_object_equals_keyword_arguments(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    settings = Settings(shard_size=3, threshold=0.2)
    by_keywords = annotate(str(models / "ntk"), [path], tmp_path / "kw", settings=settings)
    options = AnnotateOptions(settings=settings)
    by_options = run_annotation(str(models / "ntk"), [path], tmp_path / "opt", options)
    assert lines(tmp_path / "opt") == lines(tmp_path / "kw")
    assert by_options["shards"] == by_keywords["shards"] == 3
    with pytest.raises(UserError, match="--engine"):
        run_annotation(str(models / "ntk"), [path], tmp_path / "x", AnnotateOptions(engine="gpu"))


def test_threshold_drops_low_scores(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    annotate(str(models / "ntk"), [path], tmp_path / "all")
    every = [spans_of(g) for g in lines(tmp_path / "all")]
    scores = sorted(s[5] for d in every for s in d)
    t = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # keeps about half
    annotate(str(models / "ntk"), [path], tmp_path / "t", settings=Settings(threshold=t))
    kept = [spans_of(g) for g in lines(tmp_path / "t")]
    assert kept == [[s for s in d if s[5] >= t] for d in every]
    assert 0 < sum(map(len, kept)) < sum(map(len, every))


def test_docbin_output_keeps_scores_ids_and_meta(models: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "in.jsonl",
        "".join(json.dumps({"text": t, "k": i}) + "\n" for i, t in enumerate(TEXTS)),
    )
    annotate(str(models / "ntk"), [path], tmp_path / "j")
    annotate(
        str(models / "ntk"),
        [path],
        tmp_path / "d",
        settings=Settings(output_format="docbin", shard_size=5),
    )
    files = sorted((tmp_path / "d").glob("shard-*.spacy"))
    assert [f.name for f in files] == ["shard-00000.spacy", "shard-00001.spacy"]
    vocab = spacy.blank("en").vocab
    docs = [d for f in files for d in DocBin().from_disk(f).get_docs(vocab)]
    got = [
        [
            (s.start_char, s.end_char, s.start, s.end - 1, s.label_, sc)
            for s, sc in zip(d.spans["ntk_ner"], d.spans["ntk_ner"].attrs["scores"])
        ]
        for d in docs
    ]
    assert close(got, [spans_of(g) for g in lines(tmp_path / "j")])
    assert [d.text for d in docs] == TEXTS
    assert [d.user_data["id"] for d in docs] == [f"{path}:{i + 1}" for i in range(len(TEXTS))]
    assert [d.user_data["meta"] for d in docs] == [{"k": i} for i in range(len(TEXTS))]


def test_plain_ner_gives_ents_without_scores(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    report = annotate(str(models / "ner"), [path], tmp_path / "out")
    got = [spans_of(g) for g in lines(tmp_path / "out")]
    assert got == expected(models / "ner", TEXTS, key=None)
    assert any(got) and all(s[5] is None for d in got for s in d)
    assert all(v is None for v in report["mean_score"].values())


def test_several_ntk_ner_need_component(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    with pytest.raises(
        ValueError, match=r"2 ntk_ner components \(a, b\): pick one with --component"
    ):
        annotate(str(models / "two"), [path], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    annotate(str(models / "two"), [path], tmp_path / "out", component="b")
    assert close(
        [spans_of(g) for g in lines(tmp_path / "out")], expected(models / "two", TEXTS, "b")
    )
    with pytest.raises(ValueError, match="no component 'c'"):
        annotate(str(models / "two"), [path], tmp_path / "out2", component="c")


# Each bad second line, and what its error names besides FILE:2.
BAD_LINES = [
    (b'{"text": "fine"}\n{"text": "Python"\n', ["JSON"]),
    (b'{"text": "fine"}\n{"body": "x"}\n', ["'text'", "--text-key"]),
    (b'{"text": "fine"}\n{"text": 3}\n', ["'text'", "int"]),
    (b'{"text": "fine"}\n["text"]\n', ["JSON object", "list"]),
    (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', ["UTF-8", "0xe9", "column 14"]),
]


@pytest.mark.parametrize("data,about", BAD_LINES)
def test_bad_jsonl_lines_stop_or_are_skipped(
    models: Path, tmp_path: Path, data: bytes, about: List[str]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data + b'{"text": "Berlin is big"}\n')
    model = str(models / "ntk")
    with pytest.raises(BIOError) as err:
        annotate(model, [path], tmp_path / "out")
    assert_user_error(str(err.value), f"{path}:2", *about)
    assert not (tmp_path / "out").exists()
    report = annotate(model, [path], tmp_path / "out2", input_options=InputOptions(on_error="skip"))
    assert [s.split(":")[:2] for s in report["skipped_lines"]] == [[str(path), "2"]]
    assert report["documents"] == 2
    assert [g["text"] for g in lines(tmp_path / "out2")] == ["fine", "Berlin is big"]


def test_cli_bad_line_is_one_line_and_exit_1(models: Path, tmp_path: Path) -> None:
    data, about = BAD_LINES[0]
    (tmp_path / "in.jsonl").write_bytes(data)
    model = str(models / "ntk")
    res = run_cli(["annotate", model, "in.jsonl", "out"], tmp_path)
    assert_cli_error(res, "in.jsonl:2", *about)
    res = run_cli(["annotate", model, "in.jsonl", "out2", "--on-error", "skip"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "in.jsonl:2: " in res.stdout and "Skipped 1 " in res.stdout


def temporary_files(out: Path) -> List[str]:
    """The temporary files in an output folder (of this version and earlier ones)."""
    return sorted(p.name for pattern in (".ntk-tmp-*", ".*.tmp") for p in out.glob(pattern))


@pytest.fixture
def any_size_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--n-process` starts its pool however small the input (these tests' inputs are
    far under `POOL_MIN_CHARS`)."""
    monkeypatch.setattr(local, "POOL_MIN_CHARS", 0)


def workers_left(patience: float = 5.0) -> List[Any]:
    """The child processes still running, waiting up to `patience` seconds for ended
    ones to be reaped (a worker the pool's own thread reaps can read as alive for a
    moment in this process's bookkeeping; a worker left running stays)."""
    deadline = time.monotonic() + patience
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children()


def interrupt_at_batch(n: int) -> Callable[[int, int], None]:
    """A progress callback that raises KeyboardInterrupt at its n-th call."""
    seen: List[int] = []

    def interrupt(docs: int, words: int) -> None:
        seen.append(docs)
        if len(seen) == n:
            raise KeyboardInterrupt

    return interrupt


def test_interrupted_run_resumes_only_missing_shards(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS * 2)
    model = str(models / "ntk")
    settings = Settings(shard_size=4)
    annotate(model, [path], tmp_path / "clean", settings=settings)
    interrupt = interrupt_at_batch(10)  # inside the third of four shards

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        annotate(model, [path], out, settings=settings, on_progress=interrupt)
    assert sorted(p.name for p in out.glob("*shard*")) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    # A run killed outright leaves its temporary file (named so before 0.3 too); the
    # rerun removes it.
    (out / ".ntk-tmp-shard-00002.jsonl").write_text('{"half": ')
    (out / ".shard-00002.jsonl.tmp").write_text('{"half": ')
    time.sleep(0.01)
    report = annotate(model, [path], out, settings=settings)
    assert report["shards_written_now"] == 2 and report["shards"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[01].jsonl")} == first
    for name in (
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
        "shard-00003.jsonl",
    ):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    assert temporary_files(out) == []
    clean = json.loads((tmp_path / "clean" / "report.json").read_text())
    for key in ("documents", "words", "entities", "mean_score"):
        assert report[key] == clean[key]
    again = annotate(model, [path], out, settings=settings)
    assert again["shards_written_now"] == 0 and again["words"] == clean["words"]


def test_rerun_with_other_model_inputs_or_settings_is_refused(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    out = tmp_path / "out"
    annotate(str(models / "ntk"), [path], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # Each names the folder and what differs: the model, the setting, the inputs.
    with pytest.raises(UserError) as err:
        annotate(str(models / "ner"), [path], out)
    assert_user_error(str(err.value), str(out), "model")
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out, settings=Settings(threshold=0.5))
    assert_user_error(str(err.value), str(out), "threshold", "0.5")
    (tmp_path / "b").mkdir()
    other = make_input(tmp_path / "b", "txt", TEXTS[:3])
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [other], out)
    assert_user_error(str(err.value), str(out), "inputs", str(other))
    path.write_text("changed\n")
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out)
    assert_user_error(str(err.value), str(out), "inputs")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    report = annotate(str(models / "ntk"), [path], out, overwrite=True)
    assert report["documents"] == 1 and [g["text"] for g in lines(out)] == ["changed"]


def test_foreign_files_are_refused_and_never_removed(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out)
    assert_user_error(str(err.value), str(out), "notes.txt")
    assert sorted(os.listdir(out)) == ["notes.txt"]
    (out / "notes.txt").unlink()
    annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3))
    (out / "notes.txt").write_text("mine")
    before = sorted(os.listdir(out))
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3), overwrite=True)
    assert_user_error(str(err.value), str(out), "notes.txt")
    assert sorted(os.listdir(out)) == before
    (out / "manifest.json").write_text('{"something": "else"}')
    (out / "notes.txt").unlink()
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out, overwrite=True)
    assert_user_error(str(err.value), str(out / "manifest.json"), "manifest")


def test_a_shard_written_but_not_yet_listed_is_its_own(models: Path, tmp_path: Path) -> None:
    """A run killed between renaming a shard into place and listing it in the manifest
    leaves it unlisted: the rerun knows it as its own shard, and writes it again."""
    path = make_input(tmp_path, "txt", TEXTS)
    out = tmp_path / "out"
    annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3))
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["shards"]["shard-00002.jsonl"]
    manifest["files"] = ["shard-00000.jsonl", "shard-00001.jsonl"]
    manifest_path.write_text(json.dumps(manifest))
    shard = (out / "shard-00002.jsonl").read_bytes()
    (out / "shard-00002.jsonl").write_text("half\n")
    report = annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3))
    assert report["shards_written_now"] == 1
    assert (out / "shard-00002.jsonl").read_bytes() == shard
    # Without a manifest, a file named as a shard is the user's.
    manifest_path.unlink()
    with pytest.raises(UserError) as err:
        annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3))
    assert_user_error(str(err.value), str(out), "shard-00000.jsonl")


def test_overwrite_removes_only_its_own_files(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    out = tmp_path / "out"
    annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=3))
    assert len(list(out.glob("shard-*"))) == 3
    annotate(str(models / "ntk"), [path], out, settings=Settings(shard_size=5), overwrite=True)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["shard-00000.jsonl", "shard-00001.jsonl"]


def test_a_concurrent_run_is_refused(models: Path, tmp_path: Path) -> None:
    """A run holding the lock refuses a second one; killed, it leaves no stale lock."""
    path = make_input(tmp_path, "txt", TEXTS)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "fh = open(sys.argv[1], 'a')\n"
            "fcntl.flock(fh, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
            str(out / ".annotate.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.raises(UserError) as err:
                annotate(str(models / "ntk"), [path], out)
            assert_user_error(str(err.value), str(out), "annotate", ".annotate.lock")
            assert sorted(os.listdir(out)) == [".annotate.lock"]
        finally:
            holder.kill()
    # The lock file outlives its killed holder without blocking anyone.
    assert annotate(str(models / "ntk"), [path], out)["documents"] == len(TEXTS)


def docbin_docs(out: Path) -> List[Any]:
    vocab = spacy.blank("en").vocab
    return [
        d for f in sorted(out.glob("shard-*.spacy")) for d in DocBin().from_disk(f).get_docs(vocab)
    ]


def docbin_spans(docs: List[Any]) -> List[List[Tuple]]:
    return [
        [
            (s.start_char, s.end_char, s.start, s.end - 1, s.label_, sc)
            for s, sc in zip(d.spans["ntk_ner"], d.spans["ntk_ner"].attrs["scores"])
        ]
        for d in docs
    ]


@pytest.mark.parametrize("output_format", ["jsonl", pytest.param("docbin", marks=pytest.mark.slow)])
@pytest.mark.usefixtures("any_size_pool")
def test_two_processes_equal_one(models: Path, tmp_path: Path, output_format: str) -> None:
    path = write(
        tmp_path,
        "in.jsonl",
        "".join(json.dumps({"text": t, "k": i}) + "\n" for i, t in enumerate(TEXTS * 3)),
    )
    # Chunks of 3 documents (the batch size) straddle the shards of 5.
    settings = Settings(shard_size=5, output_format=output_format, threshold=0.2)
    model = str(models / "ntk")
    annotate(model, [path], tmp_path / "one", settings=settings, batch_size=3)
    report = annotate(model, [path], tmp_path / "two", settings=settings, n_process=2, batch_size=3)
    assert workers_left() == []  # the pool is gone
    assert report["documents"] == len(TEXTS) * 3
    if output_format == "jsonl":
        one, two = lines(tmp_path / "one"), lines(tmp_path / "two")
        assert [(g["id"], g["text"], g["meta"]) for g in one] == [
            (g["id"], g["text"], g["meta"]) for g in two
        ]
        got, want = [spans_of(g) for g in two], [spans_of(g) for g in one]
    else:
        docs_one, docs_two = docbin_docs(tmp_path / "one"), docbin_docs(tmp_path / "two")
        assert [(d.text, d.user_data) for d in docs_one] == [
            (d.text, d.user_data) for d in docs_two
        ]
        got, want = docbin_spans(docs_two), docbin_spans(docs_one)
    assert len(want) == len(TEXTS) * 3 and any(want)
    assert close(got, want)
    assert close(want, expected(models / "ntk", TEXTS * 3, threshold=0.2))


def test_pool_size_is_one_process_for_small_inputs() -> None:
    big = local.POOL_MIN_CHARS
    assert pool_size(10_000, big - 1, 2, 256) == 1  # too little text
    assert pool_size(256, big, 2, 256) == 1  # one chunk: nothing to share
    assert pool_size(257, big, 2, 256) == 2
    assert pool_size(3 * 256, big, 8, 256) == 3  # no more workers than chunks
    assert pool_size(10_000, big, 2, 256) == 2


def test_a_small_input_runs_in_one_process_and_says_so(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS * 3)
    seen: List[int] = []

    def count_workers(docs: int, words: int) -> None:
        seen.append(len(multiprocessing.active_children()))

    model = str(models / "ntk")
    report = annotate(model, [path], tmp_path / "two", n_process=2, on_progress=count_workers)
    assert seen and max(seen) == 0  # no worker ever started
    assert report["note"].startswith("--n-process 2: annotated in one process")
    assert report["note"].endswith("fill one chunk of --batch-size 256")
    many_chunks = annotate(model, [path], tmp_path / "two-b", n_process=2, batch_size=2)
    assert many_chunks["note"].endswith("characters take less time than starting worker processes")
    assert "note" not in annotate(model, [path], tmp_path / "one")
    assert lines(tmp_path / "two") == lines(tmp_path / "one")
    summary = format_annotate_report(report, tmp_path / "two")
    assert report["note"] in summary.splitlines()


def test_the_pool_starts_while_the_inputs_are_read(
    models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers start during the scan, once it has found enough text for all of them,
    not after it; the rest of the scan and the job then run with them."""
    monkeypatch.setattr(local, "POOL_MIN_CHARS", 100)
    path = make_input(tmp_path, "txt", TEXTS * 6)
    scanned: List[int] = []
    starts: List[Tuple[int, int]] = []
    scan = job.scan_inputs

    def scan_and_count(*args: Any, **kwargs: Any) -> Any:
        found = scan(*args, **kwargs)
        scanned.append(found.docs)
        return found

    start = local.WorkerPool.start

    def counting_start(pool: Any, n_workers: Optional[int] = None) -> None:
        starts.append((len(scanned), n_workers or pool.n_process))
        start(pool, n_workers)

    monkeypatch.setattr(job, "scan_inputs", scan_and_count)
    monkeypatch.setattr(local.WorkerPool, "start", counting_start)
    report = annotate(str(models / "ntk"), [path], tmp_path / "out", n_process=2, batch_size=4)
    assert starts and starts[0] == (0, 2)  # started before the scan had returned
    assert "note" not in report and report["documents"] == scanned[0]
    assert workers_left() == []


@pytest.mark.slow
@pytest.mark.usefixtures("any_size_pool")
def test_interrupted_two_process_run_resumes(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS * 2)
    model = str(models / "ntk")
    settings = Settings(shard_size=4)
    annotate(model, [path], tmp_path / "clean", settings=settings)
    interrupt = interrupt_at_batch(10)  # inside the third of four shards

    out = tmp_path / "out"
    # The interrupt is kept alive (as while it travels up to the command's handler), and
    # with it every frame it passed through: the pool must be ended all the same.
    with pytest.raises(KeyboardInterrupt) as interrupted:
        annotate(
            model, [path], out, settings=settings, n_process=2, batch_size=2, on_progress=interrupt
        )
    assert workers_left() == [], interrupted  # the workers were ended
    assert sorted(p.name for p in out.glob("*shard*")) == ["shard-00000.jsonl", "shard-00001.jsonl"]
    report = annotate(model, [path], out, settings=settings, n_process=2, batch_size=2)
    assert report["shards_written_now"] == 2 and report["shards"] == 4
    for name in [f"shard-{i:05d}.jsonl" for i in range(4)]:
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    assert temporary_files(out) == []


@pytest.mark.slow
@pytest.mark.usefixtures("any_size_pool")
def test_a_killed_worker_is_a_one_line_error(models: Path, tmp_path: Path) -> None:
    """Workers killed (the OOM killer) with work left: one line. All of them: one
    killed while idle can go unnoticed while another does the rest, and the run then
    ends complete (the two tests below pin where the pool's death shows)."""
    path = make_input(tmp_path, "txt", TEXTS * 8)
    out = tmp_path / "out"

    def kill_a_worker(docs: int, words: int) -> None:
        for worker in multiprocessing.active_children():
            if worker.pid is not None:
                os.kill(worker.pid, signal.SIGKILL)

    with pytest.raises(UserError) as err:
        annotate(
            str(models / "ntk"),
            [path],
            out,
            settings=Settings(shard_size=4),
            n_process=2,
            batch_size=2,
            on_progress=kill_a_worker,
        )
    assert_user_error(str(err.value), "--n-process", "worker process died")
    assert workers_left() == []
    assert temporary_files(out) == []


def test_a_worker_dead_between_two_results_is_a_one_line_error() -> None:
    """A worker that dies after it sent its last result breaks the pool before the
    next chunk is sent: that submission is a one-line error too, not a traceback."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from spacy_ntk_ner.annotate.engines import local

    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        pid = executor.submit(os.getpid).result(timeout=120)
        waiting = executor.submit(time.sleep, 60)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            waiting.result(timeout=120)  # the pool is marked broken before this fails
        with pytest.raises(UserError) as err:
            local._submit(executor, [(0, "Berlin is big")])
        assert_user_error(str(err.value), "--n-process", "worker process died")
    finally:
        executor.shutdown(wait=True)
    assert workers_left() == []


def test_stopping_the_pool_ends_a_half_sent_result() -> None:
    """A worker killed while it sent a result leaves half a message in the results
    pipe: stopping the pool must not leave the executor's thread (and so the
    interpreter at exit) waiting for the rest."""
    import struct
    from concurrent.futures import ProcessPoolExecutor

    from spacy_ntk_ner.annotate.engines import local

    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    executor.submit(time.sleep, 60)
    manager = executor._executor_manager_thread  # type: ignore[attr-defined]
    results = executor._result_queue  # type: ignore[attr-defined]
    # A length prefix of 100 bytes, and 4 of them.
    os.write(results._writer.fileno(), struct.pack("!i", 100) + b"half")
    deadline = time.monotonic() + 60
    while results._reader.poll() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the executor's thread has read them, and waits for more
    try:
        local._stop(executor)
        assert manager is not None and not manager.is_alive()
    finally:
        if manager is not None and manager.is_alive():
            os.write(results._writer.fileno(), b"\0" * 96)  # let it end, whatever failed
            manager.join()
    assert workers_left() == []


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_says_so(tmp_path: Path) -> None:
    source = SpanSource("ntk_ner", "ntk_ner")
    missing = str(tmp_path / "no-model")
    items = [(i, "Berlin is big") for i in range(4)]
    records = run_pool(items, missing, source, None, False, n_process=2, batch_size=1)
    with pytest.raises(UserError) as err:
        list(records)
    assert_user_error(str(err.value), missing, "E050")
    assert workers_left() == []


@pytest.mark.slow
def test_an_error_in_a_worker_is_one_line(models: Path) -> None:
    # A document longer than the pipeline's `max_length` makes `nlp.pipe` raise (E088)
    # inside the worker that gets it (`annotate` refuses such documents before it
    # starts; `run_pool` alone does not).
    source = SpanSource("ntk_ner", "ntk_ner")
    items = [(i, t) for i, t in enumerate(TEXTS)] + [(len(TEXTS), "x" * 1_000_001)]
    records = run_pool(items, str(models / "ntk"), source, None, False, n_process=2, batch_size=2)
    with pytest.raises(UserError) as err:
        list(records)
    assert_user_error(str(err.value), "--n-process", "worker failed", "ValueError", "E088")
    assert workers_left() == []


@pytest.mark.parametrize("n_process", [1, 2])
def test_cli_document_over_max_length_is_refused_before_writing(
    models: Path, tmp_path: Path, n_process: int
) -> None:
    text = "".join(t + "\n" for t in TEXTS) + "x" * 1_000_001 + "\n"
    write(tmp_path, "in.txt", text)
    args = ["annotate", str(models / "ntk"), "in.txt", "out", "--n-process", str(n_process)]
    res = run_cli(args, tmp_path)
    assert_cli_error(res, f"in.txt:{len(TEXTS) + 1}", "1,000,001", "nlp.max_length")
    assert not (tmp_path / "out").exists()


def start_pool_run(models: Path, tmp_path: Path) -> "subprocess.Popen[str]":
    """Start `annotate --n-process 2` on a corpus long enough to be mid-run for a while,
    in a session of its own (its own process group)."""
    make_input(tmp_path, "txt", TEXTS * 50_000)
    cmd = [sys.executable, "-m", "spacy_ntk_ner", "annotate", str(models / "ntk"), "in.txt"]
    cmd += ["out", "--n-process", "2", "--shard-size", "2000", "--quiet"]
    return subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=dict(os.environ, PYTHONWARNINGS="error"),
    )


def wait_for_a_shard(proc: "subprocess.Popen[str]", out: Path) -> None:
    deadline = time.monotonic() + 240
    while not (out / "shard-00000.jsonl").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.slow
def test_cli_ctrl_c_stops_the_pool(models: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) ends the
    workers at once and leaves the complete shards and no temporary file."""
    proc = start_pool_run(models, tmp_path)
    with proc:
        try:
            wait_for_a_shard(proc, tmp_path / "out")
            os.killpg(proc.pid, signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr, stderr
    shards = sorted((tmp_path / "out").glob("shard-*.jsonl"))
    assert 1 <= len(shards) < 200
    assert all(len(s.read_text().splitlines()) == 2000 for s in shards)
    assert temporary_files(tmp_path / "out") == []
    time.sleep(0.5)
    assert running_in_group(proc.pid) == []  # no worker outlived the command


def running_in_group(pgid: int) -> List[int]:
    """The processes of a process group that still run (not the exited ones that an
    init which does not reap leaves as zombies)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = (Path("/proc") / entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


@pytest.mark.parametrize(
    "args,option,about",
    [
        (["--gpu-id", "0", "--n-process", "2"], "--gpu-id", "one process"),
        (["--n-workers", "2"], "--n-workers", "--engine ray"),
        (["--threshold", "1.5"], "--threshold", "1"),
    ],
)
def test_cli_refuses_bad_settings(
    models: Path, tmp_path: Path, args: List[str], option: str, about: str
) -> None:
    make_input(tmp_path, "txt", TEXTS)
    res = run_cli(["annotate", str(models / "ntk"), "in.txt", "out", *args], tmp_path)
    assert res.returncode in (1, 2)  # argparse's usage error, or ours
    err = res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr and option in err and about in err, res.stderr
    assert not (tmp_path / "out").exists()


def test_cli_prints_the_report(models: Path, tmp_path: Path) -> None:
    make_input(tmp_path, "txt", TEXTS)
    res = run_cli(["annotate", str(models / "ntk"), "in.txt", "out"], tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert f"Annotated {len(TEXTS)} document(s), {report['words']} words" in res.stdout
    rows = [line.split() for line in res.stdout.splitlines()]
    for label, n in report["entities"].items():
        assert [label, f"{n:,}", f"{report['mean_score'][label]:.3f}"] in rows


@pytest.mark.slow
def test_ray_equals_one_process(models: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    make_input(tmp_path, "txt", TEXTS * 5)
    model = str(models / "ntk")
    res = run_cli(["annotate", model, "in.txt", "one", "--shard-size", "16"], tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli(
        [
            "annotate",
            model,
            "in.txt",
            "ray",
            "--shard-size",
            "16",
            "--batch-size",
            "8",
            "--engine",
            "ray",
            "--n-workers",
            "2",
            "--ray-num-cpus",
            "2",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    one, ray = lines(tmp_path / "one"), lines(tmp_path / "ray")
    assert len(one) == len(TEXTS) * 5
    assert [(g["id"], g["text"]) for g in one] == [(g["id"], g["text"]) for g in ray]
    assert close([spans_of(g) for g in one], [spans_of(g) for g in ray])
    assert sorted(p.name for p in (tmp_path / "ray").glob("shard-*")) == [
        f"shard-{i:05d}.jsonl" for i in range(3)
    ]


N1, N2 = "1" * 56, "2" * 56  # node ids as Ray writes them: 28 bytes in hex


class _FakeRay:
    """Two nodes; the second sees the model folder at `other` instead."""

    def __init__(self, model: str, other: str) -> None:
        self.seen_as = {N1: model, N2: other}

    def nodes(self) -> List[Dict[str, Any]]:
        return [
            {"Alive": True, "NodeID": N1, "NodeManagerAddress": "10.0.0.1"},
            {"Alive": True, "NodeID": N2, "NodeManagerAddress": "10.0.0.2"},
        ]

    def remote(self, **_: Any) -> Any:
        fake = self

        class Remote:
            def __init__(self, fn: Any) -> None:
                self.fn = fn

            def options(self, scheduling_strategy: Any) -> Any:
                node = scheduling_strategy.node_id
                return SimpleNamespace(remote=lambda _model: self.fn(fake.seen_as[node]))

        return Remote

    def get(self, refs: List[Any]) -> List[Any]:
        return refs


def test_ray_nodes_must_see_the_same_model(models: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.util.scheduling_strategies")
    model = str(models / "ntk")
    check_nodes(_FakeRay(model, model), model)  # the same folder everywhere
    copy = tmp_path / "copy"
    shutil.copytree(models / "ntk", copy)
    check_nodes(_FakeRay(model, str(copy)), model)  # the same files on other storage
    (copy / "ntk_ner" / "model").write_bytes(b"other weights")
    with pytest.raises(ValueError, match=r"Ray node 10.0.0.2: the model .* is missing or differs"):
        check_nodes(_FakeRay(model, str(copy)), model)
    with pytest.raises(ValueError, match="Ray node 10.0.0.2"):
        check_nodes(_FakeRay(model, str(tmp_path / "nowhere")), model)


def test_repeated_ids_tell_json_types_apart(models: Path, tmp_path: Path) -> None:
    # 1, true and 1.0 are three ids, as JSON tells them apart; "a" twice is one repeat.
    rows = [{"text": "x", "id": i} for i in (1, True, 1.0, "1", [1], "a", "a")]
    path = write(tmp_path, "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    report = annotate(str(models / "ntk"), [path], tmp_path / "out")
    assert report["duplicate_ids"] == 1


def test_docbin_list_id_is_refused_or_skipped(models: Path, tmp_path: Path) -> None:
    # A DocBin gives JSON arrays back as tuples: a list id would not come back as given.
    rows = [{"text": "Berlin is big", "id": ["a", 1]}, {"text": "Python", "id": "b"}]
    path = write(tmp_path, "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    model = str(models / "ntk")
    docbin = Settings(output_format="docbin")
    with pytest.raises(BIOError, match=rf"^{path}:1: .*list") as err:
        annotate(model, [path], tmp_path / "out", settings=docbin)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    skip = InputOptions(on_error="skip")
    report = annotate(model, [path], tmp_path / "d", settings=docbin, input_options=skip)
    assert [d.user_data["id"] for d in docbin_docs(tmp_path / "d")] == ["b"]
    assert [s.split(":")[1] for s in report["skipped_lines"]] == ["1"]
    # JSONL output keeps the list id as it was.
    annotate(model, [path], tmp_path / "j")
    assert [g["id"] for g in lines(tmp_path / "j")] == [["a", 1], "b"]


def test_docbin_entities_agree_with_the_threshold(models: Path, tmp_path: Path) -> None:
    path = make_input(tmp_path, "txt", TEXTS)
    model = str(models / "ntk")
    every = [spans_of(g) for g in lines(_annotated(model, path, tmp_path / "all"))]
    scores = sorted(s[5] for d in every for s in d)
    for t in (scores[len(scores) // 2], 0.0):
        settings = Settings(threshold=t)
        jsonl = lines(_annotated(model, path, tmp_path / f"j{t}", settings))
        docbin = Settings(threshold=t, output_format="docbin")
        docs = docbin_docs(_annotated(model, path, tmp_path / f"d{t}", docbin))
        want = [[(s["start"], s["end"], s["label"]) for s in g["spans"]] for g in jsonl]
        assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == want
        assert [[s[:5] for s in d] for d in docbin_spans(docs)] == [
            [s[:5] for s in spans_of(g)] for g in jsonl
        ]
    assert 0 < sum(map(len, want))


def _annotated(model: str, path: Path, out: Path, settings: Settings = Settings()) -> Path:
    annotate(model, [path], out, settings=settings)
    return out


# JSON that parses but cannot be written: each is refused at its line before anything
# is written (a traceback or a worker error before), and --on-error skip skips it.
UNWRITABLE = [
    ('{"text": "a \\ud800 b"}', "jsonl", "lone surrogate"),
    ('{"text": "fine", "id": "\\udfff"}', "jsonl", "lone surrogate"),
    ('{"text": "fine", "meta": {"k": ["\\ud800"]}}', "jsonl", "lone surrogate"),
    ('{"text": "fine", "n": NaN}', "jsonl", "NaN"),
    ('{"text": "fine", "n": -Infinity}', "jsonl", "Infinity"),
    ('{"text": "fine", "n": 1e999}', "jsonl", "1e999"),
    ('{"text": "fine", "id": 18446744073709551616}', "docbin", "18446744073709551616"),
    ('{"text": "fine", "n": [-9223372036854775809]}', "docbin", "-9223372036854775809"),
]


@pytest.mark.parametrize("line,output_format,what", UNWRITABLE)
def test_unwritable_json_is_refused_at_its_line(
    models: Path, tmp_path: Path, line: str, output_format: str, what: str
) -> None:
    path = write(
        tmp_path, "in.jsonl", '{"text": "Berlin is big"}\n' + line + '\n{"text": "Python"}\n'
    )
    settings = Settings(output_format=output_format)
    with pytest.raises(BIOError) as err:
        annotate(str(models / "ntk"), [path], tmp_path / "out", settings=settings)
    assert_user_error(str(err.value), f"{path}:2", what)
    assert not (tmp_path / "out").exists()
    skip = InputOptions(on_error="skip")
    report = annotate(
        str(models / "ntk"), [path], tmp_path / "skipped", settings=settings, input_options=skip
    )
    assert report["documents"] == 2 and len(report["skipped_lines"]) == 1
    for shard in (tmp_path / "skipped").glob("shard-*.jsonl"):
        for text in shard.read_text("utf8").splitlines():
            json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {shard}"))


@pytest.mark.parametrize("n_process", [1, 2])
@pytest.mark.parametrize("line,output_format,what", [UNWRITABLE[0], UNWRITABLE[6]])
def test_cli_unwritable_json_is_one_line_at_any_number_of_processes(
    models: Path, tmp_path: Path, n_process: int, line: str, output_format: str, what: str
) -> None:
    """The check runs while the inputs are read, before any worker starts."""
    write(tmp_path, "in.jsonl", '{"text": "Berlin is big"}\n' + line + '\n{"text": "Python"}\n')
    args = ["annotate", str(models / "ntk"), "in.jsonl", "out", "--n-process", str(n_process)]
    args += ["--output-format", output_format]
    res = run_cli(args, tmp_path)
    assert_cli_error(res, "in.jsonl:2", what)
    assert not (tmp_path / "out").exists()


def test_cr_only_text_file_is_refused(models: Path, tmp_path: Path) -> None:
    for name in ("in.txt", "in.jsonl"):
        sep = '{"text": "a"}\r{"text": "b"}\r' if name == "in.jsonl" else "one\rtwo\rthree\r"
        path = write(tmp_path, name, sep)
        with pytest.raises(BIOError) as err:
            annotate(str(models / "ntk"), [path], tmp_path / "out")
        assert str(err.value).startswith(f"{path}: lines end with CR only")
        assert not (tmp_path / "out").exists()
    # A CR before LF line ends (Windows) reads as ever.
    path = write(tmp_path, "crlf.txt", "one\r\ntwo\r\n")
    annotate(str(models / "ntk"), [path], tmp_path / "crlf")
    assert [g["text"] for g in lines(tmp_path / "crlf")] == ["one", "two"]


def test_cli_fifo_and_stdin_are_refused_before_writing(models: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    res = run_cli(["annotate", str(models / "ntk"), "pipe.txt", "out"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("pipe.txt: ") and len(res.stderr.splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()
    cmd = [sys.executable, "-m", "spacy_ntk_ner", "annotate", str(models / "ntk")]
    cmd += ["/dev/stdin", "out", "--input-format", "txt"]
    res = subprocess.run(
        cmd, cwd=tmp_path, input="Berlin is big\n", capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1
    assert res.stderr.startswith("/dev/stdin: ") and len(res.stderr.splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()


def children_of(pid: int) -> List[int]:
    """The running (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def still_running(pids: List[int], patience: float = 5.0) -> List[int]:
    deadline = time.monotonic() + patience
    while True:
        alive = []
        for pid in pids:
            try:
                state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if state[0] != "Z":
                alive.append(pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_cli_workers_end_with_their_parent(models: Path, tmp_path: Path, sig: int) -> None:
    """A signal to the command alone (a scheduler, `kill`, the OOM killer) ends its
    workers too; SIGTERM and SIGHUP end the run as Ctrl-C does."""
    proc = start_pool_run(models, tmp_path)
    workers: List[int] = []
    with proc:
        try:
            wait_for_a_shard(proc, tmp_path / "out")
            workers = children_of(proc.pid)
            assert len(workers) >= 2
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=60)
            assert still_running(workers) == []
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            for pid in still_running(workers, 0):
                os.kill(pid, signal.SIGKILL)  # so that a failure leaves none behind
    out = tmp_path / "out"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    # As every command ends on SIGTERM and SIGHUP: exit 128 + the signal, one line.
    assert proc.returncode == 128 + sig, stderr
    name = signal.Signals(sig).name
    assert len(stderr.strip().splitlines()) == 1 and f"interrupted ({name})" in stderr, stderr
    shards = sorted(out.glob("shard-*.jsonl"))
    assert 1 <= len(shards) < 200
    assert all(len(s.read_text().splitlines()) == 2000 for s in shards)
    assert temporary_files(out) == []
