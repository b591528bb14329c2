"""The only module that talks HTTP to Zalo: the OA message API and the OAuth v4 token refresh.

Zalo answers errors with HTTP 200 and a negative `error` in the body, so the body
decides, never the status alone (specs/zalo-oa.md §1, §4). Every error is mapped to
one class of the shared hierarchy: callers retry `TransientError`s (including
`RateLimited`) and never retry a `PermanentError`.
"""

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from django.conf import settings

from knowledge.embedding.errors import PermanentError, ProviderError, RateLimited, TransientError

logger = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
SEND_PATH = "/v3.0/oa/message/cs"
REFRESH_PATH = "/v4/oa/access_token"
TEXT_LIMIT = 2000  # characters per message (spec §3.1)


class ZaloError(ProviderError):
    """Zalo refused or failed a call. `code` is Zalo's error code, or the HTTP status when
    the body had none (a proxy page, a 5xx); None for a network failure."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ZaloTransient(ZaloError, TransientError):
    """A 5xx, a timeout, a connection failure, a body that is not Zalo's, or -200."""


class ZaloRateLimited(ZaloError, RateLimited):
    """-32: the app or the OA reached its calls per minute."""


class ZaloAuthError(ZaloTransient):
    """-216 / -220: the access token is invalid or expired; refresh it and retry once."""


class ZaloPermanent(ZaloError, PermanentError):
    """Retrying the same call will not help."""


class ZaloOutsideWindow(ZaloPermanent):
    """-230 / -232: the user has not interacted with the OA in the last 7 days."""


class ZaloRecipientError(ZaloPermanent):
    """-213 / -217 / -227 / -244: this user cannot receive messages from the OA."""


class ZaloBadRequest(ZaloPermanent):
    """-201 / -210 / -233 / -248 and the like: the message itself is refused."""


class ZaloConfigError(ZaloPermanent):
    """The OA or the app is disabled, unapproved or lacks a permission: an operator must act."""


class ZaloRefreshRevoked(ZaloPermanent):
    """The refresh token was rejected (used, expired, revoked): the OA must be connected again."""


AUTH_CODES = {-216, -220, 216, 401, -401}  # goclaw saw the sign and magnitude vary (spec §4)
RATE_LIMIT_CODES = {-32}
TRANSIENT_CODES = {-200}
WINDOW_CODES = {-230, -232}
RECIPIENT_CODES = {-213, -217, -218, -227, -244}
BAD_REQUEST_CODES = {-100, -201, -210, -233, -234, -240, -248, 404}
CONFIG_CODES = {-204, -205, -209, -211, -212, -219, -221, -223, -224, -242, -14003}


def error_for(code: int, message: str) -> ZaloError:
    """The exception for an error body `{"error": code, "message": message}`."""
    text = f"Zalo error {code}: {message}"
    for codes, kind in (
        (AUTH_CODES, ZaloAuthError),
        (RATE_LIMIT_CODES, ZaloRateLimited),
        (TRANSIENT_CODES, ZaloTransient),
        (WINDOW_CODES, ZaloOutsideWindow),
        (RECIPIENT_CODES, ZaloRecipientError),
        (BAD_REQUEST_CODES, ZaloBadRequest),
        (CONFIG_CODES, ZaloConfigError),
    ):
        if code in codes:
            return kind(text, code=code)
    # An undocumented code: stop rather than hammer Zalo; the failed row shows it.
    return ZaloPermanent(text, code=code)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds


_local = threading.local()


def _client() -> httpx.Client:
    # One pooled client per thread and process: Celery forks workers after import, and
    # a connection pool must not be shared across a fork.
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "pid", None) != os.getpid():
        client = httpx.Client(timeout=TIMEOUT, trust_env=True)
        _local.client, _local.pid = client, os.getpid()
    return client


def reset_clients() -> None:
    client = getattr(_local, "client", None)
    if client is not None:
        client.close()
    _local.client = None


def send_text(*, access_token: str, user_id: str, text: str, quote_msg_id: str = "") -> str:
    """Send a consultation text to a user; Zalo's message id of it."""
    message: dict[str, Any] = {"text": text}
    if quote_msg_id:
        message["quote_message_id"] = quote_msg_id
    body = _call(
        "POST",
        f"{settings.ZALO_OPENAPI_URL}{SEND_PATH}",
        headers={"access_token": access_token},
        json={"recipient": {"user_id": user_id}, "message": message},
    )
    _raise_for_error(body)
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    return str(data.get("message_id") or "")


def refresh_access_token(*, app_id: str, app_secret: str, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair. Zalo kills the old refresh token on success."""
    body = _call(
        "POST",
        f"{settings.ZALO_OAUTH_URL}{REFRESH_PATH}",
        headers={"secret_key": app_secret},
        data={"refresh_token": refresh_token, "app_id": app_id, "grant_type": "refresh_token"},
    )
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if isinstance(access, str) and access and isinstance(refresh, str) and refresh:
        try:
            expires_in = int(body.get("expires_in") or 0)  # a string in Zalo's answers
        except (TypeError, ValueError):
            expires_in = 0
        return TokenPair(access, refresh, expires_in if expires_in > 0 else 3600)
    # No pair: the refresh token was rejected. The body's shape is not documented
    # (spec §6.2), so keep all of it for the operator.
    code = body.get("error") if isinstance(body.get("error"), int) else None
    reason = body.get("error_description") or body.get("error_reason") or body.get("message") or ""
    logger.error("Zalo refused a token refresh: %s", body)
    raise ZaloRefreshRevoked(
        f"Zalo refused the refresh token ({code if code is not None else 'no token in the answer'}"
        f"{': ' + str(reason) if reason else ''})",
        code=code,
    )


def _call(method: str, url: str, **kwargs) -> dict[str, Any]:
    try:
        response = _client().request(method, url, **kwargs)
    except httpx.TimeoutException as error:
        raise ZaloTransient(f"Zalo did not answer in time ({type(error).__name__})") from error
    except httpx.HTTPError as error:
        raise ZaloTransient(f"Could not reach Zalo: {type(error).__name__}: {error}") from error
    if response.status_code >= 500:
        raise ZaloTransient(f"Zalo answered HTTP {response.status_code}", code=response.status_code)
    if response.status_code == 429:
        raise ZaloRateLimited("Zalo answered HTTP 429", code=429)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.status_code != 200:
            raise ZaloPermanent(f"Zalo answered HTTP {response.status_code}", code=response.status_code)
        raise ZaloTransient("Zalo answered with a body that is not a JSON object")
    return body


def _raise_for_error(body: dict[str, Any]) -> None:
    code = body.get("error")
    if code == 0:
        return
    if not isinstance(code, int):
        raise ZaloTransient(f"Zalo answered without an error code: {str(body)[:200]}")
    raise error_for(code, str(body.get("message") or ""))
