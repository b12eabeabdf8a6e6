"""What the command line reports in one line, what it leaves as a traceback, and what
its help imports."""

from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from util import modules_after, run_cli

import spacy_ntk_ner
from spacy_ntk_ner.annotate.options import AnnotateOptions
from spacy_ntk_ner.cli import app as cli
from spacy_ntk_ner.cli import convert as convert_command
from spacy_ntk_ner.errors import UserError
from spacy_ntk_ner.loading import load_pipeline


def test_a_model_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "d.spacy").write_bytes(b"")
    res = run_cli(["evaluate", "no_such_model_x", "d.spacy"], tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith("no_such_model_x: [E050] Can't find model"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_config_that_does_not_validate_names_the_model_and_setting(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("ntk_ner")
    doc = Doc(nlp.vocab, words=["Python", "runs"], ents=["B-APP", "O"])
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    nlp.to_disk(tmp_path / "p")
    config = tmp_path / "p" / "config.cfg"
    config.write_text(config.read_text().replace("threshold = 0.0", 'threshold = "high"'))
    with pytest.raises(UserError) as err:
        load_pipeline(tmp_path / "p")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'p'}: its config does not validate (")
    assert "threshold" in message and "\n" not in message


def test_bad_input_is_one_line_and_a_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    def user_problem(*args: Any, **kwargs: Any) -> Any:
        raise UserError("in.txt:3: what is wrong")

    monkeypatch.setattr(convert_command, "convert", user_problem)
    assert cli.main(["convert", "in.txt", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == "in.txt:3: what is wrong\n"

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(convert_command, "convert", bug)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["convert", "in.txt", str(tmp_path / "out")])


def test_version(tmp_path: Path) -> None:
    res = run_cli(["--version"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"spacy-ntk-ner {spacy_ntk_ner.__version__}\n"


def _modules_after_help(args: List[str], cwd: Path) -> Set[str]:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['spacy_ntk_ner', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('spacy_ntk_ner', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    return modules_after(code, cwd)


def test_help_imports_no_command_handler(tmp_path: Path) -> None:
    modules = _modules_after_help(["convert", "--help"], tmp_path)
    assert "spacy_ntk_ner.cli.parsers" in modules
    assert "spacy_ntk_ner.cli.convert" not in modules


@pytest.mark.parametrize("args", [["--help"], ["convert", "--help"], ["annotate", "--help"]])
def test_help_imports_no_spacy_language(args: List[str], tmp_path: Path) -> None:
    modules = _modules_after_help(args, tmp_path)
    assert "spacy_ntk_ner.cli.parsers" in modules
    assert "spacy.language" not in modules


# ---- every numeric option is checked for what it means, before anything is read

POSITIONALS = {
    "convert": ["in.bio", "out"],
    "export": ["in.spacy", "out.txt"],
    "evaluate": ["model", "data.spacy"],
    "calibrate": ["model", "data.spacy"],
    "visualize": ["model", "data.spacy", "out.html"],
    "annotate": ["model", "in.txt", "out"],
}
BAD_VALUES = [
    ("convert", "--tag-column", "1"),
    ("convert", "--n-sents", "-1"),
    ("convert", "--seed", "1.5"),
    ("convert", "--shard-size", "0"),
    ("evaluate", "--gpu-id", "-2"),
    ("calibrate", "--target-precision", "0"),
    ("calibrate", "--target-precision", "1"),
    ("calibrate", "--target-precision", "nan"),
    ("calibrate", "--target-recall", "1.5"),
    ("visualize", "--limit", "0"),
    ("annotate", "--threshold", "1.5"),
    ("annotate", "--threshold", "nan"),
    ("annotate", "--shard-size", "0"),
    ("annotate", "--n-process", "0"),
    ("annotate", "--batch-size", "0"),
    ("annotate", "--gpu-id", "-2"),
    ("annotate", "--n-workers", "0"),
    ("annotate", "--ray-num-cpus", "0"),
    ("annotate", "--ray-num-cpus", "-1"),
]


@pytest.mark.parametrize("command,option,value", BAD_VALUES)
def test_a_bad_number_is_refused_naming_its_option(
    command: str, option: str, value: str, tmp_path: Path, capsys: Any
) -> None:
    args = [str(tmp_path / p) for p in POSITIONALS[command]]
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, *args, option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"python -m spacy_ntk_ner {command}: error: argument {option}: ")
    ), err
    assert not any(tmp_path.iterdir())


def test_every_numeric_option_has_a_bad_value_in_the_table() -> None:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    numeric = {
        (name, action.option_strings[-1])
        for name, sub in dict(commands.choices or {}).items()
        for action in sub._actions
        if action.option_strings and action.type not in (None, Path, str)
    }
    assert numeric == {(command, option) for command, option, _ in BAD_VALUES}


@pytest.mark.parametrize("field", [{"ray_num_cpus": 0}, {"gpu_id": -2}])
def test_annotate_options_refuse_what_the_parser_refuses(field: Dict[str, int]) -> None:
    option = "--" + next(iter(field)).replace("_", "-")
    with pytest.raises(UserError, match=option):
        AnnotateOptions(**field).check()  # type: ignore[arg-type]
