"""The client's models agree with the server's response schemas.

The client (tagserve.client, also shipped alone as tagserve_client) parses JSON by hand into
dataclasses that share names with the server's pydantic models, so nothing but this file
keeps the two in step:

- every response the server's schemas can produce (Hypothesis builds instances of the
  pydantic models, each optional field absent, null or set; each is encoded with orjson as
  the server does) parses losslessly: the client's answer, read back field by field, is the
  server's JSON, up to the few documented differences (``_as_the_client_has_it``);
- every field the server's JSON schema names, recursively, is read by the client (the JSON is
  handed to the client in dicts that record which keys it looks up), so a field added on the
  server without the client fails here;
- the dataclasses have the server models' fields, pair by pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import annotated_types
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tagserve import client
from tagserve.service.api.schemas import (
    EntityOut,
    ErrorResponse,
    HealthResponse,
    IntentChoice,
    IntentOut,
    ModelInfo,
    ModelsResponse,
    ResultOut,
    TagResponse,
    TokenOut,
)

# The statuses whose body is an ErrorResponse (tagserve.service.api.routes' TAG_ERRORS).
ERROR_STATUSES = [400, 401, 404, 413, 422, 500, 503]
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ABSENT = object()

# ---- instances of the server's models, from their fields ----

# JSON values for ``Any`` (test_metrics' values): what orjson and the stdlib agree on.
_JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def _bounds(field: FieldInfo | None) -> dict[str, Any]:
    """The field's numeric and length limits, as keyword arguments for a strategy."""
    found: dict[str, Any] = {}
    for limit in field.metadata if field is not None else []:
        if isinstance(limit, annotated_types.Ge):
            found["min_value"] = limit.ge
        elif isinstance(limit, annotated_types.Le):
            found["max_value"] = limit.le
        elif isinstance(limit, annotated_types.MaxLen):
            found["max_size"] = limit.max_length
        elif isinstance(limit, annotated_types.MinLen):
            found["min_size"] = limit.min_length
        else:
            raise TypeError(f"no strategy for the limit {limit!r}: teach _bounds")
    return found


def _strategy(annotation: Any, field: FieldInfo | None = None) -> st.SearchStrategy[Any]:
    """Values of ``annotation`` the server could put in a response; a type this does not
    know fails the test (a new kind of field is a reason to look at the client)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    bounds = _bounds(field)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return instances(annotation)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*(_strategy(arg, field) for arg in args))
    if annotation is type(None):
        return st.none()
    if origin is list:
        return st.lists(_strategy(args[0]), max_size=3)
    if origin is dict and args[0] is str:
        return st.dictionaries(st.text(max_size=8), _strategy(args[1]), max_size=3)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if annotation is Any:
        return _JSON
    if annotation is str:
        return st.text(max_size=bounds.get("max_size", 20), min_size=bounds.get("min_size", 0))
    if annotation is int:
        return st.integers(bounds.get("min_value", -(2**53)), bounds.get("max_value", 2**53))
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False, **bounds)
    raise TypeError(f"no strategy for {annotation!r}: teach _strategy")


def instances(model: type[BaseModel]) -> st.SearchStrategy[BaseModel]:
    """Valid instances of ``model``: each optional field absent, or any value (null too)."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        value = _strategy(field.annotation, field)
        fields[name] = value if field.is_required() else st.just(_ABSENT) | value
    return st.fixed_dictionaries(fields).map(
        lambda given: model(**{k: v for k, v in given.items() if v is not _ABSENT})
    )


def maximal(annotation: Any) -> Any:
    """One value of ``annotation`` with every optional part present (no nulls, lists of one),
    as the server sends it, so that every path of the JSON schema occurs in it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: maximal(field.annotation) for name, field in annotation.model_fields.items()}
    if origin in (types.UnionType, typing.Union):
        return maximal(next(arg for arg in args if arg is not type(None)))
    if origin is list:
        return [maximal(args[0])]
    if origin is dict:
        return {"f1": 0.9}
    return {str: "x", int: 1, float: 0.5}.get(annotation, "x")


def wire(instance: BaseModel) -> bytes:
    """The response body the server sends for ``instance``: orjson, unset fields left out
    (the /tag route omits ``intent`` for models without an intent head)."""
    return orjson.dumps(instance.model_dump(mode="json", exclude_unset=True))


# ---- the client's answers, read back ----


def plain(value: Any) -> Any:
    """A client answer as JSON-like data: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


