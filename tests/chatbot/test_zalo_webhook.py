"""The webhook: verify the signature over the raw body, store the event once, enqueue after the commit."""

import hashlib
import hmac
import json

import pytest

from chatbot.models import ZaloEvent
from tests.fakes.zalo_server import Delivery

pytestmark = pytest.mark.django_db

URL = "/webhooks/zalo/sao-mai/"
USER = "2468458835296197922"


def post(client, body: bytes, headers: dict[str, str] | None = None, url: str = URL):
    return client.post(url, data=body, content_type="application/json", headers=headers or {})


def post_delivery(client, delivery: Delivery, **extra_headers):
    headers = {name: value for name, value in delivery.headers.items() if name != "Content-Type"}
    return post(client, delivery.body, {**headers, **extra_headers})


def test_a_signed_event_is_stored_pending_and_queued_after_the_commit(
    client, zalo_server, zalo_bot, django_capture_on_commit_callbacks
):
    delivery = zalo_server.user_sends_text(USER, "Cửa hàng mở cửa lúc mấy giờ?", deliver=False)

    with django_capture_on_commit_callbacks() as queued:
        response = post_delivery(client, delivery)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "duplicate": False}
    event = ZaloEvent.objects.get()
    assert (event.event_key, event.event_name, event.sender_id) == (delivery.msg_id, "user_send_text", USER)
    assert event.status == ZaloEvent.Status.PENDING and event.deliveries == 1
    assert event.payload["message"]["text"] == "Cửa hàng mở cửa lúc mấy giờ?"
    assert len(queued) == 1


def test_a_body_with_escaped_unicode_is_verified_over_its_own_bytes(client, zalo_server, zalo_bot):
    zalo_server.ensure_ascii = True
    delivery = zalo_server.user_sends_text(USER, "Xin chào", deliver=False)

    response = post_delivery(client, delivery)

    assert b"\\u00e0" in delivery.body
    assert response.status_code == 200
    assert ZaloEvent.objects.get().payload["message"]["text"] == "Xin chào"


def forgeries(server, delivery: Delivery) -> dict[str, tuple[bytes, dict[str, str]]]:
    timestamp = delivery.payload["timestamp"].encode()
    with_app_secret = hashlib.sha256(
        server.app_id.encode() + delivery.body + timestamp + server.app_secret.encode()
    ).hexdigest()
    hmac_of_body = hmac.new(server.oa_secret_key.encode(), delivery.body, hashlib.sha256).hexdigest()
    signature = delivery.headers["X-ZEvent-Signature"]
    return {
        "hmac of the body": (delivery.body, {"X-ZEvent-Signature": f"mac={hmac_of_body}"}),
        "signed with the app secret": (delivery.body, {"X-ZEvent-Signature": f"mac={with_app_secret}"}),
        "tampered body": (delivery.body.replace(b"gio", b"GIO"), {"X-ZEvent-Signature": signature}),
        "no signature": (delivery.body, {}),
        "mac header instead": (delivery.body, {"mac": signature.removeprefix("mac=")}),
    }


