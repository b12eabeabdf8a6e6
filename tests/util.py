"""Helpers shared by the tests (conftest.py holds pytest's hooks only)."""

import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import fix_random_seed

REPO = Path(__file__).resolve().parent.parent


def write(folder: Path, name: str, text: str, encoding: str = "utf8") -> Path:
    """Write a fixture file and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def run_cli(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m spacy_ntk_ner ARGS` in a fresh process, outside the source tree."""
    env = dict(os.environ, PYTHONWARNINGS="error")
    return subprocess.run(
        [sys.executable, "-m", "spacy_ntk_ner", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def modules_after(code: str, cwd: Path) -> Set[str]:
    """Run CODE in a fresh `python -c` and return the modules it left imported."""
    script = f"{code}\nimport sys\nprint('\\n' + ' '.join(sorted(sys.modules)))\n"
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return set(res.stdout.splitlines()[-1].split())


def load_script(name: str) -> ModuleType:
    """Import `scripts/NAME.py` of the repository as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- tiny trained pipelines: one training loop for every test that needs one

# Two entities per text, APP then LIB, over every ordered pair of names.
NAMES = ["Alpha", "Beta", "Gamma", "Delta", "Omega", "Sigma"]


def app_lib_examples(nlp: Language) -> List[Example]:
    """30 texts "A uses B on Linux" with A as APP and B as LIB."""
    texts = [(f"{a} uses {b} on Linux", a, b) for a in NAMES for b in NAMES if a != b]
    return [
        Example.from_dict(
            nlp.make_doc(t),
            {"entities": [(0, len(a), "APP"), (len(a) + 6, len(a) + 6 + len(b), "LIB")]},
        )
        for t, a, b in texts
    ]


def char_examples(
    nlp: Language, texts: Sequence[Tuple[str, List[Tuple[int, int, str]]]]
) -> List[Example]:
    """Examples from texts with entities as (start char, end char, label)."""
    return [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in texts]


def bio_examples(nlp: Language, texts: Sequence[Tuple[str, List[str]]]) -> List[Example]:
    """Examples from whitespace-tokenized texts with one BIO tag per token."""
    docs = [Doc(nlp.vocab, words=t.split(), ents=tags) for t, tags in texts]
    return [Example(nlp.make_doc(d.text), d) for d in docs]


def train_pipeline(
    make_examples: Callable[[Language], List[Example]],
    components: Optional[Dict[str, Dict[str, Any]]] = None,
    steps: int = 30,
    drop: float = 0.0,
    n_train: Optional[int] = None,
) -> Tuple[Language, List[Example]]:
    """Train a blank English pipeline from seed 0 on `make_examples(nlp)`.

    make_examples (Callable[[Language], List[Example]]): The examples, made with the
        pipeline's tokenizer.
    components (Optional[Dict[str, Dict[str, Any]]]): Name to config (a "factory" key
        picks another factory than `ntk_ner`); default one `ntk_ner`.
    steps (int): Updates on the training examples.
    drop (float): Dropout.
    n_train (Optional[int]): Train on the first n examples only (the rest are held out).
    RETURNS (Tuple[Language, List[Example]]): The pipeline and all its examples.
    """
    fix_random_seed(0)
    nlp = spacy.blank("en")
    for name, config in (components or {"ntk_ner": {}}).items():
        config = dict(config)
        factory = config.pop("factory", "ntk_ner")
        nlp.add_pipe(factory, name=name, config=config)
    examples = make_examples(nlp)
    train = examples[:n_train] if n_train else examples
    optimizer = nlp.initialize(lambda: train)
    for _ in range(steps):
        nlp.update(train, sgd=optimizer, drop=drop)
    return nlp, examples


# ---- the CRF by brute force: every tag sequence, for the recursions to be checked against


def scored_paths(
    scheme: Any, emissions: Any, trans: Any, start: Any, end: Any
) -> Iterator[Tuple[Tuple[int, ...], float]]:
    """Every tag sequence the scheme allows over one doc, with its CRF score.

    scheme (TagScheme): Which tags may start, end and follow which.
    emissions (numpy.ndarray): (n, K) tag scores of the doc's n tokens.
    trans, start, end (numpy.ndarray): The CRF's transition, start and end scores.
    YIELDS (Tuple[Tuple[int, ...], float]): A sequence of tag indices and its score.
    """
    n, n_tags = emissions.shape
    for seq in itertools.product(range(n_tags), repeat=n):
        if not scheme.start[seq[0]] or not scheme.end[seq[-1]]:
            continue
        if not all(scheme.allowed[i, j] for i, j in zip(seq, seq[1:])):
            continue
        score = start[seq[0]] + end[seq[-1]] + sum(emissions[t, j] for t, j in enumerate(seq))
        yield seq, score + sum(trans[i, j] for i, j in zip(seq, seq[1:]))


# ---- what an error is: where it points and what it is about, not its whole wording


def assert_user_error(message: str, where: str, *about: str) -> None:
    """A message for the user: one line, no traceback, that starts by naming `where`
    (a file, `FILE:LINE` or an option) and mentions each of `about`."""
    text = message.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert text.startswith((f"{where}:", f"{where} ")), f"does not name {where}: {text}"
    for words in about:
        assert words in text, f"{words!r} not in {text!r}"


def assert_cli_error(res: subprocess.CompletedProcess, where: str, *about: str) -> None:
    """A command that failed on bad input: exit status 1 and `assert_user_error`."""
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert_user_error(res.stderr, where, *about)
