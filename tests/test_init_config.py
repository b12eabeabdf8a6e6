"""`init-config` writes the recommended training config, which spaCy validates and
trains; a config from spaCy's own tools gets calibration as the docs say."""

import re
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.cli.init_config import init_config as spacy_init_config
from spacy.cli.train import train as spacy_train
from spacy.util import load_config, load_model_from_config, registry
from thinc.api import Config
from util import REPO, assert_cli_error, run_cli, write

from spacy_ntk_ner.ner.recommended import CONFIG_FILES, recommended_config

CALLBACK = "spacy_ntk_ner.calibrate.v2"


@pytest.mark.parametrize("gpu", [False, True])
def test_the_repository_configs_are_the_package_configs(gpu: bool) -> None:
    """One copy: `configs/cpu.cfg` and `trf.cfg` are links to the package data, and the
    installed package ships the same bytes."""
    name = CONFIG_FILES[gpu]
    link = REPO / "configs" / name
    assert link.is_symlink()
    assert link.resolve() == REPO / "spacy_ntk_ner" / "configs" / name
    assert link.read_text(encoding="utf8") == recommended_config(gpu)


@pytest.mark.parametrize("gpu", [False, True])
def test_the_written_config_is_complete_and_valid(tmp_path: Path, gpu: bool) -> None:
    args = ["init-config", "config.cfg"] + (["--gpu"] if gpu else [])
    res = run_cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "python -m spacy train config.cfg" in res.stdout
    text = (tmp_path / "config.cfg").read_text(encoding="utf8")
    assert text == recommended_config(gpu)
    config = load_config(tmp_path / "config.cfg")
    assert config["training"]["before_to_disk"]["@callbacks"] == CALLBACK
    ner = config["components"]["ntk_ner"]
    assert (ner["o_unknown_weight"], ner["n_passes"]) == ((0.0, 2) if gpu else (0.1, 1))
    nlp = load_model_from_config(config, auto_fill=True)
    assert nlp.pipe_names == ["ntk_ner"]
    # Complete: spaCy's fill adds nothing to it.
    filled = nlp.config
    assert filled["components"] == config["components"]
    assert filled["training"] == config["training"]


def test_the_cpu_config_trains_and_calibrates_at_save(tmp_path: Path, tiny_pipeline: Path) -> None:
    assert run_cli(["init-config", "config.cfg"], tmp_path).returncode == 0
    data = str(tiny_pipeline / "data.spacy")
    overrides = {
        "paths.train": data,
        "paths.dev": data,
        "training.max_steps": 4,
        "training.eval_frequency": 2,
    }
    # Two dev docs are too few entities to fit a map: the callback ran, and says so.
    with pytest.warns(UserWarning, match="uncalibrated"):
        spacy_train(tmp_path / "config.cfg", tmp_path / "out", overrides=overrides)
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.pipe_names == ["ntk_ner"]
    assert "uncalibrated" in nlp.meta["ntk_ner"]["ntk_ner"]


def test_stdout(tmp_path: Path) -> None:
    res = run_cli(["init-config", "-", "--gpu"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == recommended_config(True)
    assert list(tmp_path.iterdir()) == []


def test_it_replaces_only_its_own_unedited_config(tmp_path: Path, tiny_pipeline: Path) -> None:
    target = tmp_path / "config.cfg"
    assert run_cli(["init-config", "config.cfg"], tmp_path).returncode == 0
    # Its own output, unedited: replaced by the other kind without being asked.
    assert run_cli(["init-config", "config.cfg", "--gpu"], tmp_path).returncode == 0
    assert target.read_text(encoding="utf8") == recommended_config(True)
    edited = recommended_config(True).replace("max_steps = 20000", "max_steps = 500")
    target.write_text(edited, encoding="utf8")
    res = run_cli(["init-config", "config.cfg"], tmp_path)
    assert_cli_error(res, "config.cfg", "--overwrite")
    assert target.read_text(encoding="utf8") == edited
    res = run_cli(["init-config", "config.cfg", "--overwrite"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert target.read_text(encoding="utf8") == recommended_config(False)
    # Never into a pipeline, even when told to overwrite; never onto a folder.
    shutil.copytree(tiny_pipeline / "model", tmp_path / "model")
    before = (tmp_path / "model" / "config.cfg").read_bytes()
    res = run_cli(["init-config", "model/config.cfg", "--overwrite"], tmp_path)
    assert_cli_error(res, "model/config.cfg", "pipeline")
    assert (tmp_path / "model" / "config.cfg").read_bytes() == before
    write(tmp_path, "folder/notes.txt", "mine\n")
    assert_cli_error(run_cli(["init-config", "folder"], tmp_path), "folder", "folder")


def docs_block(page: str, lang: str) -> str:
    text = (REPO / "docs" / page).read_text(encoding="utf8")
    section = text.split("## Training configs", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(rf"```{lang}\n(.*?)```", section, re.S)
    return block


def test_the_docs_add_calibration_to_a_config_from_spacys_tools(tmp_path: Path) -> None:
    """`spacy init config -p ntk_ner`, edited as docs/component.md says, calibrates
    at every save; spaCy's own config shows no 0.1 setting names."""
    text = spacy_init_config(lang="en", pipeline=["ntk_ner"]).to_str()
    assert not re.search(r"^(k|alpha|alpha_warmup_steps) = ", text, re.M)
    assert text.count("\nbefore_to_disk = null\n") == 1
    text = (
        text.replace("\nbefore_to_disk = null\n", "\n") + "\n" + docs_block("component.md", "ini")
    )
    config = Config().from_str(text)
    assert config["training"]["before_to_disk"]["@callbacks"] == CALLBACK
    load_model_from_config(config, auto_fill=True)
    callback = registry.resolve({"cb": config["training"]["before_to_disk"]})["cb"]
    assert callable(callback)
