"""The options of each command. Light: `COMMAND --help` imports no spaCy pipeline."""

from pathlib import Path
from typing import Any

from ..annotate.inputs import INPUT_FORMATS, ON_ERROR
from ..corpus.options import DELIMITERS, FORMATS, ON_INVALID, SCHEMES
from ._options import (
    add_command,
    add_docbins,
    add_glob,
    add_gpu_id,
    add_model,
    add_overwrite,
    add_quiet,
    add_shard_size,
    between_zero_and_one,
    one_or_more,
    tag_column,
    zero_or_more,
    zero_to_one,
)

MODEL_HELP = "package name or pipeline folder"


def add_convert_parser(subparsers: Any) -> None:
    """Add `convert`: BIO files to DocBin shards."""
    conv = add_command(
        subparsers,
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
        type=tag_column,
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
    add_glob(conv)
    conv.add_argument(
        "--n-sents",
        type=zero_or_more,
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
    add_shard_size(conv, "Docs per .spacy file")
    conv.add_argument(
        "--plain-spaces",
        action="store_true",
        help="one space between all tokens instead of reconstructed spacing",
    )
    add_overwrite(
        conv,
        "start over: remove what an earlier convert wrote into OUTPUT_DIR before "
        "converting (needs room for one copy only; never removes other files)",
    )
    add_quiet(conv)


def add_export_parser(subparsers: Any) -> None:
    """Add `export`: DocBin files back to BIO text."""
    exp = add_command(
        subparsers,
        "export",
        "write .spacy files back as token-per-line BIO",
        "Write the tokens, IOB2 entity tags and sentences of DocBin files as BIO text. "
        "OUT.txt is replaced only when complete, and never when it is one of the inputs.",
    )
    add_docbins(exp, "input", "a .spacy file or a folder of them")
    exp.add_argument("output", type=Path, metavar="OUT.txt", help="the BIO file to write")
    exp.add_argument(
        "--format",
        choices=("wikiser", "conll"),
        default="wikiser",
        help="<s> ... </s> blocks or blank lines between sentences",
    )


def add_evaluate_parser(subparsers: Any) -> None:
    """Add `evaluate`: a pipeline's scores per label and its calibration."""
    ev = add_command(
        subparsers,
        "evaluate",
        "score a pipeline per label, and the calibration of its entity scores",
        "Score a pipeline's entities on gold data: precision, recall and F per label, "
        "words per second, and the calibration of ntk_ner's entity scores (ECE, Brier "
        "score, precision and recall at a few thresholds).",
    )
    add_model(ev, MODEL_HELP)
    add_docbins(ev, "data", "gold .spacy file or folder of them")
    ev.add_argument(
        "--output", type=Path, default=None, metavar="METRICS.json", help="write the metrics"
    )
    ev.add_argument(
        "--table", type=Path, default=None, metavar="TABLE.md", help="write the table per label"
    )
    add_gpu_id(ev)
    ev.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write DIR/index.html: the table, plots of the scores and the worst "
        "cases (needs matplotlib: the [report] extra)",
    )
    add_overwrite(ev, "replace a --report folder written for another pipeline or data")


def add_calibrate_parser(subparsers: Any) -> None:
    """Add `calibrate`: fit the entity-score calibration and save the pipeline."""
    cal = add_command(
        subparsers,
        "calibrate",
        "fit the entity-score calibration of a pipeline's ntk_ner on dev data",
        "Fit the calibration of the entity scores of a pipeline's ntk_ner components on "
        "dev data and save the pipeline. Without --output the pipeline folder MODEL is "
        "overwritten in place (written beside it and swapped in, so a failure leaves it "
        "as it was).",
    )
    add_model(cal, "pipeline folder (or, with --output, a package)")
    add_docbins(cal, "data", "dev .spacy file or folder of them")
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
        type=between_zero_and_one,
        default=None,
        metavar="P",
        help="also set the threshold to the lowest score at which the precision on "
        "DEV is at least P by a 95%% Wilson lower bound (0 < P < 1)",
    )
    target.add_argument(
        "--target-recall",
        type=between_zero_and_one,
        default=None,
        metavar="R",
        help="or to the highest score at which the recall is at least R that way",
    )


