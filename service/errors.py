"""Every exception the service answers with a status of its own, in one place: the rooms
raise them (inference: the model could not take or finish the work; api: the request is
wrong), and :mod:`tagserve.service.api.handlers` turns each into its HTTP answer."""

from __future__ import annotations


class LimitExceeded(Exception):
    """A request field is over a configured limit (answered 422)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


class UnknownModel(Exception):
    """The request names a model that is not loaded (answered 404)."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"model: unknown model {name!r}; loaded models: {', '.join(known)}")


class BadRequest(Exception):
    """The request is malformed before any field can be read: not JSON, not UTF-8, two
    ``Authorization`` headers (answered 400)."""


class UnsupportedMedia(Exception):
    """A body in a content type or encoding the service does not read (answered 415)."""


class Unauthorized(Exception):
    """No key, or not one of the server's (answered 401 with ``WWW-Authenticate``)."""


class Overloaded(Exception):
    """The queue cannot take these sentences now; retry after ``retry_after`` seconds.

    ``detail`` replaces the message when the refusal was decided before the body was read
    (:mod:`tagserve.service.api.admission`); ``model`` is then the metric's label."""

    def __init__(
        self,
        model: str,
        waiting: int,
        limit: int,
        retry_after: int = 1,
        *,
        detail: str | None = None,
    ) -> None:
        super().__init__(
            detail
            or f"model {model!r} is at capacity ({waiting} sentences queued, limit {limit}, "
            "TAGSERVE_MAX_QUEUE); retry later"
        )
        self.model = model
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The batcher is closed and takes no new work (answered 503)."""


class ModelFailure(Exception):
    """The model raised on a request tagged alone; only that request fails (answered 500)."""


class WorkerUnavailable(Exception):
    """The model's worker died or overran the batch timeout and is being replaced (answered
    503 with ``Retry-After``: the same request will very likely succeed shortly)."""

    def __init__(self, model: str, problem: str, retry_after: int = 2) -> None:
        super().__init__(f"model {model!r} is unavailable: its worker {problem}; retry shortly")
        self.model = model
        self.problem = problem
        self.retry_after = retry_after


class ModelTimeout(Exception):
    """This request, tagged alone, overran the batch timeout and its worker was killed: a
    query of death. Answered 503 with ``code: model_timeout`` and no ``Retry-After``, so that
    neither a proxy nor the client replays it onto another worker."""

    code = "model_timeout"

    def __init__(self, model: str, problem: str) -> None:
        super().__init__(
            f"model {model!r}: this request alone made its worker overrun the batch timeout "
            f"({problem.removeprefix('overran the batch timeout ').strip('()')}, "
            "TAGSERVE_BATCH_TIMEOUT_S); "
            "the worker was replaced; do not retry this request as it is (split it, or send "
            "shorter texts)"
        )
        self.model = model


class WorkerStartError(Exception):
    """A model's worker could not load its model at start-up."""
