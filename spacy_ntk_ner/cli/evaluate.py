"""`evaluate`: a pipeline's scores per label, and optionally the HTML report."""

import argparse
import sys

from ..evaluate.evaluate import evaluate, format_table
from ..evaluate.html import evaluate_with_report


def run(args: argparse.Namespace) -> int:
    """Run `evaluate`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    if args.report is None:
        metrics = evaluate(args.model, args.data, args.output, args.table, args.gpu_id)
    else:
        metrics = evaluate_with_report(
            args.model,
            args.data,
            args.report,
            args.output,
            args.table,
            args.gpu_id,
            args.overwrite,
            say=lambda line: print(line, file=sys.stderr),
        )
    print(format_table(metrics))
    if args.report is not None:
        print(f"Wrote the report: {args.report / 'index.html'}")
    return 0
