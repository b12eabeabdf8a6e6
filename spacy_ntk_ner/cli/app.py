"""The command line: `python -m spacy_ntk_ner convert|export|evaluate|calibrate|visualize|annotate`.

Input problems end the command with one line and exit status 1: `FILE:LINE: what is
wrong` about a line, `FILE: what is wrong` about a whole file, `--option: what is
wrong` about an option's value; a wrong option gives argparse's usage message and exit
status 2.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from ..annotate.inputs import INPUT_FORMATS, ON_ERROR, InputOptions
from ..annotate.job import Settings, annotate, format_annotate_report
from ..confidence.calibrate import calibrate_saved, format_calibration
from ..corpus.convert import convert
from ..corpus.export import export
from ..corpus.files import BIOError, iter_files
from ..corpus.options import DELIMITERS, FORMATS, ON_INVALID, SCHEMES, ReadOptions
from ..corpus.stats import format_convert_report
from ..errors import UserError
from ..evaluate.evaluate import evaluate, format_table, visualize
from ..evaluate.html import evaluate_with_report

# Inputs smaller than this finish before a progress bar is worth drawing.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


def _tag_column(value: str) -> int:
    try:
        col = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a column number: {value!r}") from None
    if col == 0 or col == 1:
        raise argparse.ArgumentTypeError(
            "column 1 holds the tokens; tags are in column 2 or later (or -1 for the last)"
        )
    return col


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n}")
    return n


def _at_least_one(value: str) -> int:
    n = _positive(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {n}")
    return n


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default."""


DESCRIPTION = (
    "BIO corpora to spaCy pipelines, and pipelines over corpora. Commands: convert and "
    "export (BIO files to DocBin shards and back), evaluate, calibrate and visualize (a "
    "trained pipeline's entities and their scores), annotate (a pipeline over a corpus, "
    "on this machine or a Ray cluster). `COMMAND --help` says more."
)


def build_parser() -> argparse.ArgumentParser:
    """RETURNS (argparse.ArgumentParser): The parser of all commands."""
    parser = argparse.ArgumentParser(
        prog="python -m spacy_ntk_ner", description=DESCRIPTION, formatter_class=_Formatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_convert_parser,
        _add_export_parser,
        _add_evaluate_parser,
        _add_calibrate_parser,
        _add_visualize_parser,
        _add_annotate_parser,
    ):
        add(sub)
    return parser


def _command(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, formatter_class=_Formatter)


def _add_convert_parser(sub: Any) -> None:
    conv = _command(
        sub,
        "convert",
        "convert BIO files or directories into sharded .spacy files",
        "Convert token-per-line BIO corpora into DocBin shards under OUTPUT_DIR/<split>/ "
        "and write OUTPUT_DIR/stats.json. The run is a transaction: the previous output "
        "stays as it was until every input is read and every shard written.",
    )
    conv.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="BIO files or folders of them"
    )
    conv.add_argument(
        "output_dir", type=Path, metavar="OUTPUT_DIR", help="where the shards and stats.json go"
    )
    conv.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="wikiser (<s> ... </s> blocks) or conll (blank lines)",
    )
    conv.add_argument(
        "--delimiter", choices=DELIMITERS, default="auto", help="column separator (auto: per line)"
    )
    conv.add_argument(
        "--tag-column",
        type=_tag_column,
        default=None,
        metavar="N",
        help="1-based column of the tags, -1 for the last (None: detect it)",
    )
    conv.add_argument(
        "--scheme", choices=SCHEMES, default="auto", help="tag scheme (bioes also reads BILOU)"
    )
    conv.add_argument(
        "--on-invalid",
        choices=ON_INVALID,
        default="repair",
        help="repair ill-formed tag sequences and count them, or stop",
    )
    conv.add_argument("--glob", default="*", help="files to take under a directory")
    conv.add_argument(
        "--n-sents",
        type=_positive,
        default=1,
        metavar="N",
        help="sentences per Doc; 0 for one Doc per document",
    )
    conv.add_argument(
        "--split",
        default=None,
        metavar="SPEC",
        help="such as train=0.8,dev=0.1,test=0.1 (by document, stable)",
    )
    conv.add_argument("--seed", type=int, default=0, help="seed of --split")
    conv.add_argument(
        "--shard-size", type=_positive, default=10000, metavar="N", help="Docs per .spacy file"
    )
    conv.add_argument(
        "--plain-spaces",
        action="store_true",
        help="one space between all tokens instead of reconstructed spacing",
    )
    conv.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: remove what an earlier convert wrote into OUTPUT_DIR before "
        "converting (needs room for one copy only; never removes other files)",
    )
    conv.add_argument("--quiet", action="store_true", help="print no report")


