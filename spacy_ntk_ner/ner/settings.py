"""The `ntk_ner` component's settings: their defaults (written here once), their
checks, and their 0.1 names.

README.md's table of the settings is checked against SETTINGS by a test.
"""

import warnings
from typing import Any, Dict, Mapping

from thinc.api import Config, Model

from ..errors import UserError
from ._crf.tag_scheme import TagScheme

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_ntk_ner.TokenClassifier.v1"

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# The settings and their defaults, in the order of the component's cfg.
SETTINGS: Dict[str, Any] = {
    "scheme": "BILUO",
    "n_passes": 1,
    "agreement_weight": 0.0,
    "agreement_warmup_steps": 0,
    "o_unknown_weight": 0.0,
    "threshold": 0.0,
    "spans_key": "ntk_ner",
    "overwrite_ents": True,
}
# The factory's default config: the model, the settings and the scorer.
DEFAULT_CONFIG: Dict[str, Any] = {
    "model": DEFAULT_MODEL,
    **SETTINGS,
    "scorer": {"@scorers": "spacy.ner_scorer.v1"},
}

# The settings' 0.1 names (the paper's symbols) and their new names.
RENAMED_SETTINGS = {
    "k": "n_passes",
    "alpha": "agreement_weight",
    "alpha_warmup_steps": "agreement_warmup_steps",
}

# Encoders shared through a listener, by their model's name.
LISTENERS = {
    "tok2vec-listener": "spacy.Tok2VecListener",
    "transformer-listener": "spacy-transformers.TransformerListener",
}


def renamed_settings(settings: Dict[str, Any], old: Dict[str, Any]) -> Dict[str, Any]:
    """The settings, with each old name given (not None) taking its new name's place.

    settings (Dict[str, Any]): The settings under their new names.
    old (Dict[str, Any]): The same under their 0.1 names, None where not given.
    RETURNS (Dict[str, Any]): The settings to use.
    """
    out = dict(settings)
    for old_name, value in old.items():
        if value is None:
            continue
        new_name = RENAMED_SETTINGS[old_name]
        if out[new_name] != SETTINGS[new_name]:
            raise UserError(
                f"[ntk_ner] both {old_name} = {value!r} and {new_name} = {out[new_name]!r} "
                f"are set: {old_name} is the old name of {new_name}; set only {new_name}"
            )
        warnings.warn(
            f"[ntk_ner] the setting {old_name!r} is deprecated: use {new_name!r} "
            f"({new_name} = {value!r})",
            # Shown by default (a DeprecationWarning is not, outside __main__): the
            # reader is whoever loads a 0.1 pipeline, not its developer.
            FutureWarning,
            stacklevel=3,
        )
        out[new_name] = value
    return out


def fold_renamed(config: Dict[str, Any]) -> None:
    """Fold a component config's 0.1 names into the new ones, in place: an old name
    set (not None) gives its value to its new name, and every old name goes. The
    factory has already refused an old and a new name both set.

    config (Dict[str, Any]): The component's config.
    """
    for old_name, new_name in RENAMED_SETTINGS.items():
        value = config.pop(old_name, None)
        if value is not None:
            config[new_name] = value


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise a UserError naming every setting out of its range.

    settings (Mapping[str, Any]): The settings, by the names of SETTINGS.
    """
    scheme, n_passes = settings["scheme"], settings["n_passes"]
    agreement_weight = settings["agreement_weight"]
    warmup = settings["agreement_warmup_steps"]
    o_unknown_weight, threshold = settings["o_unknown_weight"], settings["threshold"]
    problems = []
    if scheme not in TagScheme.NAMES:
        problems.append(f"scheme must be one of {', '.join(TagScheme.NAMES)}, not {scheme!r}")
    if not isinstance(n_passes, int) or n_passes < 1:
        problems.append(f"n_passes (forward passes per batch) must be at least 1, not {n_passes!r}")
    if not agreement_weight >= 0:
        problems.append(f"agreement_weight must be 0 or more, not {agreement_weight!r}")
    if warmup < 0:
        problems.append(f"agreement_warmup_steps must be 0 or more, not {warmup!r}")
    if not 0.0 <= o_unknown_weight <= 1.0:
        problems.append(f"o_unknown_weight must be between 0 and 1, not {o_unknown_weight!r}")
    if not 0.0 <= threshold <= 1.0:
        problems.append(f"threshold must be between 0 and 1, not {threshold!r}")
    if not settings["spans_key"]:
        problems.append("spans_key must not be empty")
    if problems:
        raise UserError("[ntk_ner] " + "; ".join(problems))


def check_passes_encoder(name: str, n_passes: int, model: Model) -> None:
    """Refuse n_passes > 1 with an encoder shared through a listener: it hands every
    pass the same vectors (no dropout of their own), and the upstream component takes
    the gradient once per pass.

    name (str): The component's name.
    n_passes (int): Forward passes per batch.
    model (Model): The component's model.
    """
    if n_passes <= 1:
        return
    for node in model.walk():
        kind = LISTENERS.get(node.name)
        if kind is not None:
            upstream = getattr(node, "upstream_name", "?")
            raise UserError(
                f"[{name}] n_passes = {n_passes} needs an encoder of the component's own, "
                f"but its model listens to an upstream component through a {kind} "
                f"(upstream {upstream!r}): every pass would get the same vectors and that "
                f"component would take the gradient {n_passes} times. Embed the encoder in "
                "the component (as configs/cpu.cfg and configs/trf.cfg do), or set "
                "n_passes = 1"
            )
