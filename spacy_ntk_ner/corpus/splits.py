"""Splitting a corpus: parsing `--split` and assigning each document to a split by a
hash of its key."""

import hashlib
from typing import List, Sequence, Tuple

from ..errors import UserError


def parse_split(spec: str) -> List[Tuple[str, float]]:
    """Parse a split such as `train=0.8,dev=0.1,test=0.1`.

    spec (str): Comma-separated `name=fraction` pairs that add up to 1.
    RETURNS (List[Tuple[str, float]]): The names and fractions, in order.
    """
    parts = []
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"--split: {item!r} is not NAME=FRACTION")
        if not 0 < frac <= 1:
            raise UserError(f"--split: the fraction of {name!r} must be in (0, 1], not {value!r}")
        parts.append((name, frac))
    names = [n for n, _ in parts]
    if len(set(names)) != len(names):
        raise UserError(f"--split: a name appears twice in {spec!r}")
    total = sum(f for _, f in parts)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"--split: the fractions add up to {total:g}, not 1")
    return parts


def assign_split(key: str, splits: Sequence[Tuple[str, float]], seed: int) -> str:
    """Pick a document's split from a hash of its key, so it never depends on other documents.

    key (str): Names the document.
    splits (Sequence[Tuple[str, float]]): The split names and fractions.
    seed (int): Changes the assignment.
    RETURNS (str): The split's name.
    """
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    acc = 0.0
    for name, frac in splits:
        acc += frac
        if u < acc:
            return name
    return splits[-1][0]
