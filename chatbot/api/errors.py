"""Every API error is JSON: {"error": {"code": "<stable_snake_case>", "message": "..."}}.

Clients branch on `code` (stable); `message` is for people and may change.
Validation errors add `fields`: {"<field>": [{"code", "message"}]}.
"""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)

# Field errors important enough to be the error's own code: a client shows
# "message too long" without digging into `fields`.
PROMOTED_FIELD_CODES = {"empty_message", "message_too_long"}

CODES: list[tuple[type[Exception], str]] = [
    # Order matters: subclasses before their bases.
    (exceptions.ParseError, "invalid_json"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.NotAuthenticated, "invalid_api_key"),
    (exceptions.AuthenticationFailed, "invalid_api_key"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.Throttled, "rate_limited"),
]


class ApiError(exceptions.APIException):
    """An error with its own stable code, raised by the API's views and checks."""

    def __init__(self, *, status_code: int, code: str, message: str, wait: int | None = None) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.code = code
        self.wait = wait  # seconds; DRF's handler turns it into Retry-After


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's EXCEPTION_HANDLER: the error shape above for everything, never an HTML 500."""
    if isinstance(exc, RequestDataTooBig):
        exc = ApiError(status_code=413, code="body_too_large", message=str(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)  # status, WWW-Authenticate, Retry-After, rollback
    if response is None:
        view = context.get("view")
        logger.exception("unhandled error in %s", type(view).__name__ if view else "an API view")
        set_rollback()
        return Response(
            error_body("internal_error", "Something went wrong on our side; the error was logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    response.data = _describe(exc)
    return response


def _describe(exc: exceptions.APIException) -> dict:
    if isinstance(exc, ApiError):
        return error_body(exc.code, str(exc.detail))
    if isinstance(exc, exceptions.ValidationError):
        return _validation_body(exc)
    if isinstance(exc, exceptions.Throttled):
        return error_body("rate_limited", f"Too many requests; retry in {exc.wait or 1} seconds.")
    if isinstance(exc, exceptions.NotAuthenticated):
        return error_body("invalid_api_key", "Send an API key as: Authorization: Bearer sk_bot_...")
    code = next((code for kind, code in CODES if isinstance(exc, kind)), None)
    if code is None:
        code = exc.default_code if isinstance(exc.default_code, str) else "error"
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
    return error_body(code, str(detail))


def _validation_body(exc: exceptions.ValidationError) -> dict:
    details = exc.get_full_details()
    if not isinstance(details, dict):  # a bare list: errors about the body as a whole
        details = {"non_field_errors": details if isinstance(details, list) else [details]}
    fields = {name: errors if isinstance(errors, list) else [errors] for name, errors in details.items()}
    flat = [(name, error) for name, errors in fields.items() for error in errors if isinstance(error, dict)]
    if len(flat) == 1 and flat[0][1].get("code") in PROMOTED_FIELD_CODES:
        error = flat[0][1]
        return error_body(str(error["code"]), str(error["message"]), fields=fields)
    summary = "; ".join(f"{name}: {error.get('message')}" for name, error in flat) or "Invalid request."
    return error_body("invalid_request", summary, fields=fields)


@csrf_exempt
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Unknown paths under /api/ answer JSON too, not Django's HTML 404 page."""
    return JsonResponse(
        error_body("not_found", f"No API endpoint at {request.path}; see /api/docs/."), status=404
    )