def _add_export_parser(sub: Any) -> None:
    exp = _command(
        sub,
        "export",
        "write .spacy files back as token-per-line BIO",
        "Write the tokens, IOB2 entity tags and sentences of DocBin files as BIO text. "
        "OUT.txt is replaced only when complete, and never when it is one of the inputs.",
    )
    exp.add_argument(
        "input", type=Path, metavar="DOCBIN_OR_DIR", help="a .spacy file or a folder of them"
    )
    exp.add_argument("output", type=Path, metavar="OUT.txt", help="the BIO file to write")
    exp.add_argument(
        "--format",
        choices=("wikiser", "conll"),
        default="wikiser",
        help="<s> ... </s> blocks or blank lines between sentences",
    )


def _add_evaluate_parser(sub: Any) -> None:
    ev = _command(
        sub,
        "evaluate",
        "score a pipeline per label, and the calibration of its entity scores",
        "Score a pipeline's entities on gold data: precision, recall and F per label, "
        "words per second, and the calibration of ntk_ner's entity scores (ECE, Brier "
        "score, precision and recall at a few thresholds).",
    )
    ev.add_argument("model", metavar="MODEL", help="package name or pipeline folder")
    ev.add_argument(
        "data", type=Path, metavar="DOCBIN_OR_DIR", help="gold .spacy file or folder of them"
    )
    ev.add_argument(
        "--output", type=Path, default=None, metavar="METRICS.json", help="write the metrics"
    )
    ev.add_argument(
        "--table", type=Path, default=None, metavar="TABLE.md", help="write the table per label"
    )
    ev.add_argument("--gpu-id", type=int, default=-1, help="GPU to run on; -1: the CPU")
    ev.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write DIR/index.html: the table, plots of the scores and the worst "
        "cases (needs matplotlib: the [report] extra)",
    )


def _add_calibrate_parser(sub: Any) -> None:
    cal = _command(
        sub,
        "calibrate",
        "fit the entity-score calibration of a pipeline's ntk_ner on dev data",
        "Fit the calibration of the entity scores of a pipeline's ntk_ner components on "
        "dev data and save the pipeline. Without --output the pipeline folder MODEL is "
        "overwritten in place (written beside it and swapped in, so a failure leaves it "
        "as it was).",
    )
    cal.add_argument(
        "model", metavar="MODEL", help="pipeline folder (or, with --output, a package)"
    )
    cal.add_argument(
        "data", type=Path, metavar="DOCBIN_OR_DIR", help="dev .spacy file or folder of them"
    )
    cal.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="save the calibrated pipeline here instead of overwriting MODEL in place",
    )
    target = cal.add_mutually_exclusive_group()
    target.add_argument(
        "--target-precision",
        type=_number,
        default=None,
        metavar="P",
        help="also set the threshold to the lowest score at which the precision on "
        "DEV is at least P by a 95%% Wilson lower bound (0 < P < 1)",
    )
    target.add_argument(
        "--target-recall",
        type=_number,
        default=None,
        metavar="R",
        help="or to the highest score at which the recall is at least R that way",
    )


def _add_visualize_parser(sub: Any) -> None:
    vis = _command(
        sub,
        "visualize",
        "draw a pipeline's scored entities as a displaCy page",
        "Run a pipeline over the texts of DocBin files and draw its entities, each "
        "labelled with its score, as one displaCy HTML page.",
    )
    vis.add_argument("model", metavar="MODEL", help="package name or pipeline folder")
    vis.add_argument(
        "data", type=Path, metavar="DOCBIN_OR_DIR", help="a .spacy file or a folder of them"
    )
    vis.add_argument("output", type=Path, metavar="OUT.html", help="the page to write")
    vis.add_argument("--limit", type=_at_least_one, default=50, help="at most N docs (1 or more)")


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None


