"""Write the metadata `spacy package --meta-path` merges over a trained pipeline's own
meta.json: description, author, email, url and license (from project.yml's variables).

Usage: python scripts/package_meta.py OUT.json [--description TEXT] [--author NAME]
       [--email ADDRESS] [--url URL] [--license NAME]
"""

import argparse
import json
import os
import sys
from pathlib import Path

FIELDS = ("description", "author", "email", "url", "license")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("output", type=Path, help="the JSON file to write")
    for name in FIELDS:
        parser.add_argument(f"--{name}", default="", help=f"the model's {name}")
    args = parser.parse_args()
    meta = {name: getattr(args, name) for name in FIELDS if getattr(args, name)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(f".{args.output.name}.partial")
    partial.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf8")
    os.replace(partial, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
