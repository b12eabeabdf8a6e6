"""`export`: DocBin files back to token-per-line BIO text.

The inputs are read and checked while the output is written to a temporary file beside
the target, which is renamed over it only when complete: a failure leaves the old file.
"""

from pathlib import Path

from .._fs import atomic_file
from .._outputs import check_file_target
from .docbin import docbin_files, iter_docbin_sentences
from .writer import write_sentences


def export(input_path: Path, output: Path, block_format: str = "wikiser") -> int:
    """Write the tokens, IOB2 tags and sentences of DocBin files as BIO text.

    input_path (Path): A `.spacy` file or a folder of them (read in shard order).
    output (Path): The BIO file to write; never one of the inputs.
    block_format (str): "wikiser" (`<s>` blocks) or "conll" (blank lines).
    RETURNS (int): The number of sentences written.
    """
    files = docbin_files(input_path)
    check_file_target(output, [input_path, *files])
    with atomic_file(output) as fh:
        return write_sentences(fh, iter_docbin_sentences(input_path), block_format)
