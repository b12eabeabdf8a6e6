"""Reading a saved `ntk_ner`: the learned part of its cfg, checked, and its weights,
checked against the saved labels."""

from typing import Any, Callable, Dict

from thinc.api import Model

from ..confidence.platt import IDENTITY
from ..errors import UserError
from ._crf.tag_scheme import TagScheme


def read_json(read: Callable[[], Any], source: str) -> Any:
    """RETURNS (Any): What `read` returns; a UserError naming `source` if it fails."""
    try:
        return read()
    except (OSError, ValueError) as err:
        raise UserError(f"{source}: not readable as JSON ({str(err)[:200]})") from None


def learned_from_cfg(saved: Any, source: str, name: str, scheme: str) -> Dict[str, Any]:
    """The labels and calibration a saved cfg holds, checked.

    saved (Any): The saved cfg, as read.
    source (str): What it was read from, for the errors.
    name (str): The component's name.
    scheme (str): The scheme the config sets: it must be the saved one.
    RETURNS (Dict[str, Any]): "labels", "calibration" and "calibration_per_label".
    """
    if not isinstance(saved, dict):
        raise UserError(f"{source}: not a saved {name} cfg")
    saved_scheme = saved.get("scheme", scheme)
    if saved_scheme != scheme:
        raise UserError(
            f"{source}: the weights were trained with scheme {saved_scheme!r}, but the config "
            f"sets scheme {scheme!r}; load with scheme = {saved_scheme!r}"
        )
    labels = saved.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise UserError(f"{source}: 'labels' must be a list of label names")
    calibration = saved.get("calibration", list(IDENTITY))
    if not _is_platt(calibration):
        raise UserError(f"{source}: 'calibration' must be two numbers [a, b]")
    # Absent from pipelines calibrated before there were maps per label.
    per_label = saved.get("calibration_per_label", {})
    if not (
        isinstance(per_label, dict)
        and all(k in labels and _is_platt(v) for k, v in per_label.items())
    ):
        raise UserError(
            f"{source}: 'calibration_per_label' must map saved labels to two numbers [a, b]"
        )
    return {
        "labels": list(labels),
        "calibration": [float(x) for x in calibration],
        "calibration_per_label": {k: [float(x) for x in v] for k, v in per_label.items()},
    }


def load_weights(model: Model, data: bytes, source: str) -> None:
    """Load `model`'s weights; a UserError naming `source` if they cannot be read."""
    try:
        model.from_bytes(data)
    except Exception as err:  # thinc and msgpack raise many kinds on bad bytes
        raise UserError(
            f"{source}: the weights cannot be read ({type(err).__name__}: {str(err)[:200]})"
        ) from None


def check_weights(model: Model, scheme: TagScheme, source: str) -> None:
    """Stop at load, not at the first prediction, when the weights do not score the
    tags of the saved labels.

    model (Model): The component's model, loaded.
    scheme (TagScheme): The tags of the saved labels.
    source (str): What the weights were read from, for the error.
    """
    n_tags = len(scheme.tags)
    shapes = {"nO": model.maybe_get_dim("nO")}
    for name in ("transitions", "start", "end"):
        if model.has_param(name):
            shapes[name] = model.get_param(name).shape[0]
    wrong = {k: n for k, n in shapes.items() if n is not None and n != n_tags}
    if wrong:
        got = ", ".join(f"{k} {n}" for k, n in wrong.items())
        raise UserError(
            f"{source}: the weights score {got} tags, but the {len(scheme.labels)} saved "
            f"labels in scheme {scheme.name} need {n_tags}; the labels (cfg) "
            "and the weights (model) do not belong together"
        )


def _is_platt(params: Any) -> bool:
    """RETURNS (bool): Whether `params` is a Platt map [a, b] as a saved cfg holds it."""
    return (
        isinstance(params, list)
        and len(params) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in params)
    )
