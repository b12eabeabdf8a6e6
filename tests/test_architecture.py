"""The package's import structure is the one ARCHITECTURE.md draws: every module
imports only what its row allows, only at the top of the file, and without cycles."""

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

import spacy_ntk_ner

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(spacy_ntk_ner.__file__).resolve().parent


def allowed_imports() -> Dict[str, Set[str]]:
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf8")
    match = re.search(r"```imports\n(.*?)```", text, re.S)
    assert match, "ARCHITECTURE.md has no ```imports block"
    table: Dict[str, Set[str]] = {}
    for line in match.group(1).splitlines():
        name, _, deps = line.partition(":")
        table[name.strip()] = set(deps.split())
    return table


def package_imports(path: Path) -> Dict[str, List[int]]:
    """The package modules a file imports (at module level, under TYPE_CHECKING or in a
    function: every import counts), each with its lines, and under "<function>" the
    lines of those inside a function."""
    tree = ast.parse(path.read_text(encoding="utf8"))
    found: Dict[str, List[int]] = {}
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else _submodules(node)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spacy_ntk_ner"):
            rest = (node.module or "").split(".")[1:]
            names = [rest[0]] if rest else _submodules(node)
        elif isinstance(node, ast.Import):
            prefix = "spacy_ntk_ner."
            names = [a.name[len(prefix) :] for a in node.names if a.name.startswith(prefix)]
        for name in names:
            found.setdefault(name.split(".")[0], []).append(node.lineno)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (
                    node.level == 1 or (node.module or "").startswith("spacy_ntk_ner")
                ):
                    found.setdefault("<function>", []).append(node.lineno)
    return found


def _submodules(node: ast.ImportFrom) -> List[str]:
    """`from . import a, b`: the modules a and b, or `__init__` for a name defined there."""
    return [a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in node.names]


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_every_module_has_a_row() -> None:
    assert sorted(allowed_imports()) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_what_its_row_allows(module: str) -> None:
    found = package_imports(PACKAGE / f"{module}.py")
    inside = found.pop("<function>", [])
    assert not inside, f"{module}.py imports the package inside a function at lines {inside}"
    extra = set(found) - allowed_imports()[module]
    assert not extra, f"{module}.py imports {sorted(extra)}, which ARCHITECTURE.md does not allow"


def test_the_allowed_imports_have_no_cycle() -> None:
    table = allowed_imports()
    done: Set[str] = set()

    def visit(name: str, path: List[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name) :] + [name]))
        if name in done:
            return
        for dep in sorted(table.get(name, ())):
            visit(dep, path + [name])
        done.add(name)

    for name in table:
        visit(name, [])


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The scanner sees relative, absolute, TYPE_CHECKING and function-level imports."""
    src = tmp_path / "mod.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .bio import x\n"
        "from . import models, __version__\n"
        "import spacy_ntk_ner.crf\n"
        "if TYPE_CHECKING:\n"
        "    from spacy_ntk_ner.ner import NTKEntityRecognizer\n"
        "def f():\n"
        "    from .report import evaluate\n"
    )
    found = package_imports(src)
    assert sorted(found) == ["<function>", "__init__", "bio", "crf", "models", "ner", "report"]
    assert found["<function>"] == [8]
