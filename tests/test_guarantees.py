"""What convert, export and calibrate promise when they fail, are interrupted, find the
disk full or run twice at once (README, "Guarantees")."""

import errno
import fcntl
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from util import assert_cli_error, assert_user_error, run_cli, write

from spacy_ntk_ner import _fs
from spacy_ntk_ner.cli import app as cli
from spacy_ntk_ner.confidence import calibrate as calibration
from spacy_ntk_ner.corpus import export as export_module
from spacy_ntk_ner.corpus.convert import convert
from spacy_ntk_ner.corpus.docbin import DocBinWriter
from spacy_ntk_ner.corpus.options import ReadOptions
from spacy_ntk_ner.errors import UserError


def sentence(i: int) -> str:
    return f"<s>\nw{i}a\tB-X\nw{i}b\tO\n</s>\n"


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under a folder, hidden ones included, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    write(tmp_path, "in/a.txt", "".join(sentence(i) for i in range(6)))
    convert([tmp_path / "in"], tmp_path / "out", **AS_BEFORE)
    return tmp_path / "out"


# How `converted` was made: a rerun into it with these settings and `in/` is the same
# job (one with other inputs or settings is refused without --overwrite).
AS_BEFORE: Dict[str, Any] = {"split": "train=0.5,dev=0.5", "shard_size": 2}
AS_BEFORE_CLI = ["--split", "train=0.5,dev=0.5", "--shard-size", "2"]


# ---- convert


def test_convert_failing_last_input_keeps_previous_output(tmp_path: Path, converted: Path) -> None:
    before = snapshot(converted)
    write(tmp_path, "in/b.txt", sentence(9))
    bad = write(tmp_path, "in/c.txt", sentence(10) + "oops\n")
    res = run_cli(["convert", str(tmp_path / "in"), str(converted), *AS_BEFORE_CLI], tmp_path)
    assert snapshot(converted) == before
    assert_cli_error(res, f"{bad}:5", "<s>")


def test_convert_missing_input_touches_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    convert([write(tmp_path, "a.txt", sentence(1) + sentence(2))], corpus, shard_size=1)
    before = snapshot(corpus)
    res = run_cli(["convert", "typo.bio", str(corpus)], tmp_path)
    assert snapshot(corpus) == before
    assert_cli_error(res, "typo.bio", "no such file")
    res = run_cli(["convert", "typo.bio", "new_out"], tmp_path)
    assert not (tmp_path / "new_out").exists()


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), None])
def test_convert_full_disk_or_interrupt_keeps_previous_output(
    tmp_path: Path, converted: Path, monkeypatch: pytest.MonkeyPatch, error: Any
) -> None:
    """A write that fails with ENOSPC, or Ctrl-C during the run, on the third shard."""
    before = snapshot(converted)
    real = DocBinWriter.to_disk
    written = []

    def to_disk(self: DocBinWriter, path: Any) -> None:
        if len(written) == 2:
            Path(path).write_bytes(b"half a shard")
            raise error if error is not None else KeyboardInterrupt
        written.append(path)
        real(self, path)

    monkeypatch.setattr(DocBinWriter, "to_disk", to_disk)
    write(tmp_path, "in/new.txt", "".join(sentence(i) for i in range(20, 40)))
    with pytest.raises(OSError if error is not None else KeyboardInterrupt):
        convert([tmp_path / "in"], converted, ReadOptions(), **AS_BEFORE)
    assert len(written) == 2
    # Exactly as it was: no new shard, no half shard, no temporary folder left behind.
    assert snapshot(converted) == before


