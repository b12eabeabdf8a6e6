"""Install a packaged pipeline wheel into a fresh virtual environment and load it by name.

Usage: python scripts/install_check.py WHEEL_DIR PACKAGE_NAME [--text TEXT] [--venv DIR]
       [--constraint REQ ...]

The model wheel requires `spacy-ntk-ner` (as `spacy package` recorded); this script
builds this repository's own wheel and offers it to pip with --find-links, so the
check works before the package is on an index. In the new environment it runs
`spacy.load(PACKAGE_NAME)` in a script that never imports spacy_ntk_ner, and prints
the entities of TEXT with their scores. Exit status 0 only if all of that works.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--text", default="We trained it with PyTorch on a GPU running Linux .")
    parser.add_argument("--venv", type=Path, default=None, help="where to make the environment")
    parser.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="pip constraint such as torch==2.13.0 (a bare torch pulls a CUDA build)",
    )
    args = parser.parse_args()
    wheels = sorted(args.wheel_dir.glob("*.whl"))
    if not wheels:
        print(f"error: {args.wheel_dir}: no .whl file (run the package step)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="ntk-install-check-"))
    env_dir = args.venv or tmp / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    py = env_dir / "bin" / "python"
    links = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(links),
            str(REPO),
        ],
        check=True,
    )
    constraints = tmp / "constraints.txt"
    constraints.write_text("\n".join(args.constraint) + "\n")
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--find-links",
            str(links),
            "-c",
            str(constraints),
            str(wheels[-1]),
        ],
        check=True,
    )
    res = subprocess.run(
        [str(py), "-c", LOAD, args.name, args.text], cwd=tmp, capture_output=True, text=True
    )
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        print(f"error: spacy.load({args.name!r}) failed in a fresh environment", file=sys.stderr)
        return 1
    out = json.loads(res.stdout)
    print(f"spacy.load({args.name!r}) in a fresh environment: pipeline {out['pipeline']}")
    print(f"requirements: {', '.join(out['requirements'])}")
    print(f"text: {args.text}")
    for text, label, score in out["entities"]:
        shown = "-" if score is None else f"{score:.3f}"
        print(f"  {text!r:32} {label:18} {shown}")
    if not out["entities"]:
        print("  (no entities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
