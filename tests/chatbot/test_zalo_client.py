"""The Zalo client against the loopback Zalo: the body decides, even when the status is 200."""

import json

import pytest

from chatbot.zalo import client
from chatbot.zalo.client import (
    ZaloAuthError,
    ZaloBadRequest,
    ZaloConfigError,
    ZaloOutsideWindow,
    ZaloPermanent,
    ZaloRateLimited,
    ZaloRecipientError,
    ZaloRefreshRevoked,
    ZaloTransient,
)
from knowledge.embedding.errors import PermanentError, TransientError

USER = "2468458835296197922"


def send(server, text: str = "Xin chào bạn", user: str = USER, token: str | None = None) -> str:
    return client.send_text(access_token=token or server.access_token, user_id=user, text=text)


def test_a_text_is_sent_with_the_bare_access_token_header_and_its_message_id_comes_back(zalo_server):
    zalo_server.add_user(USER)

    message_id = send(zalo_server, "Cửa hàng mở cửa lúc 8 giờ.")

    request = zalo_server.send_requests()[0]
    assert request.headers["access_token"] == zalo_server.access_token
    assert "authorization" not in request.headers
    assert request.body == {"recipient": {"user_id": USER}, "message": {"text": "Cửa hàng mở cửa lúc 8 giờ."}}
    assert message_id == zalo_server.sent[0].message_id and len(message_id) == 20


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (-216, ZaloAuthError),
        (-220, ZaloAuthError),
        (-32, ZaloRateLimited),
        (-200, ZaloTransient),
        (-230, ZaloOutsideWindow),
        (-232, ZaloOutsideWindow),
        (-213, ZaloRecipientError),
        (-217, ZaloRecipientError),
        (-227, ZaloRecipientError),
        (-201, ZaloBadRequest),
        (-248, ZaloBadRequest),
        (-209, ZaloConfigError),
        (-223, ZaloConfigError),
        (-999, ZaloPermanent),
    ],
)
def test_a_negative_code_in_an_http_200_body_raises_its_error_class(zalo_server, code, kind):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(error=code, message="from the fake")

    with pytest.raises(kind) as raised:
        send(zalo_server)

    assert raised.value.code == code
    assert "from the fake" in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [(ZaloAuthError, True), (ZaloRateLimited, True), (ZaloTransient, True), (ZaloOutsideWindow, False),
     (ZaloRecipientError, False), (ZaloBadRequest, False), (ZaloConfigError, False),
     (ZaloRefreshRevoked, False)],
)  # fmt: skip
def test_errors_sit_in_the_shared_transient_or_permanent_families(kind, retryable):
    assert issubclass(kind, TransientError) is retryable
    assert issubclass(kind, PermanentError) is not retryable


def test_the_fake_refuses_an_unknown_token_with_216_and_an_expired_one_with_220(zalo_server):
    zalo_server.add_user(USER)

    with pytest.raises(ZaloAuthError) as unknown:
        send(zalo_server, token="not-a-token")
    zalo_server.expire_access_tokens()
    with pytest.raises(ZaloAuthError) as expired:
        send(zalo_server)

    assert (unknown.value.code, expired.value.code) == (-216, -220)


def test_a_user_silent_for_more_than_seven_days_is_outside_the_reply_window(zalo_server):
    zalo_server.add_user(USER, days_since_interaction=8)

    with pytest.raises(ZaloOutsideWindow) as raised:
        send(zalo_server)

    assert raised.value.code == -230
    assert zalo_server.sent == []


def test_a_text_over_2000_characters_is_refused_with_201(zalo_server):
    zalo_server.add_user(USER)

    with pytest.raises(ZaloBadRequest) as raised:
        send(zalo_server, "a" * 2001)

    assert raised.value.code == -201


def test_2000_characters_written_decomposed_count_as_2000_after_nfc(zalo_server):
    zalo_server.add_user(USER)
    decomposed = "e\u0302\u0323" * 2000  # "ệ" as three code points

    send(zalo_server, decomposed)

    assert len(zalo_server.sent) == 1


def test_an_http_5xx_is_transient(zalo_server):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(http_status=502)

    with pytest.raises(ZaloTransient) as raised:
        send(zalo_server)

    assert raised.value.code == 502


def test_a_slow_answer_is_a_transient_timeout(zalo_server, monkeypatch):
    zalo_server.add_user(USER)
    monkeypatch.setattr(client, "TIMEOUT", client.httpx.Timeout(0.2))
    client.reset_clients()
    zalo_server.fail_next_sends(delay=0.6)

    with pytest.raises(ZaloTransient, match="did not answer in time"):
        send(zalo_server)


def test_a_body_that_is_not_zalos_json_is_transient(zalo_server):
    zalo_server.respond_next(200, b"<html>proxy error</html>", headers={"Content-Type": "text/html"})

    with pytest.raises(ZaloTransient, match="not a JSON object"):
        send(zalo_server)


def test_the_refresh_posts_a_form_with_the_app_secret_header_and_returns_the_rotated_pair(zalo_server):
    old_refresh = zalo_server.refresh_token

    pair = client.refresh_access_token(
        app_id=zalo_server.app_id, app_secret=zalo_server.app_secret, refresh_token=old_refresh
    )

    request = zalo_server.token_requests()[0]
    assert request.headers["secret_key"] == zalo_server.app_secret
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.raw_body.decode().count("grant_type=refresh_token") == 1
    assert (pair.access_token, pair.refresh_token) == (zalo_server.access_token, zalo_server.refresh_token)
    assert pair.refresh_token != old_refresh
    assert pair.expires_in == 90000  # Zalo's "90000" string, as seconds


def test_a_refresh_token_used_twice_is_refused_as_revoked(zalo_server):
    first = zalo_server.refresh_token
    client.refresh_access_token(
        app_id=zalo_server.app_id, app_secret=zalo_server.app_secret, refresh_token=first
    )

    with pytest.raises(ZaloRefreshRevoked) as raised:
        client.refresh_access_token(
            app_id=zalo_server.app_id, app_secret=zalo_server.app_secret, refresh_token=first
        )

    assert raised.value.code == -14014
    assert zalo_server.refreshes == 1 and zalo_server.refused_refreshes == 1


def test_a_refresh_answered_without_tokens_is_a_refusal(zalo_server):
    zalo_server.respond_next(200, json.dumps({"error_description": "invalid"}).encode())

    with pytest.raises(ZaloRefreshRevoked, match="invalid"):
        client.refresh_access_token(
            app_id=zalo_server.app_id,
            app_secret=zalo_server.app_secret,
            refresh_token=zalo_server.refresh_token,
        )


def test_a_refresh_that_fails_with_a_5xx_is_transient_and_leaves_the_refresh_token_usable(zalo_server):
    zalo_server.respond_next(503, b"busy")

    with pytest.raises(ZaloTransient):
        client.refresh_access_token(
            app_id=zalo_server.app_id,
            app_secret=zalo_server.app_secret,
            refresh_token=zalo_server.refresh_token,
        )
    client.refresh_access_token(
        app_id=zalo_server.app_id, app_secret=zalo_server.app_secret, refresh_token=zalo_server.refresh_token
    )

    assert zalo_server.refreshes == 1
