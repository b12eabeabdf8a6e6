"""The report of an annotation job: counts summed over every shard, and its text."""

from collections import Counter
from pathlib import Path
from typing import Any, Dict

from .._format import aligned, decimal3
from ..corpus.files import PathLike
from .inputs import InputScan
from .output import REPORT, ShardWriter


def make_report(
    manifest: Dict[str, Any], scan: InputScan, writer: ShardWriter, seconds: float, engine: str
) -> Dict[str, Any]:
    """Sum the shards' counts into the report.

    manifest (Dict[str, Any]): The manifest, with every shard's counts.
    scan (InputScan): What the first pass over the inputs found.
    writer (ShardWriter): What this run wrote.
    seconds (float): How long this run annotated.
    engine (str): The engine.
    RETURNS (Dict[str, Any]): The report.
    """
    words = 0
    entities: Counter = Counter()
    scored: Counter = Counter()
    sums: Counter = Counter()
    for stats in manifest["shards"].values():
        words += stats["words"]
        entities.update(stats["entities"])
        scored.update(stats["scored"])
        sums.update(stats["score_sums"])
    return {
        "documents": scan.docs,
        "words": words,
        "entities": dict(sorted(entities.items())),
        "mean_score": {
            label: (sums[label] / scored[label] if scored[label] else None)
            for label in sorted(entities)
        },
        "shards": len(manifest["shards"]),
        "shards_written_now": writer.shards_written,
        "words_written_now": writer.words_written,
        "seconds": seconds,
        "words_per_second": writer.words_written / seconds if seconds > 0 else None,
        "engine": engine,
        "duplicate_ids": scan.duplicate_ids,
        "skipped_lines": scan.skipped,
    }


def format_annotate_report(report: Dict[str, Any], output_dir: PathLike) -> str:
    """Lay out the report for a terminal.

    report (Dict[str, Any]): What `annotate` returned.
    output_dir (PathLike): Where the output went.
    RETURNS (str): The report, a few lines.
    """
    lines = [
        f"Annotated {report['documents']:,} document(s), {report['words']:,} words, into "
        f"{report['shards']} shard(s) under {output_dir} "
        f"({report['shards_written_now']} written now)",
    ]
    if report["words_per_second"]:
        lines.append(
            f"{report['words_per_second']:,.0f} words/s over {report['seconds']:.1f} s "
            f"({report['engine']})"
        )
    rows = [("label", "entities", "mean score")]
    for label, n in report["entities"].items():
        mean = report["mean_score"][label]
        rows.append((label, f"{n:,}", "-" if mean is None else decimal3(mean)))
    lines.extend(aligned(rows, (False, True, True), indent="  "))
    if report.get("note"):
        lines.append(report["note"])
    if report["duplicate_ids"]:
        lines.append(f"{report['duplicate_ids']:,} document(s) repeat an earlier id")
    skipped = report["skipped_lines"]
    if skipped:
        lines.append(f"Skipped {len(skipped):,} bad line(s):")
        lines.extend(f"  {s}" for s in skipped[:10])
        if len(skipped) > 10:
            lines.append(f"  ... ({len(skipped) - 10:,} more in {REPORT})")
    lines.append(f"Report: {Path(output_dir) / REPORT}")
    return "\n".join(lines)
