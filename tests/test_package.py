"""What holds for the installed package as a whole."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import spacy_ntk_ner


@pytest.mark.skipif(os.environ.get("NTK_NER_TEST_INSTALLED") != "1", reason="set by `make test`")
def test_tests_run_against_the_installed_package() -> None:
    # Entry points exist only in installed metadata: test what users install.
    assert "site-packages" in Path(spacy_ntk_ner.__file__).parts
    assert (Path(spacy_ntk_ner.__file__).parent / "py.typed").exists()


def test_factory_module_imports_nothing_heavy(tmp_path: Path) -> None:
    """spaCy imports the factory's module whenever it builds a Language: it must add
    no torch or transformers modules to what spaCy and thinc import themselves."""
    code = (
        "import sys\n"
        "import spacy, spacy.language, thinc.api\n"
        "before = set(sys.modules)\n"
        "import spacy_ntk_ner.ner.factory, spacy_ntk_ner.ner.models\n"
        "import spacy_ntk_ner.corpus.readers\n"
        "heavy = ('torch', 'transformers', 'spacy_transformers', 'cupy')\n"
        "new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy)\n"
        "print(len(new), ','.join(new[:5]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "0", res.stdout


def test_converter_builds_no_language(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from spacy_ntk_ner.cli import main\n"
        "(open('in.txt', 'w')).write('a\\tB-X\\n\\n')\n"
        "assert main(['convert', 'in.txt', 'out', '--quiet']) == 0\n"
        "print('spacy_transformers' in sys.modules, 'spacy.lang.en' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_loading_a_pipeline_imports_no_converter(tmp_path: Path) -> None:
    """`spacy.load` of an `ntk_ner` pipeline imports the component, not the BIO reader,
    the converter or the commands (torch and transformers: the test above)."""
    pipeline = Path(__file__).resolve().parent / "fixtures" / "pipeline-0.1.0" / "pipeline"
    code = (
        "import sys, spacy\n"
        f"nlp = spacy.load({str(pipeline)!r})\n"
        "assert nlp('Alpha uses Beta on Linux').ents\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('spacy_ntk_ner'))))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    loaded = set(res.stdout.split())
    assert "spacy_ntk_ner.ner.component" in loaded
    allowed_prefixes = ("spacy_ntk_ner.ner", "spacy_ntk_ner.confidence.")
    allowed = {"spacy_ntk_ner", "spacy_ntk_ner.errors", "spacy_ntk_ner.corpus"}
    allowed |= {"spacy_ntk_ner.corpus.iob", "spacy_ntk_ner.confidence"}
    extra = {m for m in loaded - allowed if not m.startswith(allowed_prefixes)}
    assert not extra, f"spacy.load imported {sorted(extra)}"
