"""`init-config`: write the recommended training config."""

import argparse
import sys

from ..ner.recommended import init_config, recommended_config

# What to run next, by `--gpu`.
TRAIN = "python -m spacy train {} --output model --paths.train TRAIN --paths.dev DEV"
NEXT = {False: TRAIN, True: TRAIN + " --gpu-id 0"}


def run(args: argparse.Namespace) -> int:
    """Run `init-config`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    if str(args.output) == "-":
        sys.stdout.write(recommended_config(args.gpu))
        return 0
    init_config(args.output, args.gpu, args.overwrite)
    kind = "GPU (transformer)" if args.gpu else "CPU"
    print(f"Wrote the recommended {kind} config to {args.output}; train it with")
    print("  " + NEXT[args.gpu].format(args.output))
    return 0
