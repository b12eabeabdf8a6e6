"""`visualize`: a displaCy page of a pipeline's scored entities."""

import argparse

from ..evaluate.evaluate import visualize


def run(args: argparse.Namespace) -> int:
    """Run `visualize`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    n = visualize(args.model, args.data, args.output, args.limit)
    print(f"Drew {n} doc(s) into {args.output}")
    return 0