def test_convert_full_disk_cli_message(
    tmp_path: Path, converted: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def to_disk(self: DocBinWriter, path: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(DocBinWriter, "to_disk", to_disk)
    before = snapshot(converted)
    write(tmp_path, "in/new.txt", sentence(1))
    assert cli.main(["convert", str(tmp_path / "in"), str(converted), *AS_BEFORE_CLI]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(": No space left on device")
    assert snapshot(converted) == before


def test_convert_refuses_folder_with_files_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, "notes.txt", "mine\n")
    write(out, "old/model.spacy", "also mine\n")
    src = write(tmp_path, "a.txt", sentence(1))
    res = run_cli(["convert", str(src), str(out)], tmp_path)
    assert_cli_error(res, str(out), "notes.txt", "old/model.spacy")
    res = run_cli(["convert", str(src), str(out), "--overwrite"], tmp_path)
    assert res.returncode == 1
    assert snapshot(out) == {"notes.txt": b"mine\n", "old/model.spacy": b"also mine\n"}


def test_rerun_replaces_only_what_it_wrote(tmp_path: Path, converted: Path) -> None:
    first = json.loads((converted / "stats.json").read_text())
    assert sorted(first["outputs"]) == sorted(
        p.relative_to(converted).as_posix() for p in converted.rglob("*.spacy")
    )
    src = write(tmp_path, "in/b.txt", sentence(1))
    convert([src], converted, ReadOptions(), overwrite=True)
    # The split folders of the first run are gone; one shard and the report remain.
    assert sorted(snapshot(converted)) == ["manifest.json", "shard-00000.spacy", "stats.json"]


def test_overwrite_starts_over_and_keeps_other_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write(corpus, "a.bio", sentence(1))
    write(corpus, "b.bio", sentence(2))
    # The output folder is the input folder: its BIO files are inputs, not strangers.
    for extra in ([], ["--overwrite"], []):
        res = run_cli(["convert", str(corpus), str(corpus), "--quiet", *extra], tmp_path)
        assert res.returncode == 0, res.stderr
        stats = json.loads((corpus / "stats.json").read_text())
        # The earlier run's stats.json and shard were not read as input.
        assert stats["files"] == 2 and stats["splits"]["all"]["docs"] == 2
    assert sorted(snapshot(corpus)) == [
        "a.bio",
        "b.bio",
        "manifest.json",
        "shard-00000.spacy",
        "stats.json",
    ]


def test_stats_of_an_older_version_are_recognized(tmp_path: Path, converted: Path) -> None:
    stats = json.loads((converted / "stats.json").read_text())
    del stats["outputs"]  # stats.json as versions before 0.1.1 wrote it
    (converted / "stats.json").write_text(json.dumps(stats))
    (converted / "manifest.json").unlink()  # nor a manifest: it came with 0.3
    notices: List[str] = []
    src = write(tmp_path, "in/b.txt", sentence(1))
    convert([src], converted, ReadOptions(), on_notice=notices.append)
    assert sorted(snapshot(converted)) == ["manifest.json", "shard-00000.spacy", "stats.json"]
    assert len(notices) == 1 and "earlier version" in notices[0]
    # Upgraded: the next run with other inputs is refused.
    with pytest.raises(UserError) as err:
        convert([tmp_path / "in"], converted, ReadOptions())
    assert_user_error(str(err.value), str(converted), "inputs")


def test_two_runs_at_once_the_second_is_refused(tmp_path: Path) -> None:
    """A lock held by another process refuses the run; when that process is killed, the
    lock is gone with it."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            src = write(tmp_path, "a.txt", sentence(1))
            with pytest.raises(UserError) as err:
                convert([src], out, ReadOptions())
            assert_user_error(str(err.value), str(out), "another convert")
            assert snapshot(out) == {}
        finally:
            holder.kill()
    convert([src], out, ReadOptions())
    assert (out / "stats.json").exists()


def test_stale_temporary_folder_of_a_killed_run_is_cleared(tmp_path: Path, converted: Path) -> None:
    write(converted, ".ntk-tmp-killed/shard-00000.spacy", "half")
    before = snapshot(converted)
    del before[".ntk-tmp-killed/shard-00000.spacy"]
    convert([tmp_path / "in"], converted, ReadOptions(), **AS_BEFORE)
    assert snapshot(converted) == before


# ---- export


def test_export_onto_its_input_is_refused(tmp_path: Path, converted: Path) -> None:
    shard = sorted(converted.rglob("shard-*.spacy"))[0]
    before = shard.read_bytes()
    res = run_cli(["export", str(shard), str(shard)], tmp_path)
    assert_cli_error(res, str(shard), "input")
    assert shard.read_bytes() == before


def test_export_failure_leaves_the_target(tmp_path: Path) -> None:
    notes = write(tmp_path, "notes.txt", "keep me\n")
    res = run_cli(["export", "missing.spacy", str(notes)], tmp_path)
    assert_cli_error(res, "missing.spacy", "no such file")
    vocab = spacy.blank("en").vocab
    good = Doc(vocab, words=["a", "b"])
    bad = Doc(vocab, words=["a", "\n", "b"])
    DocBin(docs=[good, bad]).to_disk(tmp_path / "x.spacy")
    res = run_cli(["export", "x.spacy", str(notes)], tmp_path)
    assert_cli_error(res, "x.spacy", "doc 2, token 2", "whitespace", "nothing was written")
    assert notes.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "x.spacy"]


def test_export_on_a_full_disk_leaves_the_target(
    tmp_path: Path, converted: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    notes = write(tmp_path, "notes.txt", "keep me\n")

    def write_sentences(fh: Any, sentences: Any, fmt: str) -> int:
        fh.write("half an export")
        raise OSError(errno.ENOSPC, "No space left on device", str(notes))

    monkeypatch.setattr(export_module, "write_sentences", write_sentences)
    assert cli.main(["export", str(converted), str(notes)]) == 1
    assert_user_error(capsys.readouterr().err, str(notes), "No space left")
    assert snapshot(tmp_path) == {**snapshot(tmp_path), "notes.txt": b"keep me\n"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ntk-tmp-")]


# ---- calibrate


@pytest.fixture
def pipeline(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared tiny pipeline and its data, for tests that change it."""
    folder = tmp_path_factory.mktemp("tiny") / "copy"
    shutil.copytree(tiny_pipeline, folder)
    return folder


@pytest.mark.parametrize("output", [None, "calibrated"])
def test_calibrate_failure_leaves_the_pipeline(
    pipeline: Path, monkeypatch: pytest.MonkeyPatch, output: Any, capsys: Any
) -> None:
    target = pipeline / (output or "model")
    if output is not None:
        write(target, "config.cfg", "an older pipeline\n")
    before = snapshot(target)

    def to_disk(self: Language, path: Any, **kwargs: Any) -> None:
        Path(path, "config.cfg").write_text("half written")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Language, "to_disk", to_disk)
    args = ["calibrate", str(pipeline / "model"), str(pipeline / "data.spacy")]
    if output is not None:
        args += ["--output", str(target)]
    assert cli.main(args) == 1
    assert capsys.readouterr().err.strip().endswith(": No space left on device")
    assert snapshot(target) == before
    assert not [p for p in pipeline.iterdir() if p.name.startswith(".ntk-tmp-")]


def test_calibrate_in_place_replaces_the_pipeline(pipeline: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    spacy.load(pipeline / "model").to_disk(model)
    res = run_cli(["calibrate", str(model), str(pipeline / "data.spacy")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert spacy.load(model).pipe_names == ["ntk_ner"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_calibrate_refuses_an_output_that_is_not_a_pipeline(pipeline: Path) -> None:
    write(pipeline, "notes/todo.txt", "mine\n")
    res = run_cli(["calibrate", "model", "data.spacy", "--output", "notes"], pipeline)
    assert_cli_error(res, "--output", "notes", "pipeline")
    assert (pipeline / "notes" / "todo.txt").read_text() == "mine\n"


def test_calibrate_with_no_predicted_entity(
    pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Whether a trained model predicts an entity on some text is up to its weights:
    # the pipeline's scored entities are made empty instead.
    monkeypatch.setattr(calibration, "labelled_entities", lambda pairs, key: ([], [], []))
    data = pipeline / "data.spacy"
    out = tmp_path / "cal"
    assert cli.main(["calibrate", str(pipeline / "model"), str(data), "--output", str(out)]) == 0
    assert f"ntk_ner: predicted no entity on {data}; calibration kept" in capsys.readouterr().out
    assert (out / "config.cfg").exists()


def test_broken_pipe_after_success_is_not_an_error(tmp_path: Path) -> None:
    src = write(tmp_path, "a.txt", sentence(1))
    env = dict(os.environ, PYTHONWARNINGS="error")
    with subprocess.Popen(
        [sys.executable, "-m", "spacy_ntk_ner", "convert", str(src), str(tmp_path / "out")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the report is printed, as with `| head`
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0, err
    assert err == ""
    assert (tmp_path / "out" / "stats.json").exists()


# ---- signals


def start_and_signal(args: list, cwd: Path, started: Any, signum: int) -> Any:
    """Start `python -m spacy_ntk_ner ARGS`, send `signum` once `started()` is true (the
    command has begun writing), and wait for it to end."""
    import time

    # Without PYTHONWARNINGS=error: a signal may land between an `open` and its `with`,
    # and the ResourceWarning of that file (hidden by default) is no message of ours.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_ntk_ner", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the command ended before it began writing"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_convert_signal_mid_run_leaves_nothing(tmp_path: Path, signum: str) -> None:
    """SIGINT, SIGTERM and SIGHUP end a run alike: one line, exit 128 + the signal, the
    new folder gone, the input as it was."""

    big = write(tmp_path, "in/big.txt", "".join(sentence(i) for i in range(60000)))
    before = snapshot(tmp_path / "in")
    out = tmp_path / "out"
    sig = getattr(signal, signum)

    def started() -> bool:
        return any(out.glob(".ntk-tmp-*/shard-*.spacy"))

    res = start_and_signal(
        ["convert", str(big), str(out), "--shard-size", "50"], tmp_path, started, sig
    )
    assert res.returncode == 128 + sig
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "interrupted" in res.stderr
    assert not out.exists()
    assert snapshot(tmp_path / "in") == before


# ---- the guarantee matrix: every command of the parser x every case


CASES = (
    "output is an input file",
    "output inside an input folder",
    "output is the pipeline or its config.cfg",
    "output folder holds files it did not write",
    "rerun with changed inputs",
    "rerun with changed settings",
    "last input fails",
    "SIGINT mid-run",
    "SIGTERM mid-run",
)


def na(reason: str) -> str:
    return f"n/a: {reason}"


SINGLE_FILE = na("writes one file, replaced as a whole as the user asked; no folder of its own")
NO_RECORD = na("writes one file, which keeps no record of inputs or settings")

# Each cell: (command line, "refused" | "allowed" | "SIGINT" | "SIGTERM", setup) or an
# "n/a: why" string. In a command line, {big} is a large BIO file (the signal reaches
# a run of its own, mid-run); without it the command runs in this process and sends
# itself the signal at each point where it puts an output in place (`signal_at`).
# setup: None, or steps (one string or a tuple): "foreign:DIR" puts a file of the
# user's in DIR, "earlier:COMMAND LINE" runs a command before, "stale:FILE" writes FILE
# as an earlier run's output that this run replaces.
Cell = Any
# Every output of evaluate at once, over an earlier report and earlier files: all are
# put in place together, or none.
EVALUATE_ALL = ["evaluate", "model", "dev.spacy", "--output", "m.json", "--table", "t.md"]
EVALUATE_ALL += ["--report", "rep"]
EVALUATED_BEFORE = (
    "earlier:evaluate model dev.spacy --report rep",
    "stale:rep/index.html",
    "stale:m.json",
    "stale:t.md",
)
CALIBRATED = ("earlier:calibrate model dev.spacy --output cal", "stale:cal/meta.json")
# Two shards of one document: the signal lands while the second is written.
ANNOTATE_TWO_SHARDS = ["annotate", "model", "texts/in.jsonl", "out", "--shard-size", "1"]
MATRIX: Dict[str, Dict[str, Cell]] = {
    "convert": {
        CASES[0]: (["convert", "bio/a.txt", "bio/a.txt"], "refused", None),
        CASES[1]: (["convert", "bio", "bio/out"], "allowed", None),
        CASES[2]: (["convert", "bio/a.txt", "model"], "refused", None),
        CASES[3]: (["convert", "bio/a.txt", "out"], "refused", "foreign:out"),
        CASES[4]: (["convert", "bio/b.txt", "out"], "refused", "earlier:convert bio/a.txt out"),
        CASES[5]: (
            ["convert", "bio/a.txt", "out", "--shard-size", "1"],
            "refused",
            "earlier:convert bio/a.txt out",
        ),
        CASES[6]: (["convert", "bio/a.txt", "bad/z.txt", "out"], "refused", None),
        CASES[7]: (["convert", "{big}", "out", "--shard-size", "50"], "SIGINT", None),
        CASES[8]: (["convert", "{big}", "out", "--shard-size", "50"], "SIGTERM", None),
    },
    "export": {
        CASES[0]: (["export", "dev.spacy", "dev.spacy"], "refused", None),
        CASES[1]: (["export", "shards", "shards/out.txt"], "refused", None),
        CASES[2]: (["export", "dev.spacy", "model/config.cfg"], "refused", None),
        CASES[3]: SINGLE_FILE,
        CASES[4]: NO_RECORD,
        CASES[5]: NO_RECORD,
        CASES[6]: (["export", "badshards", "out.txt"], "refused", None),
        CASES[7]: (["export", "dev.spacy", "out.txt"], "SIGINT", "stale:out.txt"),
        CASES[8]: (["export", "dev.spacy", "out.txt"], "SIGTERM", "stale:out.txt"),
    },
    "evaluate": {
        CASES[0]: (["evaluate", "model", "dev.spacy", "--output", "dev.spacy"], "refused", None),
        CASES[1]: (["evaluate", "model", "shards", "--table", "shards/t.md"], "refused", None),
        CASES[2]: (
            ["evaluate", "model", "dev.spacy", "--output", "model/config.cfg"],
            "refused",
            None,
        ),
        CASES[3]: (["evaluate", "model", "dev.spacy", "--report", "rep"], "refused", "foreign:rep"),
        CASES[4]: (
            ["evaluate", "model", "shards", "--report", "rep"],
            "refused",
            "earlier:evaluate model dev.spacy --report rep",
        ),
        CASES[5]: na("a report has no settings: --output and --table are files of their own"),
        CASES[6]: (["evaluate", "model", "badshards", "--output", "m.json"], "refused", None),
        CASES[7]: (EVALUATE_ALL, "SIGINT", EVALUATED_BEFORE),
        CASES[8]: (EVALUATE_ALL, "SIGTERM", EVALUATED_BEFORE),
    },
    "calibrate": {
        CASES[0]: (["calibrate", "model", "dev.spacy", "--output", "dev.spacy"], "refused", None),
        CASES[1]: (["calibrate", "model", "shards", "--output", "shards/new"], "refused", None),
        CASES[2]: (
            ["calibrate", "model", "dev.spacy", "--output", "model/config.cfg"],
            "refused",
            None,
        ),
        CASES[3]: (
            ["calibrate", "model", "dev.spacy", "--output", "out"],
            "refused",
            "foreign:out",
        ),
        CASES[4]: na("a pipeline is its own record; calibrating it again refits it, its job"),
        CASES[5]: na("a pipeline is its own record; calibrating it again refits it, its job"),
        CASES[6]: (["calibrate", "model", "badshards"], "refused", None),
        # In place: the earlier output is the pipeline itself.
        CASES[7]: (["calibrate", "model", "dev.spacy"], "SIGINT", None),
        CASES[8]: (["calibrate", "model", "dev.spacy", "--output", "cal"], "SIGTERM", CALIBRATED),
    },
    "visualize": {
        CASES[0]: (["visualize", "model", "dev.spacy", "dev.spacy"], "refused", None),
        CASES[1]: (["visualize", "model", "shards", "shards/v.html"], "refused", None),
        CASES[2]: (["visualize", "model", "dev.spacy", "model/config.cfg"], "refused", None),
        CASES[3]: SINGLE_FILE,
        CASES[4]: NO_RECORD,
        CASES[5]: NO_RECORD,
        CASES[6]: (["visualize", "model", "badshards", "v.html"], "refused", None),
        CASES[7]: (["visualize", "model", "dev.spacy", "v.html"], "SIGINT", "stale:v.html"),
        CASES[8]: (["visualize", "model", "dev.spacy", "v.html"], "SIGTERM", "stale:v.html"),
    },
    "annotate": {
        CASES[0]: (["annotate", "model", "texts/in.jsonl", "texts/in.jsonl"], "refused", None),
        CASES[1]: (["annotate", "model", "texts", "texts/out"], "allowed", None),
        CASES[2]: (["annotate", "model", "texts/in.jsonl", "model"], "refused", None),
        CASES[3]: (["annotate", "model", "texts/in.jsonl", "out"], "refused", "foreign:out"),
        CASES[4]: (
            ["annotate", "model", "texts/in2.jsonl", "out"],
            "refused",
            "earlier:annotate model texts/in.jsonl out",
        ),
        CASES[5]: (
            ["annotate", "model", "texts/in.jsonl", "out", "--shard-size", "1"],
            "refused",
            "earlier:annotate model texts/in.jsonl out",
        ),
        CASES[6]: (["annotate", "model", "texts/in.jsonl", "bad/z.jsonl", "out"], "refused", None),
        CASES[7]: (ANNOTATE_TWO_SHARDS, "SIGINT", None),
        CASES[8]: (ANNOTATE_TWO_SHARDS, "SIGTERM", None),
    },
    "init-config": {
        CASES[0]: na("reads no input"),
        CASES[1]: na("reads no input"),
        CASES[2]: (["init-config", "model/config.cfg", "--overwrite"], "refused", None),
        # Its one file: an existing file it did not write (or one edited since).
        CASES[3]: (["init-config", "bio/a.txt"], "refused", None),
        CASES[4]: na("reads no input"),
        CASES[5]: na(
            "writes one of the package's configs: it replaces one it wrote, unedited, "
            "with the other (tests/test_init_config.py)"
        ),
        CASES[6]: na("reads no input"),
        CASES[7]: (["init-config", "out.cfg", "--overwrite"], "SIGINT", "stale:out.cfg"),
        CASES[8]: (["init-config", "out.cfg", "--overwrite"], "SIGTERM", "stale:out.cfg"),
    },
}


def parser_commands() -> set:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return set(sub.choices)


def test_the_matrix_has_a_row_for_every_command_and_decides_every_cell() -> None:
    assert set(MATRIX) == parser_commands()
    for command, row in MATRIX.items():
        assert tuple(row) == CASES, command
        for case, cell in row.items():
            assert (isinstance(cell, str) and cell.startswith("n/a: ")) or (
                isinstance(cell, tuple) and cell[0][0] == command
            ), (command, case)


def matrix_workspace(folder: Path, tiny_pipeline: Path) -> None:
    shutil.copytree(tiny_pipeline / "model", folder / "model")
    shutil.copy(tiny_pipeline / "data.spacy", folder / "dev.spacy")
    write(folder, "bio/a.txt", sentence(1) + sentence(2))
    write(folder, "bio/b.txt", sentence(3))
    write(folder, "bad/z.txt", sentence(4) + "oops\n")
    (folder / "shards").mkdir()
    shutil.copy(tiny_pipeline / "data.spacy", folder / "shards" / "a.spacy")
    (folder / "badshards").mkdir()
    shutil.copy(tiny_pipeline / "data.spacy", folder / "badshards" / "a.spacy")
    write(folder, "badshards/z.spacy", "not a DocBin\n")
    rows = [{"id": i, "text": t} for i, t in enumerate(["I use Linux", "Python runs"])]
    write(folder, "texts/in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(folder, "texts/in2.jsonl", json.dumps({"id": 9, "text": "I use Python"}) + "\n")
    write(folder, "bad/z.jsonl", '{"id": 1, "text": "ok"}\n{"id": 2,\n')


TEMPORARY = (".ntk-tmp-*", "*.tmp", "*.partial", "*.part")


def left_behind(folder: Path) -> list:
    return sorted(str(p) for pattern in TEMPORARY for p in folder.rglob(pattern))


CELLS = [
    pytest.param(command, case, id=f"{command}-{CASES.index(case)}")
    for command, row in MATRIX.items()
    for case, cell in row.items()
    if not isinstance(cell, str)
]


def prepare(folder: Path, setup: Any) -> None:
    """Carry out a cell's setup steps (see MATRIX) in the workspace."""
    steps = () if setup is None else (setup,) if isinstance(setup, str) else setup
    for step in steps:
        kind, what = step.split(":", 1)
        if kind == "foreign":
            write(folder, what + "/notes.txt", "mine\n")
        elif kind == "earlier":
            res = run_cli(what.split(), folder)
            assert res.returncode == 0, res.stderr
        else:
            assert kind == "stale", step
            write(folder, what, "an earlier run's output\n")


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """The signal handlers as they were before the test (a command sets its own)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def signal_at(monkeypatch: pytest.MonkeyPatch, signum: int, k: int) -> List[str]:
    """Make the command send itself `signum` at the k-th (from 0) point where an output
    is complete under its temporary name, or about to be put in place.

    RETURNS (List[str]): The points passed, filled in as the command runs.
    """
    passed: List[str] = []
    keep_mode, deferred = _fs._keep_mode, _fs.deferred_sigint

    def point(where: str) -> None:
        passed.append(where)
        if len(passed) == k + 1:
            os.kill(os.getpid(), signum)

    def written(target: Path, tmp: Path, *args: Any) -> None:
        keep_mode(target, tmp, *args)
        point(f"{target} written as {tmp.name}")

    @contextmanager
    def put_in_place() -> Iterator[None]:
        point("put in place")
        with deferred():
            yield

    monkeypatch.setattr(_fs, "_keep_mode", written)
    monkeypatch.setattr(_fs, "deferred_sigint", put_in_place)
    return passed


def signal_mid_shard(monkeypatch: pytest.MonkeyPatch, signum: int, n: int) -> None:
    """Make `annotate` send itself `signum` as it adds the n-th document to a shard."""
    from spacy_ntk_ner.annotate import output

    add = output._ShardFile.add
    added: List[int] = []

    def add_and_signal(self: Any, doc: Any, record: Any) -> None:
        add(self, doc, record)
        added.append(1)
        if len(added) == n:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(output._ShardFile, "add", add_and_signal)


def unlocked(folder: Path) -> bool:
    """No lock file in `folder` is held (a lock file may stay: the lock is the flock)."""
    for lock in folder.rglob(".*.lock"):
        with lock.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
    return True


def check_interrupted(
    status: int, signum: int, capsys: Any, before: Dict[str, bytes], folder: Path
) -> None:
    """Exit 128 + the signal, one line, every input and earlier output as it was, nothing
    temporary left and no lock held."""
    err = capsys.readouterr().err.strip()
    assert status == 128 + signum, err
    assert len(err.splitlines()) == 1 and err.startswith("interrupted"), err
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert left_behind(folder) == [] and unlocked(folder)


@pytest.mark.parametrize("command,case", CELLS)
def test_guarantee_matrix(
    tmp_path: Path,
    tiny_pipeline: Path,
    command: str,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    signal_handlers: None,
) -> None:
    """Refused: one line, a non-zero exit, every file as it was, nothing temporary left.
    Allowed (an output folder inside an input folder): twice, the inputs as they were.
    A signal mid-run: one line, exit 128 + the signal, every earlier file as it was."""
    args, expect, setup = MATRIX[command][case]
    matrix_workspace(tmp_path, tiny_pipeline)
    prepare(tmp_path, setup)
    if "{big}" in args:
        write(tmp_path, "big/big.txt", "".join(sentence(i) for i in range(60000)))
        args = [str(tmp_path / "big" / "big.txt") if a == "{big}" else a for a in args]
    before = snapshot(tmp_path)
    if expect == "allowed":
        for _ in range(2):
            res = run_cli(args, tmp_path)
            assert res.returncode == 0, res.stderr
        after = snapshot(tmp_path)
        assert {k: v for k, v in after.items() if k in before} == before
    elif expect in ("SIGINT", "SIGTERM") and command == "convert":
        out = tmp_path / args[2]
        sig = getattr(signal, expect)
        res = start_and_signal(
            args, tmp_path, lambda: any(out.glob(".ntk-tmp-*/shard-*.spacy")), sig
        )
        assert res.returncode == 128 + sig
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert snapshot(tmp_path) == before
    elif expect in ("SIGINT", "SIGTERM") and command == "annotate":
        # Its complete shards stay, and a rerun resumes from them.
        monkeypatch.chdir(tmp_path)
        sig = getattr(signal, expect)
        signal_mid_shard(monkeypatch, sig, 2)
        check_interrupted(cli.main(args), sig, capsys, before, tmp_path)
        assert sorted(p.name for p in (tmp_path / "out").glob("shard-*")) == ["shard-00000.jsonl"]
        monkeypatch.undo()
        res = run_cli(args, tmp_path)
        assert res.returncode == 0, res.stderr
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert (report["shards"], report["shards_written_now"]) == (2, 1)
    elif expect in ("SIGINT", "SIGTERM"):
        monkeypatch.chdir(tmp_path)
        sig = getattr(signal, expect)
        for k in itertools.count():
            passed = signal_at(monkeypatch, sig, k)
            status = cli.main(args)
            if len(passed) <= k:
                break  # no k-th point: this run went to the end
            check_interrupted(status, sig, capsys, before, tmp_path)
            monkeypatch.undo()
            monkeypatch.chdir(tmp_path)
        # The uninterrupted run changes the earlier outputs: the checks could fail.
        assert k > 0 and status == 0, (passed, capsys.readouterr().err)
        assert snapshot(tmp_path) != before
    else:
        res = run_cli(args, tmp_path)
        assert res.returncode not in (0, None), res.stdout
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert snapshot(tmp_path) == before
    assert left_behind(tmp_path) == []
    assert not list(tmp_path.rglob(".annotate.lock")) or expect != "refused" or setup


@pytest.mark.parametrize(
    "command",
    [c for c, row in MATRIX.items() if c != "convert" and not isinstance(row[CASES[8]], str)],
)
def test_sighup_ends_every_command_as_sigterm_does(
    tmp_path: Path,
    tiny_pipeline: Path,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    signal_handlers: None,
) -> None:
    """A lost terminal or SSH session (SIGHUP), at the first point of each command's
    SIGTERM cell (convert: test_convert_signal_mid_run_leaves_nothing)."""
    args, _, setup = MATRIX[command][CASES[8]]
    matrix_workspace(tmp_path, tiny_pipeline)
    prepare(tmp_path, setup)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    if command == "annotate":
        signal_mid_shard(monkeypatch, signal.SIGHUP, 2)
    else:
        signal_at(monkeypatch, signal.SIGHUP, 0)
    check_interrupted(cli.main(args), signal.SIGHUP, capsys, before, tmp_path)


@pytest.mark.parametrize("command", ["export", "evaluate", "calibrate"])
def test_a_signal_while_outputs_are_put_in_place_waits_for_all_of_them(
    tmp_path: Path,
    tiny_pipeline: Path,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    signal_handlers: None,
) -> None:
    """SIGTERM during the renames that put a run's outputs in place is held back until
    all are: every earlier output is replaced, and the line says so."""
    args, _, setup = MATRIX[command][CASES[8]]
    deferred = _fs.deferred_sigint
    calls: List[int] = []
    last = [0]  # the run's own commit is its last; those before put a folder's files

    @contextmanager
    def signal_inside() -> Iterator[None]:
        with deferred():
            calls.append(1)
            if len(calls) == last[0]:
                os.kill(os.getpid(), signal.SIGTERM)
            yield

    monkeypatch.setattr(_fs, "deferred_sigint", signal_inside)
    for run in ("count", "signal"):
        work = tmp_path / run
        matrix_workspace(work, tiny_pipeline)
        prepare(work, setup)
        before = snapshot(work)
        monkeypatch.chdir(work)
        if run == "count":
            assert cli.main(args) == 0, capsys.readouterr().err
            last[0], calls[:] = len(calls), []
    status = cli.main(args)
    err = capsys.readouterr().err.strip()
    assert status == 128 + signal.SIGTERM, err
    assert len(err.splitlines()) == 1 and "(SIGTERM)" in err and "put in place" in err, err
    after = snapshot(work)
    stale = [k for k, v in before.items() if v == b"an earlier run's output\n"]
    assert stale and all(after.get(k, b"") != before[k] for k in stale)
    assert left_behind(work) == []


SHOWN = {"refused": "refused", "allowed": "allowed, left out of the inputs"}
SIGNALLED = {
    "": "ends cleanly, exit 128+signal",
    "annotate": "ends cleanly, exit 128+signal, complete shards kept",
}


def matrix_markdown() -> str:
    """The matrix as docs/guarantees.md shows it, between its matrix markers."""
    commands = list(MATRIX)
    rows = ["| case | " + " | ".join(f"`{c}`" for c in commands) + " |"]
    rows.append("| --- |" + " --- |" * len(commands))
    for case in CASES:
        cells = []
        for command in commands:
            cell = MATRIX[command][case]
            if isinstance(cell, str):
                cells.append("n/a")
            else:
                cells.append(SHOWN.get(cell[1], SIGNALLED.get(command, SIGNALLED[""])))
        rows.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


DOCS = Path(__file__).parent.parent / "docs" / "guarantees.md"


def test_docs_show_the_matrix_as_tested() -> None:
    text = DOCS.read_text("utf8")
    start, end = "<!-- matrix: generated by tests/test_guarantees.py -->\n", "\n<!-- /matrix -->"
    assert start in text and end in text
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == matrix_markdown(), "paste tests/test_guarantees.py::matrix_markdown()"


def test_every_test_the_guarantees_name_exists() -> None:
    import re

    text = DOCS.read_text("utf8")
    tests = Path(__file__).parent
    for match in re.finditer(r"`(?:(tests/\w+\.py)::)?(test_\w+)`", text):
        path = tests.parent / match.group(1) if match.group(1) else tests / "test_guarantees.py"
        assert f"def {match.group(2)}(" in path.read_text("utf8"), match.group(0)