@pytest.mark.parametrize(
    "forgery",
    ["hmac of the body", "signed with the app secret", "tampered body", "no signature", "mac header instead"],
)
def test_a_forged_event_is_refused_with_401_and_nothing_is_stored_or_queued(
    client, zalo_server, zalo_bot, django_capture_on_commit_callbacks, forgery
):
    delivery = zalo_server.user_sends_text(USER, "gio mo cua", deliver=False)
    body, headers = forgeries(zalo_server, delivery)[forgery]

    with django_capture_on_commit_callbacks() as queued:
        response = post(client, body, headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert ZaloEvent.objects.count() == 0
    assert queued == []


def test_an_event_of_another_app_is_refused_with_403_even_when_signed_by_that_app(
    client, zalo_server, zalo_bot
):
    zalo_server.app_id, zalo_server.oa_secret_key = "999999999", "TheOtherAppsOaSecret"
    delivery = zalo_server.user_sends_text(USER, "hello", deliver=False)

    response = post_delivery(client, delivery)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_app"
    assert ZaloEvent.objects.count() == 0


def test_a_redelivery_is_counted_on_the_same_row_and_queued_again_while_still_pending(
    client, zalo_server, zalo_bot, django_capture_on_commit_callbacks
):
    delivery = zalo_server.user_sends_text(USER, "gio mo cua", deliver=False)
    post_delivery(client, delivery)

    with django_capture_on_commit_callbacks() as queued:
        response = post_delivery(client, delivery, num_retry="1")

    assert response.json() == {"ok": True, "duplicate": True}
    event = ZaloEvent.objects.get()
    assert event.deliveries == 2
    assert len(queued) == 1  # not processed yet (the first enqueue may have been lost)


def test_a_redelivery_of_a_processed_event_is_acknowledged_and_not_queued(
    client, zalo_server, zalo_bot, django_capture_on_commit_callbacks
):
    delivery = zalo_server.user_sends_text(USER, "gio mo cua", deliver=False)
    post_delivery(client, delivery)
    ZaloEvent.objects.update(status=ZaloEvent.Status.PROCESSED)

    with django_capture_on_commit_callbacks() as queued:
        response = post_delivery(client, delivery, num_retry="5")

    assert response.status_code == 200
    assert ZaloEvent.objects.get().deliveries == 2
    assert queued == []


def test_events_without_a_msg_id_are_recognised_by_their_body(client, zalo_server, zalo_bot):
    follow = zalo_server.user_follows(USER, deliver=False)
    post_delivery(client, follow)
    post_delivery(client, follow, num_retry="1")

    event = ZaloEvent.objects.get()
    assert event.event_key == f"body:{hashlib.sha256(follow.body).hexdigest()}"
    assert (event.event_name, event.sender_id, event.deliveries) == ("follow", USER, 2)


def test_the_echo_and_the_delivery_receipt_of_one_message_are_two_events(client, zalo_server, zalo_bot):
    echo = zalo_server.admin_replies(USER, "Chào bạn", deliver=False)
    receipt = zalo_server.user_receives(USER, echo.msg_id, deliver=False)

    post_delivery(client, echo)
    post_delivery(client, receipt)

    assert sorted(ZaloEvent.objects.values_list("event_key", flat=True)) == sorted(
        [f"oa_send_text:{echo.msg_id}", f"user_received_message:{echo.msg_id}"]
    )
    assert set(ZaloEvent.objects.values_list("sender_id", flat=True)) == {USER}


def signed(server, payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {"X-ZEvent-Signature": server.signed_headers(body)["X-ZEvent-Signature"]}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_event"),
        (b'{"app_id": "1234567890123456789", "timestamp": "1"}', "invalid_event"),
        (b'{"app_id": "1234567890123456789", "event_name": "follow"}', "invalid_event"),
    ],
)
def test_a_body_that_is_not_an_event_is_refused_with_400(client, zalo_server, zalo_bot, body, code):
    response = post(client, body, {"X-ZEvent-Signature": "mac=00"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert ZaloEvent.objects.count() == 0


def test_a_signed_event_with_an_absurd_user_id_is_refused_with_400(client, zalo_server, zalo_bot):
    body, headers = signed(
        zalo_server,
        {
            "app_id": zalo_server.app_id,
            "sender": {"id": "9" * 41},
            "event_name": "user_send_text",
            "timestamp": "1",
        },
    )

    response = post(client, body, headers)

    assert response.status_code == 400
    assert ZaloEvent.objects.count() == 0


def test_a_signed_event_jsonb_cannot_hold_is_refused_with_400(client, zalo_server, zalo_bot):
    body, headers = signed(
        zalo_server,
        {
            "app_id": zalo_server.app_id,
            "sender": {"id": USER},
            "event_name": "user_send_text",
            "message": {"text": "nul \u0000", "msg_id": "abc"},
            "timestamp": "1",
        },
    )

    response = post(client, body, headers)

    assert response.status_code == 400
    assert ZaloEvent.objects.count() == 0


def test_a_body_over_64_kb_is_refused_with_413_before_it_is_read(client, zalo_server, zalo_bot):
    response = post(client, b'{"pad": "' + b"x" * (64 * 1024) + b'"}', {"X-ZEvent-Signature": "mac=00"})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_bot_without_a_zalo_account_is_not_found(client, zalo_server, zalo_bot):
    delivery = zalo_server.user_sends_text(USER, "hello", deliver=False)

    headers = {"X-ZEvent-Signature": delivery.headers["X-ZEvent-Signature"]}

    response = post(client, delivery.body, headers, url="/webhooks/zalo/no-such-bot/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "bot_not_found"


def test_only_post_is_allowed(client, zalo_server, zalo_bot):
    response = client.get(URL)

    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_zalo_retries_a_delivery_that_failed_and_the_retry_is_stored_once(client, zalo_server, zalo_bot):
    statuses = iter([503])  # the first attempt meets a proxy error, the retry reaches us

    def post(body: bytes, headers: dict[str, str]) -> int:
        status = next(statuses, None)
        if status is not None:
            return status
        headers = {name: value for name, value in headers.items() if name != "Content-Type"}
        return post_delivery(client, Delivery("", body, headers)).status_code

    zalo_server.poster = post
    zalo_server.retry_schedule = (0.01, 0.01)

    delivery = zalo_server.user_sends_text(USER, "gio mo cua")

    assert [attempt.status for attempt in delivery.attempts] == [503, 200]
    event = ZaloEvent.objects.get()
    assert event.deliveries == 1 and event.event_key == delivery.msg_id


def test_a_webhook_down_through_every_retry_gets_the_app_unsubscribed_at_the_fake(zalo_server, zalo_bot):
    zalo_server.poster = lambda body, headers: 500
    zalo_server.retry_schedule = (0.01, 0.01, 0.01)

    delivery = zalo_server.user_sends_text(USER, "gio mo cua")
    later = zalo_server.user_sends_text(USER, "alo")

    assert len(delivery.attempts) == 4 and not delivery.acked
    assert zalo_server.subscription_disabled and later.attempts == []
