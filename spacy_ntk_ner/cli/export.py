"""`export`: DocBin files back to BIO text."""

import argparse

from ..corpus.export import export


def run(args: argparse.Namespace) -> int:
    """Run `export`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    n = export(args.input, args.output, args.format)
    print(f"Wrote {n:,} sentence(s) to {args.output}")
    return 0
