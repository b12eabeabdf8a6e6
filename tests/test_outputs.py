"""The output layer (`_outputs`) and the defects of issue 16 it fixes: targets that are
inputs or pipelines, reruns with other inputs, outputs inside input folders."""

import json
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest
from util import run_cli, write

from spacy_ntk_ner._outputs import (
    Manifest,
    check_rerun,
    check_target,
    fingerprint,
    read_manifest,
    remove_listed,
    write_manifest,
)
from spacy_ntk_ner.errors import UserError


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under a folder, hidden ones included, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sentence(i: int) -> str:
    return f"<s>\nw{i}a\tB-X\nw{i}b\tO\n</s>\n"


def one_line_error(res: Any, *named: str) -> None:
    rc = res.returncode
    err = res.stderr.strip()
    assert rc == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in named:
        assert name in err, err


@pytest.fixture
def tiny(tmp_path: Path, tiny_pipeline: Path) -> Path:
    """A copy of the shared tiny pipeline and its data, to attack."""
    shutil.copytree(tiny_pipeline / "model", tmp_path / "model")
    shutil.copy(tiny_pipeline / "data.spacy", tmp_path / "dev.spacy")
    return tmp_path


# ---- the layer


def test_check_target_refuses_inputs_their_folders_and_pipelines(tmp_path: Path) -> None:
    data = write(tmp_path, "in/a.txt", "x")
    write(tmp_path, "model/config.cfg", "")
    write(tmp_path, "model/meta.json", "{}")
    cases = {
        data: "is one of the inputs",
        tmp_path / "in" / "b.txt": "lies inside the input folder",
        tmp_path: "holds the input",
        tmp_path / "model": "is a pipeline",
        tmp_path / "model" / "config.cfg": "lies in the pipeline",
    }
    for target, what in cases.items():
        with pytest.raises(UserError, match=what):
            check_target(target, [data, tmp_path / "in"], "--output")
    check_target(tmp_path / "model", [data], "--output", writes_pipeline=True)
    check_target(tmp_path / "in" / "out", [tmp_path / "in"], "OUT", inside_inputs=True)


def test_manifest_rerun_names_the_difference(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "x")
    b = write(tmp_path, "b.txt", "y")
    old = Manifest("convert", fingerprint([a]), {"seed": 0}, ["shard-00000.spacy"])
    write_manifest(tmp_path / "out", old)
    read = read_manifest(tmp_path / "out", "convert")
    assert read is not None and read.files == ["shard-00000.spacy"]
    assert check_rerun(tmp_path, read, Manifest("convert", fingerprint([a]), {"seed": 0}), False)
    with pytest.raises(UserError, match=r"other inputs \(now .*b.txt"):
        check_rerun(tmp_path, read, Manifest("convert", fingerprint([b]), {"seed": 0}), False)
    with pytest.raises(UserError, match="other settings .seed 0 -> 1"):
        check_rerun(tmp_path, read, Manifest("convert", fingerprint([a]), {"seed": 1}), False)
    assert not check_rerun(tmp_path, read, Manifest("convert", [], {}), True)
    with pytest.raises(UserError, match="written by convert, not annotate"):
        read_manifest(tmp_path / "out", "annotate")


def test_remove_listed_removes_nothing_else(tmp_path: Path) -> None:
    write(tmp_path, "out/train/shard-00000.spacy", "x")
    write(tmp_path, "out/notes.txt", "mine")
    write(tmp_path, "secret.txt", "mine")
    remove_listed(tmp_path / "out", ["train/shard-00000.spacy", "../secret.txt", "gone.spacy"])
    assert snapshot(tmp_path) == {"out/notes.txt": b"mine", "secret.txt": b"mine"}


# ---- b: visualize and evaluate wrote over any file


@pytest.mark.parametrize(
    "target", ["dev.spacy", "model/config.cfg", "model", "model/new.html", "."]
)
def test_visualize_refuses_inputs_and_the_pipeline(tiny: Path, target: str) -> None:
    before = snapshot(tiny)
    res = run_cli(["visualize", "model", "dev.spacy", target], tiny)
    one_line_error(res, target)
    assert snapshot(tiny) == before


@pytest.mark.parametrize("option", ["--output", "--table"])
@pytest.mark.parametrize("target", ["dev.spacy", "model/config.cfg", "model/meta.json"])
def test_evaluate_output_and_table_refuse_inputs_and_the_pipeline(
    tiny: Path, option: str, target: str
) -> None:
    before = snapshot(tiny)
    res = run_cli(["evaluate", "model", "dev.spacy", option, target], tiny)
    one_line_error(res, option, target)
    assert snapshot(tiny) == before


# ---- c: evaluate --report R --output R/m.json


