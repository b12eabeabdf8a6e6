"""The training workflow: configs, a transformer pipeline end to end on the CPU, and a
packaged wheel that installs and loads by name in a fresh virtual environment."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import spacy
from thinc.api import Config
from util import load_script
from weasel.util import load_project_config

from spacy_ntk_ner.confidence.platt import Calibration
from spacy_ntk_ner.corpus.convert import convert
from spacy_ntk_ner.corpus.options import ReadOptions

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["cpu", "cpu-ner", "trf", "trf-ner"]
SAMPLE = REPO / "assets" / "sample.bio"


def run(cmd: List[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra_env)
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=1200)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    convert([SAMPLE], out, ReadOptions(), split="train=0.8,dev=0.2", seed=0)
    return out


@pytest.mark.parametrize("name", CONFIGS)
def test_config_fills_unchanged(name: str, tmp_path: Path) -> None:
    from spacy.cli.init_config import fill_config

    path = REPO / "configs" / f"{name}.cfg"
    fill_config(tmp_path / "filled.cfg", path, silent=True)
    original = Config().from_disk(path, interpolate=False)
    filled = Config().from_disk(tmp_path / "filled.cfg", interpolate=False)
    assert filled == original


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_debug_config(name: str, corpus: Path, tmp_path: Path) -> None:
    res = run(
        [
            sys.executable,
            "-m",
            "spacy",
            "debug",
            "config",
            str(REPO / "configs" / f"{name}.cfg"),
            "--paths.train",
            str(corpus / "train"),
            "--paths.dev",
            str(corpus / "dev"),
        ],
        tmp_path,
    )
    assert "Config is valid" in res.stdout


def test_project_yml_is_valid() -> None:
    project = load_project_config(REPO)
    assert {"all", "all-gpu", "own", "wikiser"} <= set(project["workflows"])
    commands = {c["name"]: c for c in project["commands"]}
    for workflow in project["workflows"].values():
        assert all(step in commands for step in workflow)
    # A user's corpus is split 80/10/10; the sample (`all`, `all-gpu`) has its own split,
    # a larger dev part (see test_the_sample_workflows_pipeline_is_calibrated).
    raw = (REPO / "project.yml").read_text("utf8")
    assert 'split: "train=0.8,dev=0.1,test=0.1"' in raw
    splits_by = {
        name: next(f for f in commands[flow[0]]["script"][0].split() if "=" in f)
        for name, flow in project["workflows"].items()
        if flow[0] in ("convert", "convert-sample")
    }
    assert splits_by["own"] == "train=0.8,dev=0.1,test=0.1"
    assert splits_by["all"] == splits_by["all-gpu"] == "train=0.6,dev=0.3,test=0.1"
    assets = {a["dest"]: a for a in project["assets"]}
    assert assets["assets/wikiser/dev.txt"]["checksum"] == "fd756683b6a03f7e883e237a250ba857"


@pytest.mark.slow
def test_transformer_pipeline_end_to_end_on_cpu(corpus: Path, tmp_path: Path) -> None:
    """configs/trf.cfg with a tiny random BERT: train, save, spacy.load, predict."""
    make_random_encoder = load_script("make_encoder").make_random_encoder
    texts = [line.split("\t")[0] for line in SAMPLE.read_text().splitlines()]
    encoder = make_random_encoder(tmp_path / "encoder", texts, "tiny")
    out = tmp_path / "training"
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(REPO / "configs" / "trf.cfg"),
            "--output",
            str(out),
            "--paths.train",
            str(corpus / "train"),
            "--paths.dev",
            str(corpus / "dev"),
            "--components.ntk_ner.model.tok2vec.name",
            str(encoder),
            "--components.ntk_ner.model.tok2vec.mixed_precision",
            "false",
            "--components.ntk_ner.agreement_warmup_steps",
            "2",
            "--training.max_steps",
            "6",
            "--training.eval_frequency",
            "3",
            "--training.batcher.size",
            "500",
        ],
        tmp_path,
    )
    # The pipeline holds the transformer itself: it loads without the encoder folder.
    for f in encoder.iterdir():
        f.unlink()
    encoder.rmdir()
    res = run(
        [
            sys.executable,
            "-c",
            "import json, sys, spacy\n"
            "nlp = spacy.load(sys.argv[1])\n"
            "doc = nlp('Python runs on Linux and uses HTTP .')\n"
            "g = doc.spans['ntk_ner']\n"
            "print(json.dumps({'pipe': nlp.pipe_names, 'n': len(doc), 's': g.attrs['scores']}))",
            str(out / "model-last"),
        ],
        tmp_path,
    )
    got = json.loads(res.stdout)
    assert got["pipe"] == ["ntk_ner"] and got["n"] == 8
    nlp = spacy.load(out / "model-last")
    # The pipeline scores the same in a fresh process as here.
    here = nlp("Python runs on Linux and uses HTTP .").spans["ntk_ner"].attrs["scores"]
    assert got["s"] == pytest.approx(here, abs=1e-6)
    assert nlp.get_pipe("ntk_ner").cfg["n_passes"] == 2


@pytest.mark.slow
def test_packaged_wheel_installs_and_loads_by_name(corpus: Path, tmp_path: Path) -> None:
    """`spacy package` records spacy-ntk-ner as a requirement; the wheel installs into
    a fresh virtual environment and loads by name in a script that never imports us."""
    out = tmp_path / "training"
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(REPO / "configs" / "cpu.cfg"),
            "--output",
            str(out),
            "--paths.train",
            str(corpus / "train"),
            "--paths.dev",
            str(corpus / "dev"),
            "--training.max_steps",
            "20",
            "--training.eval_frequency",
            "10",
        ],
        tmp_path,
    )
    packages = tmp_path / "packages"
    packages.mkdir()
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            str(out / "model-best"),
            str(packages),
            "--name",
            "ntk_tiny",
            "--version",
            "0.0.1",
            "--build",
            "wheel",
        ],
        tmp_path,
    )
    meta = json.loads((packages / "en_ntk_tiny-0.0.1" / "meta.json").read_text())
    assert any(r.startswith("spacy-ntk-ner>=") for r in meta["requirements"])
    dist = packages / "en_ntk_tiny-0.0.1" / "dist"
    # The project's package step lays this package's wheel beside the model's.
    project = {c["name"]: c for c in load_project_config(REPO)["commands"]}
    assert any("pip wheel" in line for line in project["package"]["script"])
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(REPO),
        ],
        tmp_path,
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = tmp_path / "metrics" / "install-check.json"
    res = run(
        [
            sys.executable,
            str(REPO / "scripts" / "install_check.py"),
            str(packages / "en_ntk_tiny-0.0.1" / "dist"),
            "en_ntk_tiny",
            "--venv",
            str(tmp_path / "venv"),
            "--constraint",
            "torch==2.13.0",
            "--text",
            "Python runs on Linux .",
            "--output",
            str(result),
        ],
        tmp_path,
        TMPDIR=str(scratch),
    )
    assert "spacy.load('en_ntk_tiny') in a fresh environment: pipeline ['ntk_ner']" in res.stdout
    assert "spacy-ntk-ner>=0.1.0,<0.2.0" in res.stdout
    # The wheels and constraints went into a temporary folder that is gone now.
    assert list(scratch.iterdir()) == []
    recorded = json.loads(result.read_text())
    assert recorded["pipeline"] == ["ntk_ner"] and recorded["name"] == "en_ntk_tiny"
    site = list((tmp_path / "venv" / "lib").glob("python*/site-packages/spacy_ntk_ner"))
    assert site, "spacy-ntk-ner was not installed into the fresh environment"


def test_run_logged_keeps_chatter_in_the_log(tmp_path: Path) -> None:
    """The package step's output goes to a log; on failure its end is shown and the
    log named, with the command's exit status."""
    script = str(REPO / "scripts" / "run_logged.py")
    log = tmp_path / "logs" / "ok.log"
    ok = subprocess.run(
        [sys.executable, script, str(log), "--", "python", "-c", "print('setuptools-noise ' * 3)"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0
    assert "setuptools-noise" not in ok.stdout and "setuptools-noise" in log.read_text()
    bad_log = tmp_path / "bad.log"
    code = "import sys; print('line one'); sys.exit(3)"
    bad = subprocess.run(
        [sys.executable, script, str(bad_log), "--", "python", "-c", code],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 3
    assert "line one" in bad.stderr and f"full log: {bad_log}" in bad.stderr


@pytest.mark.slow
def test_the_project_trains_on_a_users_bio_file(tmp_path: Path) -> None:
    """`spacy project run convert` and `train` on the user's own BIO file, named by
    `--vars.data`; the corpus and the model land where the variables say."""
    for name in ("project.yml", "configs", "scripts"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    names = ["Alpha", "Beta", "Gamma", "Delta", "Omega", "Sigma", "Kappa"]
    sentences = [
        f"{a}\tB-Application\nuses\tO\n{b}\tB-Library\non\tO\nLinux\tB-Operating_System\n"
        for a in names
        for b in names
        if a != b
    ]
    (tmp_path / "mine.bio").write_text("\n".join(sentences), encoding="utf8")
    spacy_project = [sys.executable, "-m", "spacy", "project", "run"]
    data = ["--vars.data", "mine.bio", "--vars.dataset", "mine"]
    run([*spacy_project, "convert", ".", *data], tmp_path)
    stats = json.loads((tmp_path / "corpus" / "mine" / "stats.json").read_text())
    assert sum(s["sentences"] for s in stats["splits"].values()) == len(sentences)
    assert sum(s["tokens"] for s in stats["splits"].values()) == 5 * len(sentences)
    steps = ["--vars.max_steps", "20", "--vars.eval_frequency", "10", "--vars.name", "mine"]
    run([*spacy_project, "train", ".", *data, *steps], tmp_path)
    nlp = spacy.load(tmp_path / "training" / "mine" / "model-best")
    assert set(nlp.get_pipe("ntk_ner").labels) == {"Application", "Library", "Operating_System"}


@pytest.mark.slow
def test_the_sample_workflows_pipeline_is_calibrated(tmp_path: Path) -> None:
    """`make run`'s convert and train as project.yml sets them: the sample's dev split
    has the entities the calibration at each save needs, so model-best's scores are
    calibrated (with a dev share of 0.1 they stayed uncalibrated, without a word)."""
    for name in ("project.yml", "configs", "scripts"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "assets").mkdir()
    shutil.copy(SAMPLE, tmp_path / "assets" / "sample.bio")
    spacy_project = [sys.executable, "-m", "spacy", "project", "run"]
    first, second = load_project_config(tmp_path)["workflows"]["all"][:2]
    run([*spacy_project, first, "."], tmp_path)
    res = run([*spacy_project, second, "."], tmp_path)
    assert "uncalibrated" not in res.stderr + res.stdout
    best = tmp_path / "training" / "ntk_ner_sample" / "model-best"
    nlp = spacy.load(best)
    assert not Calibration.from_cfg(nlp.get_pipe("ntk_ner").cfg).is_identity
    assert "ntk_ner" not in nlp.meta