def _threshold(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {t}")
    return t


def _add_annotate_parser(sub: Any) -> None:
    ann = _command(
        sub,
        "annotate",
        "annotate text, JSONL, DocBin or BIO files with a pipeline's scored entities",
        "Annotate documents with a pipeline's entities and their scores, in resumable "
        "shards of JSON lines (Prodigy's span format) or DocBin files under OUTPUT_DIR, "
        "on this machine or on a Ray cluster. A rerun into OUTPUT_DIR makes only the "
        "shards still missing.",
    )
    ann.add_argument("model", metavar="MODEL", help="package name or pipeline folder")
    ann.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="files or folders (see --input-format)",
    )
    ann.add_argument(
        "output_dir", type=Path, metavar="OUTPUT_DIR", help="where the shards and report go"
    )
    ann.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="auto: by extension (.txt, .jsonl, .spacy, each also .gz); bio through the converter",
    )
    ann.add_argument("--text-key", default="text", help="JSONL key of the text")
    ann.add_argument("--id-key", default="id", help="JSONL key of the id")
    ann.add_argument("--glob", default="*", help="files to take under a directory")
    ann.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="error",
        help="stop at a bad input line, or skip it and list it in the report",
    )
    ann.add_argument("--component", default=None, metavar="NAME", help="the NER component to use")
    ann.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        metavar="T",
        help="leave out entities scored below T (None: keep all)",
    )
    ann.add_argument(
        "--output-format", choices=("jsonl", "docbin"), default="jsonl", help="shard format"
    )
    ann.add_argument(
        "--shard-size", type=_positive, default=10000, metavar="N", help="documents per shard"
    )
    ann.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="this machine, or Ray Data"
    )
    ann.add_argument(
        "--n-process", type=_positive, default=1, metavar="N", help="processes (local engine)"
    )
    ann.add_argument(
        "--batch-size", type=_positive, default=256, metavar="N", help="documents per batch"
    )
    ann.add_argument("--gpu-id", type=int, default=-1, help="GPU to run on; -1: the CPU")
    ann.add_argument("--n-workers", type=_positive, default=1, metavar="N", help="Ray actors")
    ann.add_argument(
        "--ray-address", default=None, help="join this Ray cluster (None: start a local one)"
    )
    ann.add_argument(
        "--ray-num-cpus", type=_positive, default=None, metavar="N", help="CPUs of a local Ray"
    )
    ann.add_argument(
        "--overwrite",
        action="store_true",
        help="remove what an earlier run wrote into OUTPUT_DIR and start over",
    )
    ann.add_argument("--quiet", action="store_true", help="print no report")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a command.

    argv (Optional[Sequence[str]]): The arguments, without the program name.
    RETURNS (int): The exit status.
    """
    args = build_parser().parse_args(argv)
    commands: Dict[str, Callable[[argparse.Namespace], int]] = {
        "convert": _convert,
        "export": _export,
        "evaluate": _evaluate,
        "visualize": _visualize,
        "calibrate": _calibrate,
        "annotate": _annotate,
    }
    command = commands[args.command]
    try:
        return command(args)
    except BrokenPipeError:
        # The reader of our output (`| head`) has gone; the command itself succeeded.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UserError as err:
        # Bad input, files or settings: one line. Anything else is a bug and keeps its
        # traceback (a ValueError from deep inside is not the user's input).
        print(str(err), file=sys.stderr)
        return 1
    except OSError as err:
        print(os_error_message(err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; outputs were left as they were", file=sys.stderr)
        return 130


def os_error_message(err: OSError) -> str:
    """RETURNS (str): `FILE: what is wrong` for a system error."""
    what = err.strerror or str(err)
    return f"{err.filename}: {what}" if err.filename else what


def _convert(args: argparse.Namespace) -> int:
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


def _export(args: argparse.Namespace) -> int:
    n = export(args.input, args.output, args.format)
    print(f"Wrote {n:,} sentence(s) to {args.output}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.report is None:
        metrics = evaluate(args.model, args.data, args.output, args.table, args.gpu_id)
    else:
        metrics = evaluate_with_report(
            args.model, args.data, args.report, args.output, args.table, args.gpu_id
        )
    print(format_table(metrics))
    if args.report is not None:
        print(f"Wrote the report: {args.report / 'index.html'}")
    return 0


def _visualize(args: argparse.Namespace) -> int:
    n = visualize(args.model, args.data, args.output, args.limit)
    print(f"Drew {n} doc(s) into {args.output}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    report, output = calibrate_saved(
        args.model, args.data, args.output, args.target_precision, args.target_recall
    )
    for name, r in report.items():
        print(format_calibration(name, r, args.data))
    where = "in place" if args.output is None else "to the new folder"
    print(f"Saved {where}: {output}")
    return 0


def _annotate(args: argparse.Namespace) -> int:
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
