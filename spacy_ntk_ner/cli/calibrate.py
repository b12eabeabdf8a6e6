"""`calibrate`: fit the entity-score calibration and save the pipeline."""

import argparse

from ..confidence.calibrate import calibrate_saved, format_calibration


def run(args: argparse.Namespace) -> int:
    """Run `calibrate`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    report, output = calibrate_saved(
        args.model, args.data, args.output, args.target_precision, args.target_recall
    )
    for name, result in report.items():
        print(format_calibration(name, result, args.data))
    destination = "in place" if args.output is None else "to the new folder"
    print(f"Saved {destination}: {output}")
    return 0
