"""Group the sentences of BIO files into Doc records: the plain token lists of one
output Doc, with reconstructed spacing and a key naming its document. It imports no
spaCy."""

from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, List, Optional, Sequence

from ..errors import UserError
from .dialect import Dialect
from .files import PathLike, iter_files
from .options import ReadOptions
from .reader import Sentence, read_sentences
from .repair import Repair


@dataclass
class DocRecord:
    """The annotation of one output Doc, in the plain lists the writers need.

    words (List[str]): Tokens.
    spaces (List[bool]): Whether each token is followed by a space.
    iob (List[int]): ENT_IOB codes.
    labels (List[str]): Entity labels ("" outside).
    sent_starts (List[int]): 1 where a sentence starts, -1 elsewhere.
    key (str): Identifies the document the Doc came from, for splitting.
    n_sents (int): Number of sentences.
    """

    words: List[str] = field(default_factory=list)
    spaces: List[bool] = field(default_factory=list)
    iob: List[int] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    sent_starts: List[int] = field(default_factory=list)
    key: str = ""
    n_sents: int = 0


# Tokens that attach to the token before them, and tokens the next one attaches to.
_NO_SPACE_BEFORE = frozenset(
    ". , ; : ! ? ) ] } % ... … 's 'S n't N'T 're 've 'll 'd 'm ' '' ”".split()
)
_NO_SPACE_AFTER = frozenset("( [ { $ # “ ``".split())
_SPACING = _NO_SPACE_BEFORE | _NO_SPACE_AFTER | {'"'}


def space_after(words: Sequence[str]) -> List[bool]:
    """Reconstruct the spacing of a tokenized sentence, as written text would have it.

    No space goes before closing punctuation and clitics (`,` `.` `)` `'s` `n't`), none
    after opening brackets, and straight double quotes alternate between opening
    and closing. The last token gets a space, so sentences joined into one Doc read
    as text; the caller clears it at the end of a Doc.

    words (Sequence[str]): The tokens of one sentence.
    RETURNS (List[bool]): Whether each token is followed by a space.
    """
    n = len(words)
    spaces = [True] * n
    open_quote = False
    # Only the tokens of the three kinds change anything; they are found without a
    # Python step per token.
    for i in compress(range(n), map(_SPACING.__contains__, words)):
        word = words[i]
        if word == '"':
            # An opening quote takes no space after it, a closing one none before.
            if open_quote:
                if i > 0:
                    spaces[i - 1] = False
            elif i + 1 < n:
                spaces[i] = False
            open_quote = not open_quote
            continue
        if word in _NO_SPACE_BEFORE and i > 0 and words[i - 1] not in _NO_SPACE_AFTER:
            spaces[i - 1] = False
        if word in _NO_SPACE_AFTER and i + 1 < n:
            spaces[i] = False
    return spaces


def group_sentences(
    sentences: Iterable[Sentence],
    n_sents: int,
    doc_key: str,
    by_document: bool,
    plain_spaces: bool = False,
) -> Iterator[DocRecord]:
    """Group consecutive sentences of one document into Doc records.

    A Doc never spans two documents. Each record's `key` names its document
    (`doc_key#section`) when the sentences belong to one: always for a file read
    from a directory (`by_document`), and after a `-DOCSTART-` line otherwise. Else the
    key is left empty and the Doc is its own document.

    sentences (Iterable[Sentence]): Sentences of one file, in order.
    n_sents (int): Sentences per Doc; 0 puts each whole document in one Doc.
    doc_key (str): Names the file.
    by_document (bool): Whether the whole file is one document.
    plain_spaces (bool): A space after every token instead of reconstructed spacing.
    YIELDS (DocRecord): The records.
    """
    rec = DocRecord()
    current = -1
    for sent in sentences:
        if rec.words and (sent.doc_index != current or (n_sents and rec.n_sents >= n_sents)):
            rec.spaces[-1] = False
            yield rec
            rec = DocRecord()
        if not rec.words and (by_document or sent.marked):
            rec.key = f"{doc_key}#{sent.doc_index}"
        current = sent.doc_index
        rec.words.extend(sent.words)
        rec.spaces.extend([True] * len(sent.words) if plain_spaces else space_after(sent.words))
        rec.iob.extend(sent.iob)
        rec.labels.extend(sent.labels)
        rec.sent_starts.append(1)
        rec.sent_starts.extend([-1] * (len(sent.words) - 1))
        rec.n_sents += 1
    if rec.words:
        rec.spaces[-1] = False
        yield rec


def iter_records(
    inputs: Sequence[PathLike],
    options: ReadOptions = ReadOptions(),
    on_repair: Optional[Callable[[Repair], None]] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    on_file: Optional[Callable[[Path], None]] = None,
    exclude: Collection[Path] = frozenset(),
    on_dialect: Optional[Callable[[str, Dialect], None]] = None,
) -> Iterator[DocRecord]:
    """Stream Doc records from files and directories, each keyed by its document.

    inputs (Sequence[PathLike]): Files and directories.
    options (ReadOptions): How to read them.
    on_repair (Optional[Callable[[Repair], None]]): Called for every repaired tag.
    on_progress (Optional[Callable[[int], None]]): Called with bytes read.
    on_file (Optional[Callable[[Path], None]]): Called as each file is opened.
    exclude (Collection[Path]): Resolved paths of files to skip under a directory.
    on_dialect (Optional[Callable[[str, Dialect], None]]): Called with each file and how
        it is written.
    YIELDS (DocRecord): The records.
    """
    if options.n_sents < 0:
        raise UserError(f"--n-sents must be 0 or more, not {options.n_sents}")
    for path, rel in iter_files(inputs, options.glob, exclude):
        if on_file is not None:
            on_file(path)
        sentences = read_sentences(
            path,
            block_format=options.format,
            delimiter=options.delimiter,
            tag_column=options.tag_column,
            scheme=options.scheme,
            on_invalid=options.on_invalid,
            on_repair=on_repair,
            on_progress=on_progress,
            on_dialect=on_dialect,
        )
        key = rel or path.name
        for rec in group_sentences(
            sentences, options.n_sents, key, bool(rel), options.plain_spaces
        ):
            if not rec.key:
                rec.key = "\n".join(rec.words)
            yield rec