def add_visualize_parser(subparsers: Any) -> None:
    """Add `visualize`: a displaCy page of a pipeline's scored entities."""
    vis = add_command(
        subparsers,
        "visualize",
        "draw a pipeline's scored entities as a displaCy page",
        "Run a pipeline over the texts of DocBin files and draw its entities, each "
        "labelled with its score, as one displaCy HTML page.",
    )
    add_model(vis, MODEL_HELP)
    add_docbins(vis, "data", "a .spacy file or a folder of them")
    vis.add_argument("output", type=Path, metavar="OUT.html", help="the page to write")
    vis.add_argument("--limit", type=one_or_more, default=50, help="at most N docs (1 or more)")


def add_annotate_parser(subparsers: Any) -> None:
    """Add `annotate`: a pipeline over a corpus, in resumable shards."""
    ann = add_command(
        subparsers,
        "annotate",
        "annotate text, JSONL, DocBin or BIO files with a pipeline's scored entities",
        "Annotate documents with a pipeline's entities and their scores, in resumable "
        "shards of JSON lines (Prodigy's span format) or DocBin files under OUTPUT_DIR, "
        "on this machine or on a Ray cluster. A rerun into OUTPUT_DIR makes only the "
        "shards still missing.",
    )
    add_model(ann, MODEL_HELP)
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
    add_glob(ann)
    ann.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="error",
        help="stop at a bad input line, or skip it and list it in the report",
    )
    ann.add_argument("--component", default=None, metavar="NAME", help="the NER component to use")
    ann.add_argument(
        "--threshold",
        type=zero_to_one,
        default=None,
        metavar="T",
        help="leave out entities scored below T (None: keep all)",
    )
    ann.add_argument(
        "--output-format", choices=("jsonl", "docbin"), default="jsonl", help="shard format"
    )
    add_shard_size(ann, "documents per shard")
    ann.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="this machine, or Ray Data"
    )
    ann.add_argument(
        "--n-process", type=one_or_more, default=1, metavar="N", help="processes (local engine)"
    )
    ann.add_argument(
        "--batch-size", type=one_or_more, default=256, metavar="N", help="documents per batch"
    )
    add_gpu_id(ann)
    ann.add_argument("--n-workers", type=one_or_more, default=1, metavar="N", help="Ray actors")
    ann.add_argument(
        "--ray-address", default=None, help="join this Ray cluster (None: start a local one)"
    )
    ann.add_argument(
        "--ray-num-cpus", type=one_or_more, default=None, metavar="N", help="CPUs of a local Ray"
    )
    add_overwrite(ann, "remove what an earlier run wrote into OUTPUT_DIR and start over")
    add_quiet(ann)


def add_init_config_parser(subparsers: Any) -> None:
    """Add `init-config`: write the recommended training config."""
    init = add_command(
        subparsers,
        "init-config",
        "write the recommended training config of ntk_ner",
        "Write the recommended config for `spacy train`, as `spacy init config` does for "
        "spaCy's own components: ntk_ner with the calibration callback and the "
        "partial-label weight where it was measured best, the corpora and the training "
        "block. An existing OUT.cfg is replaced only if init-config wrote it and it was "
        "not edited since.",
    )
    init.add_argument(
        "output", type=Path, metavar="OUT.cfg", help="the config file to write; - for stdout"
    )
    init.add_argument(
        "--gpu",
        action="store_true",
        help="a transformer encoder with mixed precision, for a GPU (needs the "
        "[transformers] extra) instead of spaCy's CNN tok2vec for a CPU",
    )
    add_overwrite(init, "replace an OUT.cfg that holds something else")


COMMAND_PARSERS = (
    add_init_config_parser,
    add_convert_parser,
    add_export_parser,
    add_evaluate_parser,
    add_calibrate_parser,
    add_visualize_parser,
    add_annotate_parser,
)
