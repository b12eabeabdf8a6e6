"""The `ntk_ner` factory: builds the component from its config, reading the settings'
0.1 names with a FutureWarning.

The factory must list the 0.1 names for spaCy to accept a config that has them, and
spaCy's config system writes every listed argument into the config it keeps (which
`nlp.config`, `spacy init fill-config` and every saved pipeline show). So the factory
also has the pipeline keep each `ntk_ner` config with the old names folded into the
new ones (`_NewNames`): the old names are read, never shown.
"""

from typing import Any, Callable, Dict, List, Optional

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

from .component import NTKEntityRecognizer
from .settings import DEFAULT_CONFIG, fold_renamed, renamed_settings


@Language.factory(
    "ntk_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config=DEFAULT_CONFIG,
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
    },
)
def make_ntk_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    n_passes: int,
    agreement_weight: float,
    agreement_warmup_steps: int,
    o_unknown_weight: float,
    threshold: float,
    spans_key: str,
    overwrite_ents: bool,
    scorer: Optional[Callable],
    k: Optional[int] = None,
    alpha: Optional[float] = None,
    alpha_warmup_steps: Optional[int] = None,
) -> NTKEntityRecognizer:
    """Create an `ntk_ner` component.

    model (Model[List[Doc], List[Floats2d]]): Gives each token's tag scores and holds
        the CRF transitions (`spacy_ntk_ner.TokenClassifier.v1` or `.v2`).
    scheme (str): "BILUO" or "BIO": the tags the CRF decodes.
    n_passes (int): Forward passes per batch in training, each with its own dropout
        (1: plain).
    agreement_weight (float): Weight of the agreement loss between the passes (0: off).
    agreement_warmup_steps (int): Optimizer steps (`finish_update` calls; with
        `accumulate_gradient = n`, n batches each) before the agreement loss starts.
    o_unknown_weight (float): Partial-label training, for corpora whose O tags
        include missed mentions: at a token tagged O in the training data, every
        other tag has this weight against O's 1 in the gold lattice (0: trust every
        O, the plain loss; 1: an O tells nothing, as a token without gold).
    threshold (float): Entities scored below it stay out of `doc.ents`.
    spans_key (str): Key of the SpanGroup in `doc.spans` holding every decoded
        entity, with their scores in `attrs["scores"]`.
    overwrite_ents (bool): Replace `doc.ents`; if False, keep the entities already
        set and add only those that do not overlap them.
    scorer (Optional[Callable]): Scores the component (`spacy.ner_scorer.v1`).
    k, alpha, alpha_warmup_steps (Optional): The 0.1 names of `n_passes`,
        `agreement_weight` and `agreement_warmup_steps`: used with a
        FutureWarning if given (not null); an error if the new name is set too.
    RETURNS (NTKEntityRecognizer): The component.
    """
    _keep_new_names(nlp)
    passes = renamed_settings(
        {
            "n_passes": n_passes,
            "agreement_weight": agreement_weight,
            "agreement_warmup_steps": agreement_warmup_steps,
        },
        {"k": k, "alpha": alpha, "alpha_warmup_steps": alpha_warmup_steps},
    )
    return NTKEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        o_unknown_weight=o_unknown_weight,
        threshold=threshold,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        scorer=scorer,
        **passes,
    )


class _NewNames(dict):
    """`Language._pipe_configs` (each component's config, by name), storing each
    `ntk_ner` config with the settings' 0.1 names folded into the new ones. spaCy
    stores a component's config right after its factory returns, so the factory can
    only hand the pipeline this mapping beforehand.
    """

    def __setitem__(self, name: str, config: Dict[str, Any]) -> None:
        if config.get("factory") == "ntk_ner":
            fold_renamed(config)
        super().__setitem__(name, config)


def _keep_new_names(nlp: Language) -> None:
    # Only a plain dict is replaced: a spaCy that keeps its configs otherwise shows
    # the 0.1 names as `null`, as before, and loads the same.
    configs = getattr(nlp, "_pipe_configs", None)
    if type(configs) is dict:
        nlp._pipe_configs = _NewNames(configs)
