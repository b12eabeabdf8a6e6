"""What `convert` read and wrote: counts per split, repairs with example locations, and
the shards, as `stats.json` holds them and as the command prints them."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, DefaultDict, Dict, List, Tuple

from .._format import aligned
from .dialect import Dialect
from .repair import Repair

# How many example locations the report keeps for each kind of repair.
N_EXAMPLES = 5
# The report `convert` writes; it also lists the shards it wrote, so that a later run
# replaces exactly those and leaves every other file alone.
STATS = "stats.json"


@dataclass
class SplitStats:
    """Counts for one split.

    docs (int): Docs written.
    sentences (int): Sentences.
    tokens (int): Tokens.
    entities (Counter): Entities per label.
    shards (int): Files written.
    """

    docs: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    shards: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "docs": self.docs,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "entities": dict(sorted(self.entities.items())),
            "shards": self.shards,
        }


@dataclass
class ConvertStats:
    """What `convert` read and wrote.

    files (int): Input files read.
    splits (Dict[str, SplitStats]): Counts per split.
    repairs (Counter): Repaired tags per kind.
    repair_examples (Dict[str, List[str]]): The first `FILE:LINE: message`s of each kind.
    outputs (List[str]): The shards written, relative to the output folder.
    dialects (Dict[str, Dict[str, Any]]): How each input file is written, and why.
    """

    files: int = 0
    splits: Dict[str, SplitStats] = field(default_factory=dict)
    repairs: Counter = field(default_factory=Counter)
    repair_examples: DefaultDict[str, List[str]] = field(default_factory=lambda: defaultdict(list))
    outputs: List[str] = field(default_factory=list)
    dialects: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def add_dialect(self, path: str, dialect: Dialect) -> None:
        self.dialects[path] = {**dialect.to_dict(), "described": dialect.describe()}

    def add_repair(self, repair: Repair) -> None:
        self.repairs[repair.kind] += 1
        examples = self.repair_examples[repair.kind]
        if len(examples) < N_EXAMPLES:
            examples.append(f"{repair.path}:{repair.line}: {repair.message}")

    def to_dict(self) -> Dict[str, Any]:
        return {
            "files": self.files,
            "splits": {name: s.to_dict() for name, s in self.splits.items()},
            "repairs": {
                kind: {"count": n, "examples": self.repair_examples[kind]}
                for kind, n in sorted(self.repairs.items())
            },
            "outputs": list(self.outputs),
            "dialects": self.dialects,
        }


def format_convert_report(stats: Dict[str, Any], output_dir: Path) -> str:
    """Lay out `stats.json` as tables.

    stats (Dict[str, Any]): What `ConvertStats.to_dict` returns.
    output_dir (Path): Where the shards were written.
    RETURNS (str): The report.
    """
    splits: Dict[str, Dict[str, Any]] = stats["splits"]
    names = list(splits)
    rows: List[Tuple[str, ...]] = [("", *names)]
    for key in ("docs", "sentences", "tokens", "shards"):
        rows.append((key, *(f"{splits[n][key]:,}" for n in names)))
    labels = sorted({label for s in splits.values() for label in s["entities"]})
    rows.append(("entities", *(f"{sum(splits[n]['entities'].values()):,}" for n in names)))
    for label in labels:
        rows.append((f"  {label}", *(f"{splits[n]['entities'].get(label, 0):,}" for n in names)))
    lines = [f"Converted {stats['files']} file(s) into {output_dir}"]
    lines.extend(_dialect_lines(stats.get("dialects") or {}))
    lines.extend(aligned(rows, [False] + [True] * len(names)))
    repairs = stats["repairs"]
    if repairs:
        total = sum(r["count"] for r in repairs.values())
        lines.append(f"Repaired {total:,} ill-formed tag(s):")
        for kind, r in repairs.items():
            lines.append(f"  {r['count']:>8,}  {kind}")
            lines.extend(f"            {ex}" for ex in r["examples"])
    else:
        lines.append("No ill-formed tags.")
    lines.append(f"Report: {output_dir / STATS}")
    return "\n".join(lines)


def _dialect_lines(dialects: Dict[str, Dict[str, Any]]) -> List[str]:
    """One line per way the files are written, with how many files and the first."""
    by_description: Dict[str, List[str]] = defaultdict(list)
    for path, dialect in dialects.items():
        by_description[dialect["described"]].append(path)
    lines = []
    for described, paths in by_description.items():
        more = f" and {len(paths) - 1:,} more" if len(paths) > 1 else ""
        lines.append(f"  {paths[0]}{more}: {described}")
    return lines
