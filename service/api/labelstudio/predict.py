"""Label Studio tasks → predictions, through the same text pipeline and batcher as
``POST /tag``: :func:`~tagserve.text.pipeline.plan_text` tokenizes and splits, the model's
batcher tags, :func:`~tagserve.text.pipeline.build_results` makes the tokens and entities
(offsets in code points, Label Studio's unit for ``<Text>``), and this module writes them as
``labels`` and ``choices`` results.

The task's ``score``, for sorting the data manager so that the least certain tasks come
first, is :func:`task_score`: the lowest token score of the text (the CRF marginal of the
decoded tag, ``O`` tokens included, so a likely missed entity lowers it too), and the
intent's probability when a ``<Choices>`` is filled, whichever is lower; 1.0 for a text
with no tokens. ``python -m bench.uncertainty`` measures it against the alternatives.
"""

from __future__ import annotations

from typing import Any

from tagserve.service.api.labelstudio.binding import Binding
from tagserve.service.errors import LimitExceeded
from tagserve.service.settings import Settings
from tagserve.text.pipeline import TextPlan, build_results, model_inputs, plan_text


async def predict(
    tasks: list[dict[str, Any]], binding: Binding, settings: Settings
) -> list[dict[str, Any]]:
    """One prediction per task, in task order (Label Studio pairs them by position)."""
    loaded = binding.loaded
    info = loaded.info
    plans = plan_tasks(tasks, binding, settings)
    tagged = await loaded.batcher.submit(model_inputs(plans, info.card.tokenizer))
    results = build_results(plans, tagged, info.labels.scheme, bool(info.intents))
    return [prediction(result, binding) for result in results]


def plan_tasks(tasks: list[dict[str, Any]], binding: Binding, settings: Settings) -> list[TextPlan]:
    """Every limit of ``POST /tag`` checked (naming the task field), then tokenized."""
    if len(tasks) > settings.max_texts:
        raise LimitExceeded(
            "tasks",
            f"{len(tasks)} tasks exceed the limit of {settings.max_texts} per request "
            "(TAGSERVE_MAX_TEXTS); retrieve predictions for fewer tasks at a time",
        )
    texts = [task_text(task, i, binding.config.field) for i, task in enumerate(tasks)]
    tokenizer = binding.loaded.info.card.tokenizer
    for i, text in enumerate(texts):
        if len(text) > settings.max_text_chars:
            raise LimitExceeded(
                f"tasks[{i}].data.{binding.config.field}",
                f"{len(text)} characters exceed the limit of {settings.max_text_chars} "
                "(TAGSERVE_MAX_TEXT_CHARS)",
            )
    plans = [plan_text(text, tokenizer, settings.max_sentence_tokens) for text in texts]
    total = sum(len(s) for p in plans for s in p.sentences)
    if total > settings.max_tokens:
        raise LimitExceeded(
            "tasks",
            f"{total} tokens exceed the limit of {settings.max_tokens} per request "
            "(TAGSERVE_MAX_TOKENS); retrieve predictions for fewer tasks at a time",
        )
    return plans


def task_text(task: dict[str, Any], index: int, field: str) -> str:
    """``task["data"][field]``, the text the config's ``<Text value="$field">`` shows."""
    where = f"tasks[{index}].data.{field}"
    data = task.get("data")
    if not isinstance(data, dict) or field not in data:
        raise LimitExceeded(where, f'missing: the config\'s <Text value="${field}"> reads it')
    text = data[field]
    if not isinstance(text, str):
        raise LimitExceeded(where, f"must be the text itself (a string), not {_kind(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise LimitExceeded(
            where,
            f"lone surrogate U+{ord(text[error.start]):04X} at offset {error.start} is not "
            "valid Unicode text",
        ) from None
    return text


def prediction(result: dict[str, Any], binding: Binding) -> dict[str, Any]:
    """One task's prediction: a ``labels`` result per entity whose label the config has, a
    ``choices`` result for the intent when the config has that choice."""
    config = binding.config
    items: list[dict[str, Any]] = []
    if config.labels is not None:
        for entity in result["entities"]:
            name = binding.spans.get(entity["label"])
            if name is None:
                continue  # a label the config does not have
            items.append(
                {
                    "id": f"{config.labels.name}-{len(items)}",
                    "from_name": config.labels.name,
                    "to_name": config.to_name,
                    "type": "labels",
                    "value": {
                        "start": entity["start"],
                        "end": entity["end"],
                        "text": entity["text"],
                        "labels": [name],
                    },
                    "score": entity["score"],
                }
            )
    intent = result.get("intent")
    intent_score = None
    if config.choices is not None and intent is not None:
        intent_score = intent["score"]
        choice = binding.choices.get(intent["label"])
        if choice is not None:
            items.append(
                {
                    "id": f"{config.choices.name}-0",
                    "from_name": config.choices.name,
                    "to_name": config.to_name,
                    "type": "choices",
                    "value": {"choices": [choice]},
                    "score": intent_score,
                }
            )
    return {
        "model_version": binding.model_version,
        "score": task_score(result, intent_score),
        "result": items,
    }


def task_score(result: dict[str, Any], intent_score: float | None = None) -> float:
    """The task's certainty (see the module's docstring): low first in the data manager."""
    scores = [token["score"] for token in result["tokens"]]
    if intent_score is not None:
        scores.append(intent_score)
    return min(scores, default=1.0)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
