"""`convert`: BIO files to DocBin shards, with a progress bar on large inputs."""

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from ..corpus.convert import convert
from ..corpus.files import BIOError, iter_files
from ..corpus.options import ReadOptions
from ..corpus.stats import format_convert_report

# Inputs smaller than this finish before a progress bar is worth drawing.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


def run(args: argparse.Namespace) -> int:
    """Run `convert`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    options = ReadOptions(
        format=args.format,
        delimiter=args.delimiter,
        tag_column=args.tag_column,
        scheme=args.scheme,
        on_invalid=args.on_invalid,
        glob=args.glob,
        n_sents=args.n_sents,
        plain_spaces=args.plain_spaces,
    )
    bar = _progress_bar(args.inputs, args.glob)
    try:
        stats = convert(
            args.inputs,
            args.output_dir,
            options,
            split=args.split,
            seed=args.seed,
            shard_size=args.shard_size,
            on_progress=bar.update if bar is not None else None,
            overwrite=args.overwrite,
            on_notice=lambda line: print(line, file=sys.stderr),
        )
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(format_convert_report(stats.to_dict(), args.output_dir))
    return 0


def _progress_bar(inputs: Sequence[Path], glob: str) -> Any:
    if not sys.stderr.isatty():
        return None
    try:
        total = sum(p.stat().st_size for p, _ in iter_files(inputs, glob))
    except (BIOError, OSError):
        return None  # the conversion itself reports the problem
    if total < PROGRESS_MIN_BYTES:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="converting", leave=False)
