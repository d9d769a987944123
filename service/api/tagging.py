"""The work of ``POST /tag`` once the body is a valid :class:`TagRequest`: check every limit,
tokenize, wait for the batcher, build the JSON answer."""

from __future__ import annotations

import orjson

from tagserve.service.api.schemas import TagRequest
from tagserve.service.errors import LimitExceeded, UnknownModel
from tagserve.service.inference.registry import LoadedModel
from tagserve.service.settings import Settings
from tagserve.text.pipeline import TextPlan, build_results, model_inputs, plan_text, plan_tokens


async def tag_payload(
    body: TagRequest, models: dict[str, LoadedModel], settings: Settings
) -> bytes:
    """The JSON response body of ``POST /tag`` for a valid request."""
    name = body.model or settings.default_model
    loaded = models.get(name)
    if loaded is None:
        raise UnknownModel(name, sorted(models))
    info = loaded.info
    if body.intent_top_k is not None and body.intent_top_k > len(info.intents):
        raise LimitExceeded(
            "intent_top_k",
            f"{body.intent_top_k} exceeds the {len(info.intents)} intents model {name!r} has"
            if info.intents
            else f"model {name!r} has no intent head",
        )
    plans = make_plans(body, loaded, settings)
    tagged = await loaded.batcher.submit(model_inputs(plans, info.card.tokenizer))
    results = build_results(
        plans, tagged, info.labels.scheme, bool(info.intents), body.intent_top_k
    )
    payload = {"model": {"name": loaded.name, "version": info.card.version}, "results": results}
    return orjson.dumps(payload)


def make_plans(body: TagRequest, loaded: LoadedModel, settings: Settings) -> list[TextPlan]:
    """Check every limit, then tokenize; nothing reaches the model before this passes."""
    limit_note = f"the limit of {settings.max_texts} per request (TAGSERVE_MAX_TEXTS)"
    if body.text is not None:
        inputs = [("text", body.text)]
    elif body.texts is not None:
        if len(body.texts) > settings.max_texts:
            raise LimitExceeded("texts", f"{len(body.texts)} texts exceed {limit_note}")
        inputs = [(f"texts[{i}]", text) for i, text in enumerate(body.texts)]
    else:
        assert body.tokens is not None
        if len(body.tokens) > settings.max_texts:
            raise LimitExceeded("tokens", f"{len(body.tokens)} token lists exceed {limit_note}")
        return _token_plans(body.tokens, settings)
    for field, text in inputs:
        if len(text) > settings.max_text_chars:
            raise LimitExceeded(
                field,
                f"{len(text)} characters exceed the limit of {settings.max_text_chars} "
                "(TAGSERVE_MAX_TEXT_CHARS)",
            )
    tokenizer = loaded.info.card.tokenizer
    plans = [plan_text(text, tokenizer, settings.max_sentence_tokens) for _, text in inputs]
    _check_token_total(
        sum(len(s) for p in plans for s in p.sentences),
        inputs[0][0] if body.text else "texts",
        settings,
    )
    return plans


def _token_plans(token_lists: list[list[str]], settings: Settings) -> list[TextPlan]:
    for i, words in enumerate(token_lists):
        for j, word in enumerate(words):
            if not word or any(c.isspace() for c in word):
                raise LimitExceeded(
                    f"tokens[{i}][{j}]", "a token must be non-empty and contain no whitespace"
                )
        joined = sum(map(len, words)) + max(len(words) - 1, 0)
        if joined > settings.max_text_chars:
            raise LimitExceeded(
                f"tokens[{i}]",
                f"{joined} characters exceed the limit of {settings.max_text_chars} "
                "(TAGSERVE_MAX_TEXT_CHARS)",
            )
    _check_token_total(sum(map(len, token_lists)), "tokens", settings)
    return [plan_tokens(words, settings.max_sentence_tokens) for words in token_lists]


def _check_token_total(total: int, field: str, settings: Settings) -> None:
    if total > settings.max_tokens:
        raise LimitExceeded(
            field,
            f"{total} tokens exceed the limit of {settings.max_tokens} per request "
            "(TAGSERVE_MAX_TOKENS)",
        )
