"""`annotate`: a pipeline over a corpus, with a progress bar on a terminal."""

import argparse
import sys
import time
from typing import Optional

from ..annotate.inputs import InputOptions
from ..annotate.job import Settings, annotate, format_annotate_report


def run(args: argparse.Namespace) -> int:
    """Run `annotate`.

    args (argparse.Namespace): The parsed options.
    RETURNS (int): The exit status.
    """
    bar = _annotate_bar()
    try:
        report = annotate(
            args.model,
            args.inputs,
            args.output_dir,
            engine=args.engine,
            input_options=InputOptions(
                input_format=args.input_format,
                text_key=args.text_key,
                id_key=args.id_key,
                glob=args.glob,
                on_error=args.on_error,
            ),
            settings=Settings(
                shard_size=args.shard_size,
                threshold=args.threshold,
                output_format=args.output_format,
            ),
            component=args.component,
            n_process=args.n_process,
            batch_size=args.batch_size,
            gpu_id=args.gpu_id,
            n_workers=args.n_workers,
            ray_address=args.ray_address,
            ray_num_cpus=args.ray_num_cpus,
            overwrite=args.overwrite,
            on_progress=bar.update if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(format_annotate_report(report, args.output_dir))
    return 0


class _WordsBar:
    """A progress bar of documents that shows words per second beside them."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="doc", desc="annotating", leave=False, mininterval=0.5)
        self.words = 0
        self.start = time.perf_counter()

    def update(self, docs: int, words: int) -> None:
        self.words += words
        self.bar.update(docs)
        if self.bar.n % 1000 == 0:
            elapsed = max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix_str(f"{self.words / elapsed:,.0f} words/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _annotate_bar() -> Optional[_WordsBar]:
    return _WordsBar() if sys.stderr.isatty() else None
