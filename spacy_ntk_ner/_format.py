"""How the commands print numbers: one rule for every table and summary."""

from typing import Optional


def percent(x: Optional[float]) -> str:
    """RETURNS (str): A share as a percentage with one decimal ("-" for none)."""
    return "-" if x is None else f"{100 * x:.1f}"


def decimal3(x: Optional[float]) -> str:
    """RETURNS (str): A number with three decimals ("-" for none)."""
    return "-" if x is None else f"{x:.3f}"