def _as_the_client_has_it(kind: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """The server's JSON in the client's shape. The only differences, all documented in
    tagserve/client.py: ``TagResponse`` flattens ``model`` into ``model_name`` and
    ``model_version``; a missing ``intent`` is None; ``alternatives`` null (or absent) is an
    empty tuple; ``Health`` adds ``ok`` (the HTTP status). Anything else the server sends
    is kept, so a field the client drops makes the comparison fail."""
    body = orjson.loads(orjson.dumps(body))  # a deep copy
    if kind == "tag":
        model = body.pop("model")
        body["model_name"], body["model_version"] = model.pop("name"), model.pop("version")
        if model:
            body["model"] = model
        for result in body["results"]:
            result.setdefault("intent", None)
            if result["intent"] is not None and result["intent"].get("alternatives") is None:
                result["intent"]["alternatives"] = []
    elif kind == "health":
        body["ok"] = status == 200
    return body


def _answer(body: bytes, status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda _: httpx.Response(status, content=body, headers={"content-type": "application/json"})
    )


@EXAMPLES
@given(instances(TagResponse))
def test_every_tag_response_parses_losslessly(response: BaseModel) -> None:
    body = wire(response)
    with client.TagserveClient(transport=_answer(body)) as tagserve:
        parsed = tagserve.tag(text="x")
    assert plain(parsed) == _as_the_client_has_it("tag", orjson.loads(body))


@EXAMPLES
@given(instances(ModelsResponse))
def test_every_models_response_parses_losslessly(response: BaseModel) -> None:
    body = wire(response)
    with client.TagserveClient(transport=_answer(body)) as tagserve:
        parsed = tagserve.models()
    assert plain(parsed) == _as_the_client_has_it("models", orjson.loads(body))


@EXAMPLES
@given(instances(HealthResponse), st.sampled_from([200, 503]))
def test_every_health_response_parses_losslessly(response: BaseModel, status: int) -> None:
    body = wire(response)
    with client.TagserveClient(transport=_answer(body, status)) as tagserve:
        parsed = tagserve.health()
    assert plain(parsed) == _as_the_client_has_it("health", orjson.loads(body), status)


@EXAMPLES
@given(instances(ErrorResponse), st.sampled_from(ERROR_STATUSES))
def test_every_error_response_parses_losslessly(response: BaseModel, status: int) -> None:
    body = wire(response)
    with (
        client.TagserveClient(transport=_answer(body, status), max_retries=0) as tagserve,
        pytest.raises(client.TagserveError) as caught,
    ):
        tagserve.tag(text="x")
    expected = _as_the_client_has_it("error", orjson.loads(body), status)
    # Every key of the body is an attribute of the error (a new one fails as missing).
    assert {key: getattr(caught.value, key, "<missing>") for key in expected} == expected
    assert caught.value.status == status


def test_a_tag_response_with_intents_and_every_field_set() -> None:
    body = orjson.dumps(maximal(TagResponse))
    with client.TagserveClient(transport=_answer(body)) as tagserve:
        parsed = tagserve.tag(text="x")
    intent = parsed.results[0].intent
    assert intent == client.Intent("x", 0.5, (client.IntentChoice("x", 0.5),))
    assert plain(parsed) == _as_the_client_has_it("tag", orjson.loads(body))


def test_model_info_carries_the_intents() -> None:
    body = orjson.dumps({"default": "slots", "models": [maximal(ModelInfo)]})
    with client.TagserveClient(transport=_answer(body)) as tagserve:
        (info,) = tagserve.models().models
    assert info.intents == ("x",)


# ---- every field of the server's JSON schema is read by the client ----


def schema_paths(model: type[BaseModel]) -> set[str]:
    """Every property path of ``model``'s JSON schema (``results[].intent.label``)."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        if "$ref" in node:
            yield from walk(definitions[node["$ref"].rsplit("/", 1)[-1]], path)
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                yield from walk(option, path)
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}".lstrip(".")
            yield from walk(sub, f"{path}.{name}".lstrip("."))
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")

    return set(walk(schema, ""))


class Recording(dict):  # type: ignore[type-arg]
    """A JSON object that notes the path of every key looked up in it."""

    def __init__(self, data: dict[str, Any], path: str, read: set[str]) -> None:
        super().__init__(
            {key: _recording(v, f"{path}.{key}".lstrip("."), read) for key, v in data.items()}
        )
        self._path, self._read = path, read

    def _note(self, key: str) -> None:
        self._read.add(f"{self._path}.{key}".lstrip("."))

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)


def _recording(value: Any, path: str, read: set[str]) -> Any:
    if isinstance(value, dict):
        return Recording(value, path, read)
    if isinstance(value, list):
        return [_recording(item, f"{path}[]", read) for item in value]
    return value


def _read_by_client(
    body: Any,
    call: Callable[[client.TagserveClient], Any],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> set[str]:
    """The paths the client looks up while it answers ``call`` for a response of ``body``."""
    read: set[str] = set()
    monkeypatch.setattr(
        httpx.Response, "json", lambda self, **_: _recording(orjson.loads(self.content), "", read)
    )
    transport = _answer(orjson.dumps(body), status)
    with (
        client.TagserveClient(transport=transport, max_retries=0) as tagserve,
        contextlib.suppress(client.TagserveError),  # error answers are read too
    ):
        call(tagserve)
    return read


@pytest.mark.parametrize(
    ("model", "call", "status"),
    [
        (TagResponse, lambda c: c.tag(text="x"), 200),
        (ModelsResponse, lambda c: c.models(), 200),
        (HealthResponse, lambda c: c.health(), 200),
        (HealthResponse, lambda c: c.health(), 503),
        (ErrorResponse, lambda c: c.tag(text="x"), 422),
        (ErrorResponse, lambda c: c.models(), 503),
    ],
    ids=["tag", "models", "health", "health 503", "error", "error 503"],
)
def test_every_schema_field_is_read_by_the_client(
    model: type[BaseModel],
    call: Callable[[client.TagserveClient], Any],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = schema_paths(model)
    body = maximal(model)
    assert paths <= set(_recording_paths(body)), "the maximal instance holds every path"
    unread = paths - _read_by_client(body, call, status, monkeypatch)
    assert not unread, (
        f"the server's {model.__name__} has fields the client ignores: {sorted(unread)}"
    )


def test_a_field_added_on_the_server_alone_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above does notice drift: a server model with one more field fails it."""

    class Drifted(HealthResponse):
        uptime_s: float

    body = maximal(Drifted)
    read = _read_by_client(body, lambda c: c.health(), 200, monkeypatch)
    assert schema_paths(Drifted) - read == {"uptime_s"}
    with client.TagserveClient(transport=_answer(orjson.dumps(body))) as tagserve:
        parsed = tagserve.health()
    assert plain(parsed) != _as_the_client_has_it("health", body)


def _recording_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}".lstrip(".")
            yield from _recording_paths(item, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list):
        for item in value:
            yield from _recording_paths(item, f"{path}[]")


