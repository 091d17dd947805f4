"""The one error hierarchy of the gateway, and its mapping to OpenAI-shaped HTTP errors.

Every failure a client can see is a ``WardenError`` subclass; ``to_body`` and ``headers``
are the only place that decides status codes, error types and retry hints.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WardenError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, param: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.extra = extra or {}

    def to_body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        body: dict[str, Any] = {"error": error}
        if self.extra or isinstance(self, PolicyBlocked):
            body["warden"] = {"request_id": request_id, **self.extra}
        return body

    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "true" if self.retryable else "false"}


class BadRequest(WardenError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class BodyTooLarge(WardenError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Unauthorized(WardenError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(WardenError):
    status = 403
    type = "invalid_request_error"
    code = "insufficient_permissions"


class NotFound(WardenError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PolicyBlocked(WardenError):
    """A check in enforce mode blocked the request."""

    status = 400
    type = "invalid_request_error"
    code = "content_policy_violation"

    def __init__(self, message: str, *, stage: str, check: str, policy: str) -> None:
        super().__init__(message, extra={"stage": stage, "check": check, "policy": policy})
        self.stage = stage
        self.check = check


class CheckUnavailable(WardenError):
    """A check could not run (error or timeout) and its ``on_error`` fails closed."""

    status = 503
    type = "server_error"
    code = "check_unavailable"
    retryable = True
    retry_after_s = 1

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "retry-after": str(self.retry_after_s)}


class AuditUnavailable(WardenError):
    """The audit database cannot be read yet (the writer is still starting) or at all."""

    status = 503
    type = "server_error"
    code = "audit_unavailable"
    retryable = True

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "retry-after": "1"}


class RateLimited(WardenError):
    """The key is over its requests- or tokens-per-minute limit."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, retry_after_s: int, limit_headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.limit_headers = limit_headers or {}

    def headers(self) -> dict[str, str]:
        return {**super().headers(), **self.limit_headers, "retry-after": str(self.retry_after_s)}


class UpstreamError(WardenError):
    status = 502
    type = "api_error"
    code = "upstream_error"
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamStatus(UpstreamError):
    """The upstream answered with an HTTP error; 4xx keep their status, 5xx become 502."""

    def __init__(self, message: str, upstream_status: int) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status

    def headers(self) -> dict[str, str]:
        retry = self.upstream_status in (408, 409, 429) or self.upstream_status >= 500
        return {"x-should-retry": "true" if retry else "false"}

    def to_body(self, request_id: str) -> dict[str, Any]:
        body = super().to_body(request_id)
        body["error"]["code"] = "rate_limit_exceeded" if self.upstream_status == 429 else self.code
        if 400 <= self.upstream_status < 500:
            body["error"]["type"] = "invalid_request_error"
        return body

    @property
    def http_status(self) -> int:
        return self.upstream_status if 400 <= self.upstream_status < 500 else 502


def http_status(exc: WardenError) -> int:
    return exc.http_status if isinstance(exc, UpstreamStatus) else exc.status
