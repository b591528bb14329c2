"""A loopback fake of Zalo: the OA Open API, the OAuth v4 host, and the webhook emitter.

Follows /work/shared/specs/zalo-oa.md §7 for what our client uses:

- `POST /v3.0/oa/message/cs` with the bare `access_token` header: unknown token -216,
  expired -220, over `rate_limit_per_min` -32, unknown user or a text of 0 or more
  than `text_limit` characters (NFC) -201, a blocked user -217, an unfollowed one
  -213 (when `refuse_unfollowed`), last interaction older than `window_days` -230;
  success records the message (`sent`) and answers `{"data":{"message_id",...},
  "error":0,"message":"Success"}`. Every error is HTTP 200 with a negative code, like Zalo.
- `POST /v2.0/oa/message` with a text: -240 (the v2 send API is shut down).
- `POST /v4/oa/access_token` (form body, `secret_key` header): single-use rotating
  refresh tokens; the previous refresh token dies at once and a reused one gets the
  synthetic -14014 body of spec §6.2. `refreshes` counts the successful rotations.
- Any other path: `{"error":404,"message":"You are accessing an empty or invalid API..."}`.

Scripted failures: `fail_next_sends(error=-32 | http_status=500 | delay=3.0, times=N)`.
The clock is the real one plus `advance(seconds)`, for token expiry and the 7-day window.

The emitter (`user_sends_text`, `user_sends_image`, `user_sends_file`, `user_sends_sticker`,
`user_follows`, `user_unfollows`, `user_sees`, `user_receives`, `admin_replies`) builds
bodies like Zalo: official key order, compact JSON, string ms timestamps, raw UTF-8 (or
`\\uXXXX` with `ensure_ascii`), signed `mac=sha256(app_id + body + timestamp +
oa_secret_key)`. It POSTs them to `webhook_url`, retries a delivery that is not answered
200 within `webhook_timeout_s` per `retry_schedule` (header `num_retry`), and disables
the subscription after the last failure. Every attempt is recorded on the `Delivery`.
"""

import hashlib
import json
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

import httpx2 as httpx

from tests.fakes import FakeHandler, FakeServer, RecordedRequest

SEND_PATH = "/v3.0/oa/message/cs"
V2_SEND_PATH = "/v2.0/oa/message"
TOKEN_PATH = "/v4/oa/access_token"
NOT_FOUND = {"error": 404, "message": "You are accessing an empty or invalid API. Please check again."}
REFRESH_REJECTED = {
    # Synthetic (spec §6.2): the real shape of a refused refresh is not documented.
    "error": -14014,
    "error_name": "Invalid refresh token",
    "error_reason": "refresh_token is invalid or expired",
    "ref_doc": "https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new",
    "error_description": "refresh_token is invalid or expired",
}


def zalo_error(code: int, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


@dataclass
class FakeUser:
    user_id: str
    last_interaction: float  # epoch seconds
    blocked: bool = False
    followed: bool = True


@dataclass(frozen=True)
class SentMessage:
    user_id: str
    text: str
    message_id: str
    access_token: str
    quote_message_id: str
    sent_at: float  # epoch seconds, the fake's clock


@dataclass(frozen=True)
class Fault:
    error: int | None = None
    message: str = ""
    http_status: int | None = None
    delay: float = 0.0


@dataclass
class Attempt:
    status: int | None  # None: no answer in time, or no connection
    latency: float  # seconds
    error: str = ""


@dataclass
class Delivery:
    event_name: str
    body: bytes
    headers: dict[str, str]
    msg_id: str = ""
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].status == 200

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


class ZaloHandler(FakeHandler):
    @property
    def fake(self) -> "ZaloServer":
        return cast("ZaloServer", self.server.fake)

    def route(self, request: RecordedRequest) -> None:
        fake = self.fake
        if request.method == "POST" and request.path == TOKEN_PATH:
            self.send_json(200, fake._token(request))
            return
        if request.method == "POST" and request.path == SEND_PATH:
            fault = fake._next_fault()
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.http_status is not None:
                    self.send(fault.http_status, b"<html><body>Service Unavailable</body></html>")
                    return
                if fault.error is not None:
                    self.send_json(200, zalo_error(fault.error, fault.message), fake._rate_headers())
                    return
            self.send_json(200, fake._send(request), fake._rate_headers())
            return
        if request.method == "POST" and request.path == V2_SEND_PATH:
            body = zalo_error(-240, "MessageV2 API has been shut down, please switch to MessageV3")
            self.send_json(200, body, fake._rate_headers())
            return
        self.send_json(200, NOT_FOUND)


