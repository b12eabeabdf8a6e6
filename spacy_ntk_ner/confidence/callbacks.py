"""The `[training] before_to_disk` callbacks that calibrate `ntk_ner` at every save.

`spacy_ntk_ner.calibrate.v2` (`configs/*.cfg`) reads the dev corpus that training
evaluates on, `[training] dev_corpus`, through its own reader: `spacy.Corpus.v1`
DocBins, `spacy_ntk_ner.BIOCorpus.v1` BIO files or any other. `.v1` reads DocBins at a
path and stays for the configs that name it. Where no map can be fitted (no dev data,
too few dev entities), the pipeline is saved uncalibrated with a warning, and its meta
records why (`evaluate` says so).
"""

import warnings
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from spacy.language import Language
from spacy.training import Example
from spacy.util import registry, resolve_dot_names

from .calibrate import calibrate


@registry.callbacks("spacy_ntk_ner.calibrate.v2")
def make_dev_corpus_callback(limit: int = 0) -> Callable[[Language], Language]:
    """A `[training] before_to_disk` callback: calibrate on the training's dev corpus
    (`[training] dev_corpus`, read by its configured reader) before each save.

    limit (int): Use at most this many dev docs (0: all).
    RETURNS (Callable[[Language], Language]): The callback.
    """
    reader: Dict[str, Any] = {}
    warned: Dict[str, str] = {}

    def before_to_disk(nlp: Language) -> Language:
        if not reader:
            # As `spacy train` resolves it: the same reader, the same paths.
            config = nlp.config.interpolate()
            name = config["training"]["dev_corpus"]
            reader["name"], (reader["corpus"],) = name, resolve_dot_names(config, [name])
        examples = list(islice(reader["corpus"](nlp), limit or None))
        _calibrate_or_warn(nlp, examples, f"[{reader['name']}]", warned)
        return nlp

    return before_to_disk


@registry.callbacks("spacy_ntk_ner.calibrate.v1")
def make_calibrate_callback(
    path: Optional[Union[str, Path]], limit: int = 0
) -> Callable[[Language], Language]:
    """A `[training] before_to_disk` callback: calibrate on DocBins before each save.

    path (Optional[Union[str, Path]]): The dev data (`.spacy` file or folder); None
        turns the callback off.
    limit (int): Use at most this many dev docs (0: all).
    RETURNS (Callable[[Language], Language]): The callback.
    """
    warned: Dict[str, str] = {}

    def before_to_disk(nlp: Language) -> Language:
        if path is None:
            return nlp
        from spacy.training import Corpus

        _calibrate_or_warn(nlp, list(Corpus(path, limit=limit)(nlp)), str(path), warned)
        return nlp

    return before_to_disk


def _calibrate_or_warn(
    nlp: Language, examples: List[Example], source: str, warned: Dict[str, str]
) -> None:
    """Calibrate, and warn (once per reason) of each component left uncalibrated."""
    for name, result in calibrate(nlp, examples).items():
        reason = result.get("uncalibrated")
        if reason and warned.get(name) != reason:
            warned[name] = reason
            warnings.warn(
                f"{name}: the pipeline is saved with uncalibrated entity scores: {reason} "
                f"in {source}",
                stacklevel=2,
            )
