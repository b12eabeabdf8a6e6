"""Run a command with its output going to a log file; print the log's end only if it fails.

Usage: python scripts/run_logged.py LOG -- COMMAND [ARG ...]

`spacy package --build wheel` prints some 80 lines of setuptools output that no one
reads when it works. This keeps them in LOG and, on failure, prints the last lines and
names LOG, with the command's own exit status.
"""

import subprocess
import sys
from pathlib import Path
from typing import List

TAIL_LINES = 30


def main(argv: List[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python scripts/run_logged.py LOG -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    log = Path(argv[0])
    command = argv[2:]
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf8") as fh:
        code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        lines = log.read_text(encoding="utf8", errors="replace").splitlines()
        print("\n".join(lines[-TAIL_LINES:]), file=sys.stderr)
        print(f"error: {' '.join(argv[2:])} failed (exit {code}); full log: {log}", file=sys.stderr)
        return code
    shown = argv[4:] if argv[2:4] == ["python", "-m"] else argv[2:]
    print(f"{' '.join(shown[:2])}: done (log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