# ---- the dataclasses named like the server's models have the same fields ----

PAIRS: list[tuple[type[BaseModel], type, dict[str, tuple[str, ...]]]] = [
    # (server model, client dataclass, server field -> the client fields that hold it)
    (TokenOut, client.Token, {}),
    (EntityOut, client.Entity, {}),
    (IntentChoice, client.IntentChoice, {}),
    (IntentOut, client.Intent, {}),
    (ResultOut, client.Result, {}),
    (TagResponse, client.TagResponse, {"model": ("model_name", "model_version")}),
    (ModelInfo, client.ModelInfo, {}),
    (ModelsResponse, client.Models, {}),
    (HealthResponse, client.Health, {}),
]
# Client fields with no server field: Health.ok is the HTTP status (200 or 503).
CLIENT_ONLY = {(client.Health, "ok")}


@pytest.mark.parametrize(("server", "mine", "renamed"), PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_the_client_dataclasses_have_the_server_fields(
    server: type[BaseModel], mine: type, renamed: dict[str, tuple[str, ...]]
) -> None:
    expected = {name for field in server.model_fields for name in renamed.get(field, (field,))}
    have = {f.name for f in dataclasses.fields(mine)} - {n for c, n in CLIENT_ONLY if c is mine}
    assert have == expected, f"client {mine.__name__} vs server {server.__name__}"
