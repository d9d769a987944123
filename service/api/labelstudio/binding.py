"""Which model answers a labeling config, and which config label each model label becomes.

The model: the control's ``model="NAME"`` attribute, else ``model`` in the connection's
``extra_params``, else the model trained from the project (when it is served and
knows any of the config's labels), else the loaded model that knows the most of the config's
labels (the default model on a tie). A model label goes to the config option that lists it in
``predicted_values``, else to the one ``extra_params["labels"]`` maps it to (``{"PER":
"Person"}``), else to the option of the same name (case-insensitively); model labels that
reach no option are left out, config labels no model label reaches are never predicted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tagserve.service.api.labelstudio.config import Control, LabelingConfig
from tagserve.service.errors import LimitExceeded, UnknownModel
from tagserve.service.inference.registry import LoadedModel

EXTRA_KEYS = ("model", "labels")


@dataclass(frozen=True)
class ExtraParams:
    """The connection's ``extra_params`` (Label Studio sends them to ``/setup`` only)."""

    model: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    """A config bound to one model: per model label (entity type or intent), the name its
    predictions carry in the config's results."""

    loaded: LoadedModel
    config: LabelingConfig
    spans: dict[str, str]
    choices: dict[str, str]

    @property
    def model_version(self) -> str:
        return model_version(self.loaded)


def model_version(loaded: LoadedModel) -> str:
    """Label Studio's ``model_version``: the artifact's name and version (``ner-2.0.0``)."""
    return f"{loaded.name}-{loaded.info.card.version}"


def read_extra(raw: Any) -> ExtraParams:
    """``extra_params`` checked: an object with only ``model`` (a name) and ``labels``
    (model label → config label), or :class:`LimitExceeded` naming the key."""
    if raw is None or raw == "":
        return ExtraParams()
    if not isinstance(raw, dict):
        raise LimitExceeded("extra_params", f"must be a JSON object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(EXTRA_KEYS))
    if unknown:
        raise LimitExceeded(
            "extra_params", f"unknown key {unknown[0]!r}; known keys: {', '.join(EXTRA_KEYS)}"
        )
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise LimitExceeded("extra_params.model", "must be a model name (a string)")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise LimitExceeded(
            "extra_params.labels", 'must map model labels to config labels: {"PER": "Person"}'
        )
    return ExtraParams(model or None, dict(labels))


def bind(
    config: LabelingConfig,
    models: dict[str, LoadedModel],
    default: str,
    extra: ExtraParams,
    where: str,
    own: str | None = None,
) -> Binding:
    """The model and label maps for ``config``; 404 for an unknown model, 422 when the
    model knows none of the config's labels (``where``: the request field of the config).
    ``own``: the model trained from the project, chosen when it is served, no model is
    named, and it knows any of the config's labels."""
    chosen = next((c.model for c in config.controls() if c.model), None) or extra.model
    if chosen is None and own is not None and own in models:
        trained = _bind_one(config, models[own], extra)
        if trained.spans or trained.choices:
            _check_mapping(config, extra)
            return trained
    if chosen is not None:
        if chosen not in models:
            raise UnknownModel(chosen, sorted(models))
        candidates = [models[chosen]]
    else:
        # The default first, then by name: max() keeps the first of equals.
        candidates = sorted(models.values(), key=lambda m: (m.name != default, m.name))
    bindings = [_bind_one(config, loaded, extra) for loaded in candidates]
    best = max(bindings, key=lambda b: len(set(b.spans.values()) | set(b.choices.values())))
    if not best.spans and not best.choices:
        known = "; ".join(f"{b.loaded.name}: {_listed(_model_labels(b.loaded))}" for b in bindings)
        wanted = _listed([o.value for c in config.controls() for o in c.options])
        raise LimitExceeded(
            where,
            f"no model knows any of the config's labels ({wanted}); models and their "
            f'labels: {known}. Name them alike, or map them: <Label value="Person" '
            'predicted_values="PER"/>',
        )
    _check_mapping(config, extra)
    return best


def _bind_one(config: LabelingConfig, loaded: LoadedModel, extra: ExtraParams) -> Binding:
    spans: dict[str, str] = {}
    choices: dict[str, str] = {}
    if config.labels is not None:
        spans = _mapping(config.labels, loaded.info.labels.entity_types, extra)
    if config.choices is not None and loaded.info.intents:
        choices = _mapping(config.choices, loaded.info.intents, extra)
    return Binding(loaded, config, spans, choices)


def _mapping(control: Control, model_labels: list[str], extra: ExtraParams) -> dict[str, str]:
    by_predicted = {p: o.name for o in control.options for p in o.predicted}
    by_name = {o.value: o.name for o in control.options} | {o.name: o.name for o in control.options}
    by_folded = {k.casefold(): v for k, v in by_name.items()}
    mapped = {}
    for label in model_labels:
        target = (
            by_predicted.get(label)
            or by_name.get(extra.labels.get(label, ""))
            or by_name.get(label)
            or by_folded.get(label.casefold())
        )
        if target is not None:
            mapped[label] = target
    return mapped


def _check_mapping(config: LabelingConfig, extra: ExtraParams) -> None:
    """A mapping in ``extra_params`` to a label the config lacks is a mistake worth a 422."""
    names = {n for c in config.controls() for o in c.options for n in (o.value, o.name)}
    for model_label, target in extra.labels.items():
        if target not in names:
            raise LimitExceeded(
                f"extra_params.labels.{model_label}",
                f"{target!r} is not a label of the config ({_listed(sorted(names))})",
            )


def _model_labels(loaded: LoadedModel) -> list[str]:
    return [*loaded.info.labels.entity_types, *loaded.info.intents]


def _listed(items: list[str], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
