"""The package's import structure is the one ARCHITECTURE.md draws: every module
imports only what its row allows, only at the top of the file, and without cycles.

Modules are named by their dotted path inside the package (`corpus.reader`); a
subpackage's `__init__.py` by the subpackage's name (`annotate`), the package's own by
`__init__`.
"""

import ast
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

import spacy_ntk_ner

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(spacy_ntk_ner.__file__).resolve().parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def allowed_imports() -> Dict[str, Set[str]]:
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf8")
    match = re.search(r"```imports\n(.*?)```", text, re.S)
    assert match, "ARCHITECTURE.md has no ```imports block"
    table: Dict[str, Set[str]] = {}
    for line in match.group(1).splitlines():
        name, _, deps = line.partition(":")
        table[name.strip()] = set(deps.split())
    return table


def _resolve(parts: List[str], names: List[str], root: Path) -> List[str]:
    """The modules that `from <parts> import <names>` imports: each name that is a
    submodule, else the module (or subpackage) `parts` itself."""
    base = root.joinpath(*parts)
    found = []
    for name in names:
        if (base / f"{name}.py").exists() or (base / name / "__init__.py").exists():
            found.append(".".join([*parts, name]))
        else:
            found.append(".".join(parts) or "__init__")
    return found


def _imported(node: ast.AST, here: List[str], root: Path) -> List[str]:
    """The package modules one import statement names (none for other packages)."""
    if isinstance(node, ast.Import):
        prefix = "spacy_ntk_ner."
        return [a.name[len(prefix) :] for a in node.names if a.name.startswith(prefix)]
    if not isinstance(node, ast.ImportFrom):
        return []
    rest = node.module.split(".") if node.module else []
    if node.level:
        base = here[: len(here) - (node.level - 1)]
    elif rest[:1] == ["spacy_ntk_ner"]:
        base, rest = [], rest[1:]
    else:
        return []
    return _resolve(base + rest, [a.name for a in node.names], root)


def package_imports(path: Path, root: Path = PACKAGE) -> Dict[str, List[int]]:
    """The package modules a file imports (at module level, under TYPE_CHECKING or in a
    function: every import counts), each with its lines, and under "<function>" the
    lines of those inside a function."""
    tree = ast.parse(path.read_text(encoding="utf8"))
    here = list(path.relative_to(root).parent.parts)
    found: Dict[str, List[int]] = {}
    for node in ast.walk(tree):
        for name in _imported(node, here, root):
            found.setdefault(name, []).append(node.lineno)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if _imported(node, here, root):
                    found.setdefault("<function>", []).append(node.lineno)
    return found


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def test_every_module_has_a_row() -> None:
    assert sorted(allowed_imports()) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_what_its_row_allows(module: str) -> None:
    path = next(p for p in PACKAGE.rglob("*.py") if module_name(p) == module)
    found = package_imports(path)
    inside = found.pop("<function>", [])
    assert not inside, f"{module} imports the package inside a function at lines {inside}"
    extra = set(found) - allowed_imports()[module]
    assert not extra, f"{module} imports {sorted(extra)}, which ARCHITECTURE.md does not allow"


def test_every_allowed_import_is_a_module() -> None:
    table = allowed_imports()
    unknown = {dep for deps in table.values() for dep in deps} - set(table)
    assert not unknown, f"ARCHITECTURE.md allows imports of modules that do not exist: {unknown}"


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
    """The scanner sees relative (at any depth), absolute, TYPE_CHECKING and
    function-level imports, and tells a submodule from a name of a package."""
    for folder in ("corpus", "ner/_crf"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for name in ("corpus/__init__", "corpus/reader", "ner/__init__", "ner/_crf/__init__"):
        (tmp_path / f"{name}.py").write_text("")
    (tmp_path / "ner/_crf/lattice.py").write_text("")
    (tmp_path / "errors.py").write_text("")
    src = tmp_path / "ner" / "component.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..corpus.reader import x\n"
        "from . import _crf, __version__\n"
        "from ._crf import lattice\n"
        "import spacy_ntk_ner.errors\n"
        "if TYPE_CHECKING:\n"
        "    from spacy_ntk_ner.corpus import Thing\n"
        "def f():\n"
        "    from ..corpus.reader import y\n"
    )
    found = package_imports(src, root=tmp_path)
    assert sorted(found) == [
        "<function>",
        "corpus",
        "corpus.reader",
        "errors",
        "ner",
        "ner._crf",
        "ner._crf.lattice",
    ]
    assert found["<function>"] == [9]
    assert found["corpus.reader"] == [2, 9]