class ZaloServer(FakeServer):
    handler_class = ZaloHandler

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self._state = threading.RLock()
        self._sent_changed = threading.Condition(self._state)
        self._http: httpx.Client | None = None
        self.configure(**config)

    # -- configuration and state ------------------------------------------------------

    def configure(
        self,
        *,
        app_id: str = "1234567890123456789",
        app_secret: str = "TestAppSecretKey0001",
        oa_id: str = "3886132808788086451",
        oa_secret_key: str = "TestOaSecretKey0001",
        access_ttl_s: int = 90000,
        refresh_ttl_s: int = 90 * 86400,
        rate_limit_per_min: int = 4000,
        text_limit: int = 2000,
        window_days: int = 7,
        refuse_unfollowed: bool = False,
        revoke_old_access_on_refresh: bool = False,
        ensure_ascii: bool = False,
        echo_oa_send: bool = False,
        webhook_url: str = "",
        webhook_timeout_s: float = 2.0,
        retry_schedule: tuple[float, ...] = (30, 300, 900, 1800, 3600),
    ) -> None:
        """Start over: this configuration, no users, nothing sent, a fresh token pair."""
        with self._state:
            self.app_id, self.app_secret, self.oa_id = app_id, app_secret, oa_id
            self.oa_secret_key = oa_secret_key
            self.access_ttl_s, self.refresh_ttl_s = access_ttl_s, refresh_ttl_s
            self.rate_limit_per_min, self.text_limit, self.window_days = (
                rate_limit_per_min,
                text_limit,
                window_days,
            )
            self.refuse_unfollowed = refuse_unfollowed
            self.revoke_old_access_on_refresh = revoke_old_access_on_refresh
            self.ensure_ascii, self.echo_oa_send = ensure_ascii, echo_oa_send
            self.webhook_url, self.webhook_timeout_s = webhook_url, webhook_timeout_s
            # Posts in-process instead (e.g. through Django's test client): (body, headers) -> status.
            self.poster: Callable[[bytes, dict[str, str]], int] | None = None
            self.retry_schedule = tuple(retry_schedule)
            self.subscription_disabled = False
            self.users: dict[str, FakeUser] = {}
            self.sent: list[SentMessage] = []
            self.deliveries: list[Delivery] = []
            self.refreshes = 0  # successful rotations
            self.refused_refreshes = 0
            self._faults: deque[Fault] = deque()
            self._offset = 0.0
            self._calls_this_minute: deque[float] = deque()
            self._access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
            self.refresh_token, self.access_token = "", ""
            self._refresh_expires_at = 0.0
            self.issue_tokens()

    def reset(self) -> None:
        super().reset()
        self.configure()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock (token expiry, the reply window) forward."""
        with self._state:
            self._offset += seconds

    def issue_tokens(self) -> tuple[str, str]:
        """A new current pair, as an OAuth consent would give; the old refresh token dies."""
        with self._state:
            self.access_token = f"AT-{secrets.token_urlsafe(24)}"
            self.refresh_token = f"RT-{secrets.token_urlsafe(24)}"
            self._access_tokens[self.access_token] = self.now() + self.access_ttl_s
            self._refresh_expires_at = self.now() + self.refresh_ttl_s
            return self.access_token, self.refresh_token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now expired (-220)."""
        with self._state:
            for token in self._access_tokens:
                self._access_tokens[token] = self.now() - 1

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far is unknown from now on (-216)."""
        with self._state:
            self._access_tokens.clear()

    def add_user(self, user_id: str, *, days_since_interaction: float = 0, blocked: bool = False) -> FakeUser:
        with self._state:
            user = FakeUser(user_id, self.now() - days_since_interaction * 86400, blocked=blocked)
            self.users[user_id] = user
            return user

    def fail_next_sends(
        self,
        *,
        error: int | None = None,
        message: str = "",
        http_status: int | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """The next `times` message/cs calls answer `error` (HTTP 200) or `http_status`, after `delay`."""
        with self._state:
            self._faults.extend(
                Fault(error, message or f"scripted error {error}", http_status, delay) for _ in range(times)
            )

    def sends_to(self, user_id: str) -> list[SentMessage]:
        with self._state:
            return [message for message in self.sent if message.user_id == user_id]

    def wait_for_sends(self, count: int, *, timeout: float) -> list[SentMessage]:
        """Block until at least `count` messages were sent; all sent so far."""
        with self._sent_changed:
            if not self._sent_changed.wait_for(lambda: len(self.sent) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.sent)} message(s) sent after {timeout}s; expected {count}")
            return list(self.sent)

    def token_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == TOKEN_PATH]

    def send_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == SEND_PATH]

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        super().stop()

    # -- the Open API ----------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        with self._state:
            remain = max(0, self.rate_limit_per_min - len(self._calls_this_minute))
        return {"X-RateLimit-Limit": str(self.rate_limit_per_min), "X-RateLimit-Remain": str(remain)}

    def _next_fault(self) -> Fault | None:
        with self._state:
            return self._faults.popleft() if self._faults else None

    def _send(self, request: RecordedRequest) -> dict[str, Any]:
        token = request.headers.get("access_token", "")
        with self._state:
            now = self.now()
            expires = self._access_tokens.get(token)
            if expires is None:
                return zalo_error(-216, "Access token is invalid")
            if expires <= now:
                return zalo_error(-220, "access_token is expired or removed")
            while self._calls_this_minute and self._calls_this_minute[0] <= now - 60:
                self._calls_this_minute.popleft()
            if len(self._calls_this_minute) >= self.rate_limit_per_min:
                return zalo_error(-32, "Your application reached limit call api")
            self._calls_this_minute.append(now)

            body = request.body if isinstance(request.body, dict) else {}
            recipient = body.get("recipient") if isinstance(body.get("recipient"), dict) else {}
            message = body.get("message") if isinstance(body.get("message"), dict) else {}
            user = self.users.get(str(recipient.get("user_id", "")))
            if user is None:
                return zalo_error(-201, "user_id is invalid")
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                return zalo_error(-201, "text is invalid")
            if len(unicodedata.normalize("NFC", text)) > self.text_limit:
                return zalo_error(-201, f"text length must not exceed {self.text_limit} characters")
            if user.blocked:
                return zalo_error(-217, "User has blocked invitation from OA")
            if self.refuse_unfollowed and not user.followed:
                return zalo_error(-213, "User has not followed OA")
            if now - user.last_interaction > self.window_days * 86400:
                return zalo_error(-230, "User has not interacted with the OA in the past 7 days")
            sent = SentMessage(
                user_id=user.user_id,
                text=text,
                message_id=secrets.token_hex(10),
                access_token=token,
                quote_message_id=str(message.get("quote_message_id") or ""),
                sent_at=now,
            )
            self.sent.append(sent)
            self._sent_changed.notify_all()
        if self.echo_oa_send and self.webhook_url:
            threading.Thread(target=self._echo, args=(sent,), daemon=True).start()
        return {
            "data": {"message_id": sent.message_id, "user_id": sent.user_id, "sent_time": _ms(sent.sent_at)},
            "error": 0,
            "message": "Success",
        }

    def _echo(self, sent: SentMessage) -> None:
        self.oa_sends(sent.user_id, sent.text, msg_id=sent.message_id)

    # -- OAuth v4 --------------------------------------------------------------------

    def _token(self, request: RecordedRequest) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {
                "error": -14001,
                "error_name": "Invalid request",
                "error_description": "form body required",
            }
        form = {name: values[0] for name, values in parse_qs(request.raw_body.decode()).items()}
        if request.headers.get("secret_key") != self.app_secret:
            return {"error": -14002, "error_name": "Invalid secret key", "error_description": "secret_key"}
        if form.get("app_id") != self.app_id:
            return {"error": -14001, "error_name": "Invalid app_id", "error_description": "app_id"}
        if form.get("grant_type") != "refresh_token":
            return {
                "error": -14009,
                "error_name": "Unsupported grant_type",
                "error_description": "grant_type",
            }
        with self._state:
            if form.get("refresh_token") != self.refresh_token or self.now() >= self._refresh_expires_at:
                self.refused_refreshes += 1
                return dict(REFRESH_REJECTED)
            old_access = self.access_token
            access, refresh = self.issue_tokens()
            if self.revoke_old_access_on_refresh:
                self._access_tokens.pop(old_access, None)
            self.refreshes += 1
        return {"access_token": access, "refresh_token": refresh, "expires_in": str(self.access_ttl_s)}

    # -- the webhook emitter ---------------------------------------------------------

    def user_sends_text(self, user_id: str, text: str, *, msg_id: str = "", deliver: bool = True) -> Delivery:
        msg_id = msg_id or secrets.token_hex(10)
        return self._user_event(user_id, "user_send_text", {"text": text, "msg_id": msg_id}, msg_id, deliver)

    def user_sends_image(self, user_id: str, *, caption: str = "", deliver: bool = True) -> Delivery:
        msg_id = secrets.token_hex(10)
        message: dict[str, Any] = {"text": caption} if caption else {}
        message |= {
            "msg_id": msg_id,
            "attachments": [
                {
                    "payload": {
                        "thumbnail": "https://photo-stal.zadn.vn/thumb.jpg",
                        "url": "https://photo-stal.zadn.vn/full.jpg",
                    },
                    "type": "image",
                }
            ],
        }
        return self._user_event(user_id, "user_send_image", message, msg_id, deliver)

    def user_sends_file(self, user_id: str, name: str = "hop-dong.pdf", *, deliver: bool = True) -> Delivery:
        msg_id = secrets.token_hex(10)
        message = {
            "msg_id": msg_id,
            "attachments": [
                {
                    "payload": {
                        "url": f"https://f1.zdn.vn/{name}",
                        "size": "102400",
                        "name": name,
                        "checksum": hashlib.md5(name.encode()).hexdigest(),
                        "type": name.rsplit(".", 1)[-1],
                    },
                    "type": "file",
                }
            ],
        }
        return self._user_event(user_id, "user_send_file", message, msg_id, deliver)

    def user_sends_sticker(self, user_id: str, *, deliver: bool = True) -> Delivery:
        msg_id = secrets.token_hex(10)
        message = {
            "msg_id": msg_id,
            "attachments": [
                {
                    "payload": {"id": "bfe458bf64fa8da4d4eb", "url": "https://zalo-api.zadn.vn/sticker.png"},
                    "type": "sticker",
                }
            ],
        }
        return self._user_event(user_id, "user_send_sticker", message, msg_id, deliver)

    def user_follows(self, user_id: str, *, deliver: bool = True) -> Delivery:
        return self._follow_event(user_id, "follow", deliver)

    def user_unfollows(self, user_id: str, *, deliver: bool = True) -> Delivery:
        return self._follow_event(user_id, "unfollow", deliver)

    def user_sees(self, user_id: str, msg_ids: list[str], *, deliver: bool = True) -> Delivery:
        body = self._body(
            {
                "app_id": self.app_id,
                "sender": {"id": self.oa_id},
                "recipient": {"id": user_id},
                "event_name": "user_seen_message",
                "message": {"msg_ids": msg_ids},
            }
        )
        return self._emit("user_seen_message", body, "", deliver)

    def user_receives(self, user_id: str, msg_id: str, *, deliver: bool = True) -> Delivery:
        body = self._body(
            {
                "app_id": self.app_id,
                "sender": {"id": self.oa_id},
                "recipient": {"id": user_id},
                "event_name": "user_received_message",
                "message": {"msg_id": msg_id},
            }
        )
        return self._emit("user_received_message", body, msg_id, deliver)

    def admin_replies(
        self, user_id: str, text: str, *, admin_id: str = "7301", deliver: bool = True
    ) -> Delivery:
        """A person answering from Zalo's own OA chat tool: an oa_send_text echo with sender.admin_id."""
        return self.oa_sends(user_id, text, admin_id=admin_id, deliver=deliver)

    def oa_sends(
        self, user_id: str, text: str, *, msg_id: str = "", admin_id: str = "", deliver: bool = True
    ) -> Delivery:
        """The oa_send_text echo of a message the OA sent (through the API unless `admin_id`)."""
        msg_id = msg_id or secrets.token_hex(10)
        sender = {"id": self.oa_id, "admin_id": admin_id} if admin_id else {"id": self.oa_id}
        body = self._body(
            {
                "app_id": self.app_id,
                "sender": sender,
                "user_id_by_app": _by_app(user_id),
                "recipient": {"id": user_id},
                "event_name": "oa_send_text",
                "message": {"text": text, "msg_id": msg_id},
            }
        )
        return self._emit("oa_send_text", body, msg_id, deliver)

    def signed_headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(json.loads(body)["timestamp"])
        mac = hashlib.sha256(self.app_id.encode() + body + timestamp.encode() + self.oa_secret_key.encode())
        return {"Content-Type": "application/json", "X-ZEvent-Signature": f"mac={mac.hexdigest()}"}

    def deliver(self, body: bytes, *, msg_id: str = "", retries: bool = True) -> Delivery:
        """POST a body to `webhook_url` as Zalo would, retrying per `retry_schedule` when `retries`."""
        delivery = Delivery(json.loads(body)["event_name"], body, self.signed_headers(body), msg_id)
        with self._state:
            self.deliveries.append(delivery)
            if self.subscription_disabled:
                return delivery  # Zalo sends nothing more until an admin re-enables the webhook
        if self._attempt(delivery, 0) or not retries:
            return delivery
        for number, wait in enumerate(self.retry_schedule, start=1):
            time.sleep(wait)
            if self._attempt(delivery, number):
                return delivery
        with self._state:
            self.subscription_disabled = True
        return delivery

    def redeliver(self, delivery: Delivery) -> Delivery:
        """One more attempt of the same body and signature, as a Zalo retry (header num_retry)."""
        self._attempt(delivery, len(delivery.attempts))
        return delivery

    def _attempt(self, delivery: Delivery, number: int) -> bool:
        if not self.webhook_url and self.poster is None:
            raise RuntimeError("set webhook_url (or poster) before delivering events")
        headers = dict(delivery.headers)
        if number:
            headers["num_retry"] = str(number)
        started = time.perf_counter()
        if self.poster is not None:
            status = self.poster(delivery.body, headers)
            delivery.attempts.append(Attempt(status, time.perf_counter() - started))
            return status == 200
        try:
            response = self._client().post(
                self.webhook_url, content=delivery.body, headers=headers, timeout=self.webhook_timeout_s
            )
        except httpx.HTTPError as error:
            delivery.attempts.append(Attempt(None, time.perf_counter() - started, type(error).__name__))
            return False
        delivery.attempts.append(Attempt(response.status_code, time.perf_counter() - started))
        return response.status_code == 200

    def _client(self) -> httpx.Client:
        with self._state:
            if self._http is None:
                self._http = httpx.Client(trust_env=False)  # loopback only, never a proxy
            return self._http

    def _user_event(self, user_id: str, name: str, message: dict, msg_id: str, deliver: bool) -> Delivery:
        self._interacted(user_id)
        body = self._body(
            {
                "app_id": self.app_id,
                "sender": {"id": user_id},
                "user_id_by_app": _by_app(user_id),
                "recipient": {"id": self.oa_id},
                "event_name": name,
                "message": message,
            }
        )
        return self._emit(name, body, msg_id, deliver)

    def _follow_event(self, user_id: str, name: str, deliver: bool) -> Delivery:
        self._interacted(user_id)
        with self._state:
            self.users[user_id].followed = name == "follow"
        body = self._body(
            {
                "oa_id": self.oa_id,
                "follower": {"id": user_id},
                "user_id_by_app": _by_app(user_id),
                "event_name": name,
                "source": "oa_profile",
                "app_id": self.app_id,
            }
        )
        return self._emit(name, body, "", deliver)

    def _interacted(self, user_id: str) -> None:
        with self._state:
            user = self.users.get(user_id)
            if user is None:
                self.users[user_id] = FakeUser(user_id, self.now())
            else:
                user.last_interaction = self.now()

    def _body(self, fields: dict[str, Any]) -> bytes:
        # The timestamp is the body's last key, a string of epoch milliseconds.
        event = {**fields, "timestamp": _ms(self.now())}
        return json.dumps(event, separators=(",", ":"), ensure_ascii=self.ensure_ascii).encode()

    def _emit(self, name: str, body: bytes, msg_id: str, deliver: bool) -> Delivery:
        if deliver:
            return self.deliver(body, msg_id=msg_id)
        return Delivery(name, body, self.signed_headers(body), msg_id)


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def _by_app(user_id: str) -> str:
    """A stable app-scoped id for a user id, as Zalo's user_id_by_app."""
    return str(int(hashlib.sha256(user_id.encode()).hexdigest()[:15], 16))
