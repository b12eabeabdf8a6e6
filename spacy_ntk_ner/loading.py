"""Load a pipeline for a command, with spaCy's own user errors as one-line `UserError`s.

`spacy.load` reports a model it cannot find (E050) as an `OSError` and a config that
does not validate as a multi-line `ConfigValidationError`; the commands report both
as one line that names the model.
"""

from typing import Any

import spacy
from spacy.language import Language
from thinc.api import ConfigValidationError

from .errors import UserError

# spaCy's messages for a model it cannot find or load as a package or folder.
_NOT_FOUND = ("[E050]", "[E053]", "[E941]")


def load_pipeline(model: Any, **kwargs: Any) -> Language:
    """`spacy.load(model, **kwargs)`, with a missing model or an invalid config as a
    `UserError` naming the model.

    model (Union[str, Path]): A package name or a pipeline folder.
    RETURNS (Language): The pipeline.
    """
    try:
        return spacy.load(model, **kwargs)
    except ConfigValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in (err.errors or [])
        )
        raise UserError(f"{model}: its config does not validate ({problems})") from None
    except OSError as err:
        text = str(err)
        if any(code in text for code in _NOT_FOUND):
            raise UserError(f"{model}: {text.splitlines()[0]}") from None
        raise