def test_evaluate_output_inside_the_report_is_refused_before_evaluating(tiny: Path) -> None:
    before = snapshot(tiny)
    for option in ("--output", "--table"):
        res = run_cli(
            ["evaluate", "model", "dev.spacy", "--report", "rep", option, "rep/m.json"], tiny
        )
        one_line_error(res, option, "rep/m.json", "--report")
        assert snapshot(tiny) == before and not (tiny / "rep").exists()
    res = run_cli(["evaluate", "model", "dev.spacy", "--report", "rep", "--output", "m.json"], tiny)
    assert res.returncode == 0, res.stderr
    assert json.loads((tiny / "m.json").read_text())["ents_f"] is not None


# ---- a: convert replaced a corpus of other inputs without a word


def test_convert_refuses_a_corpus_of_other_inputs_unless_overwrite(tmp_path: Path) -> None:
    big = write(tmp_path, "big.txt", "".join(sentence(i) for i in range(30)))
    small = write(tmp_path, "small.txt", sentence(99))
    res = run_cli(["convert", str(big), "out", "--split", "train=0.5,dev=0.5"], tmp_path)
    assert res.returncode == 0, res.stderr
    before = snapshot(tmp_path / "out")
    res = run_cli(["convert", str(small), "out", "--split", "train=0.5,dev=0.5"], tmp_path)
    one_line_error(res, "out", "other inputs", "small.txt", "--overwrite")
    assert snapshot(tmp_path / "out") == before
    res = run_cli(["convert", str(big), "out", "--split", "train=0.6,dev=0.4"], tmp_path)
    one_line_error(res, "other settings", "split")
    assert snapshot(tmp_path / "out") == before
    # The same job again replaces; --overwrite replaces the other one.
    res = run_cli(["convert", str(big), "out", "--split", "train=0.5,dev=0.5"], tmp_path)
    assert res.returncode == 0 and snapshot(tmp_path / "out") == before
    res = run_cli(["convert", str(small), "out", "--overwrite", "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["splits"]["all"]["docs"] == 1


def test_convert_refuses_a_pipeline_folder(tiny: Path) -> None:
    src = write(tiny, "a.txt", sentence(1))
    before = snapshot(tiny)
    for target in ("model", "model/ner"):
        res = run_cli(["convert", str(src), target], tiny)
        one_line_error(res, target, "pipeline")
        assert snapshot(tiny) == before


# ---- d: annotate with its output folder inside an input folder


@pytest.mark.parametrize("glob", ["*.jsonl", "*"])
def test_annotate_output_inside_an_input_folder_is_left_out_of_the_inputs(
    tiny_pipeline: Path, tmp_path: Path, glob: str
) -> None:
    rows = [{"id": i, "text": t} for i, t in enumerate(["I use Linux", "Python runs"] * 3)]
    write(tmp_path, "data/in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    model = str(tiny_pipeline / "model")
    args = ["annotate", model, "data", "data/out", "--shard-size", "2", "--glob", glob]
    res = run_cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    done = snapshot(tmp_path / "data" / "out")
    assert sorted(n for n in done if n.startswith("shard-")) == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    # A rerun resumes (nothing to do); --overwrite starts over and writes them again.
    res = run_cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli([*args, "--overwrite"], tmp_path)
    assert res.returncode == 0, res.stderr
    again = snapshot(tmp_path / "data" / "out")
    assert {n: b for n, b in again.items() if n.startswith("shard-")} == {
        n: b for n, b in done.items() if n.startswith("shard-")
    }


def test_calibrate_refuses_a_pipeline_folder_holding_its_data(tiny: Path) -> None:
    shutil.move(str(tiny / "dev.spacy"), tiny / "model" / "dev.spacy")
    before = snapshot(tiny)
    res = run_cli(["calibrate", "model", "model/dev.spacy"], tiny)
    one_line_error(res, "MODEL", "model", "dev.spacy")
    res = run_cli(["calibrate", "model", "model/dev.spacy", "--output", "model"], tiny)
    one_line_error(res, "--output", "model", "dev.spacy")
    assert snapshot(tiny) == before


def test_an_annotate_folder_of_an_earlier_version_resumes_and_is_upgraded(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    write(tmp_path, "in.jsonl", json.dumps({"id": 1, "text": "I use Linux"}) + "\n")
    args = ["annotate", str(tiny_pipeline / "model"), "in.jsonl", "out"]
    assert run_cli(args, tmp_path).returncode == 0
    path = tmp_path / "out" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["command"] == "annotate"
    assert manifest["files"] == ["report.json", "shard-00000.jsonl"]
    old = {k: v for k, v in manifest.items() if k not in ("command", "files")}
    path.write_text(json.dumps({**old, "tool": "spacy_ntk_ner annotate"}))
    shard = (tmp_path / "out" / "shard-00000.jsonl").read_bytes()
    res = run_cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("earlier version") == 1
    assert json.loads(path.read_text())["tool"] == "spacy-ntk-ner"
    assert (tmp_path / "out" / "shard-00000.jsonl").read_bytes() == shard
    res = run_cli(args, tmp_path)
    assert "earlier version" not in res.stderr
