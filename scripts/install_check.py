"""Install a packaged pipeline wheel into a fresh virtual environment and load it by name.

Usage: python scripts/install_check.py WHEEL_DIR PACKAGE_NAME [--text TEXT] [--venv DIR]
       [--constraint REQ ...] [--output RESULT.json]

The model wheel requires `spacy-ntk-ner` (as `spacy package` recorded); the package
step leaves this package's own wheel beside it, and this script installs the model
wheel with that folder as pip's --find-links, as a colleague given the folder would.
In the new environment it runs `spacy.load(PACKAGE_NAME)` in a script that never
imports spacy_ntk_ner, and prints the entities of TEXT with their scores. Exit status
0 only if all of that works.

The environment (some 340 MB) lives in a temporary folder that is removed at the end,
unless `--venv` names a folder to keep it in. `--output` records the result as JSON
(written under a temporary name, then renamed), so `spacy project run` can skip the
check while the wheel is unchanged.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any, Dict, List, Optional

LOAD = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
doc = nlp(sys.argv[2])
scores = {}
for name, pipe in nlp.pipeline:
    key = getattr(pipe, "cfg", {}).get("spans_key")
    if key and key in doc.spans:
        group = doc.spans[key]
        scores.update({(s.start, s.end, s.label_): x for s, x in zip(group, group.attrs["scores"])})
print(json.dumps({
    "pipeline": nlp.pipe_names,
    "requirements": nlp.meta.get("requirements", []),
    "entities": [[e.text, e.label_, scores.get((e.start, e.end, e.label_))] for e in doc.ents],
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("wheel_dir", type=Path, help="folder holding the model's wheel")
    parser.add_argument("name", help="the model package's name, as spacy.load takes it")
    parser.add_argument("--text", default="We trained it with PyTorch on a GPU running Linux .")
    parser.add_argument("--venv", type=Path, default=None, help="keep the environment here")
    parser.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="pip constraint such as torch==2.13.0 (a bare torch pulls a CUDA build)",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args()
    wheels = sorted(args.wheel_dir.glob(f"{args.name}-*.whl"))
    if not wheels:
        print(
            f"error: {args.wheel_dir}: no {args.name} wheel (run the package step)", file=sys.stderr
        )
        return 1
    if not list(args.wheel_dir.glob("spacy_ntk_ner-*.whl")):
        print(
            f"error: {args.wheel_dir}: no spacy_ntk_ner wheel beside the model's", file=sys.stderr
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="ntk-install-check-") as tmp:
        out = _check(Path(tmp), args.venv, wheels[-1], args.name, args.text, args.constraint)
    if out is None:
        return 1
    print(f"spacy.load({args.name!r}) in a fresh environment: pipeline {out['pipeline']}")
    print(f"requirements: {', '.join(out['requirements'])}")
    print(f"text: {args.text}")
    for text, label, score in out["entities"]:
        shown = "-" if score is None else f"{score:.3f}"
        print(f"  {text!r:32} {label:18} {shown}")
    if not out["entities"]:
        print("  (no entities)")
    if args.output is not None:
        _write_json(args.output, {"name": args.name, "wheel": wheels[-1].name, **out})
    return 0


def _check(
    tmp: Path, env_dir: Optional[Path], wheel: Path, name: str, text: str, constraint: List[str]
) -> Optional[Dict[str, Any]]:
    """Install `wheel` into a new environment and load `name` there.

    RETURNS (Optional[Dict[str, Any]]): What the loading script printed, or None if
        loading failed.
    """
    env_dir = env_dir or tmp / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    py = env_dir / "bin" / "python"
    links = wheel.parent
    constraints = tmp / "constraints.txt"
    constraints.write_text("\n".join(constraint) + "\n")
    pip_install = [str(py), "-m", "pip", "install", "-q", "--find-links", str(links)]
    subprocess.run([*pip_install, "-c", str(constraints), str(wheel)], check=True)
    res = subprocess.run([str(py), "-c", LOAD, name, text], cwd=tmp, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        print(f"error: spacy.load({name!r}) failed in a fresh environment", file=sys.stderr)
        return None
    return json.loads(res.stdout)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf8")
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
