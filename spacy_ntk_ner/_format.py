"""How the commands print and write numbers: one rule for every table, summary and
JSON output."""

import math
from typing import Any, List, Optional, Sequence


def percent(x: Optional[float]) -> str:
    """RETURNS (str): A share as a percentage with one decimal ("-" for none)."""
    return "-" if x is None else f"{100 * x:.1f}"


def decimal3(x: Optional[float]) -> str:
    """RETURNS (str): A number with three decimals ("-" for none)."""
    return "-" if x is None else f"{x:.3f}"


def aligned(rows: Sequence[Sequence[str]], right: Sequence[bool], indent: str = "") -> List[str]:
    """Lay out rows of cells as columns two spaces apart, each as wide as its widest
    cell: the cells of the columns marked `right` (numbers) right-aligned, the others
    left-aligned.

    rows (Sequence[Sequence[str]]): The rows, the header first if any; all as long.
    right (Sequence[bool]): Per column, whether it holds numbers.
    indent (str): Put before every line.
    RETURNS (List[str]): One line per row, without trailing spaces.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(right))]
    return [
        indent + "  ".join(_pad(c, w, r) for c, w, r in zip(row, widths, right)).rstrip()
        for row in rows
    ]


def markdown_table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> List[str]:
    """Lay out a Markdown table whose columns line up as plain text too.

    rows (Sequence[Sequence[str]]): The header, then the rows; all as long.
    right (Sequence[bool]): Per column, whether it holds numbers (right-aligned, `---:`).
    RETURNS (List[str]): The header, the delimiter row, then one line per row.
    """
    # A delimiter cell needs three characters ("---", "--:").
    widths = [max(3, *(len(row[i]) for row in rows)) for i in range(len(right))]
    delimiter = ["-" * (w - 1) + (":" if r else "-") for w, r in zip(widths, right)]
    lines = [list(rows[0]), delimiter, *(list(row) for row in rows[1:])]
    return [
        "| " + " | ".join(_pad(c, w, r) for c, w, r in zip(row, widths, right)) + " |"
        for row in lines
    ]


def _pad(cell: str, width: int, right: bool) -> str:
    return cell.rjust(width) if right else cell.ljust(width)


# Significant digits of the numbers the JSON outputs write (scores, metrics, rates):
# the digits past them are float32 noise, not information. Model state (the
# calibration's parameters, a threshold) is never rounded.
SIGNIFICANT_DIGITS = 6


def rounded(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """RETURNS (float): `x` to `digits` significant digits (0, inf and nan as they are)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def rounded_floats(data: Any) -> Any:
    """RETURNS (Any): JSON-like data (dicts, lists, tuples, scalars) with every float
    `rounded`; the rest as it is (tuples become lists, as JSON writes them)."""
    if isinstance(data, float):
        return rounded(data)
    if isinstance(data, dict):
        return {key: rounded_floats(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [rounded_floats(value) for value in data]
    return data
