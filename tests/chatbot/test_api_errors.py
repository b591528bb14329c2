"""REST API errors: always JSON {"error": {"code", "message"}}, a stable code, nothing stored by mistake."""

import json

import pytest

from chatbot.api_keys import api_key_create, api_key_revoke
from chatbot.models import Bot
from conversations.models import Message
from conversations.services import message_add_reply, message_receive
from tests.knowledge.helpers import make_knowledge_base

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_redis")]


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(name="Shop", slug="shop", knowledge_base=make_knowledge_base("Shop"))


@pytest.fixture
def token(bot) -> str:
    return api_key_create(bot=bot, name="backend")[1]


def send(client, path: str, body, *, token: str | None, content_type: str = "application/json", **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type, headers=headers)


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["message"]
    return body["error"]


def an_exchange(bot: Bot, *, user: str = "customer-1") -> tuple[Message, Message]:
    received = message_receive(channel="api", bot_id=bot.pk, external_user_id=user, text="Mấy giờ mở cửa?")
    reply = message_add_reply(
        conversation=received.conversation,
        in_reply_to=received.message,
        text="8 giờ sáng.",
        outcome="answered",
    )
    return received.message, reply


QUESTION = {"user_id": "customer-1", "text": "Mấy giờ mở cửa?"}


def test_a_request_without_a_key_is_401_invalid_api_key_with_a_bearer_challenge(client):
    response = send(client, "/api/v1/messages", QUESTION, token=None)

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer sk_bot_0123456789abcdef_not-the-secret",
        "Bearer nonsense",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer sk_bot_é",
    ],
)
def test_an_unknown_or_malformed_key_is_401_invalid_api_key(client, authorization):
    response = client.post(
        "/api/v1/messages",
        data=json.dumps(QUESTION),
        content_type="application/json",
        headers={"Authorization": authorization},
    )

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert not Message.objects.exists()


def test_a_revoked_key_is_401(client, bot):
    api_key, token = api_key_create(bot=bot, name="old backend")
    api_key_revoke(api_key=api_key)

    response = send(client, "/api/v1/messages", QUESTION, token=token)

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_malformed_json_is_400_invalid_json(client, token):
    response = send(client, "/api/v1/messages", '{"user_id": "c1", "text": ', token=token)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert not Message.objects.exists()


def test_a_body_over_the_limit_is_413_before_the_key_is_even_looked_at(client, settings):
    settings.API_MAX_BODY_BYTES = 64 * 1024
    body = {"user_id": "c1", "text": "x" * (65 * 1024)}

    response = send(client, "/api/v1/messages", body, token=None)

    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"
    assert not Message.objects.exists()


def test_the_body_limit_is_read_from_content_length_without_reading_the_body(client, token, settings):
    settings.API_MAX_BODY_BYTES = 64 * 1024

    response = client.generic(
        "POST",
        "/api/v1/messages",
        json.dumps(QUESTION),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
        CONTENT_LENGTH=str(50 * 1024 * 1024),
    )

    assert response.status_code == 413
    assert "52428800 bytes" in error_of(response)["message"]


def test_a_body_that_is_not_json_is_415_unsupported_media_type(client, token):
    response = send(client, "/api/v1/messages", "hello", token=token, content_type="text/plain")

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_missing_and_wrong_fields_are_400_invalid_request_with_details_per_field(client, token):
    response = send(client, "/api/v1/messages", {"text": "hi", "language": "fr"}, token=token)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["fields"]["user_id"][0]["code"] == "required"
    assert error["fields"]["language"][0]["code"] == "invalid_choice"


def test_a_body_that_is_not_an_object_is_400_invalid_request(client, token):
    response = send(client, "/api/v1/messages", ["not", "an", "object"], token=token)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_request"


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_an_empty_message_is_400_empty_message_and_nothing_is_stored(client, token, text):
    response = send(client, "/api/v1/messages", {"user_id": "c1", "text": text}, token=token)

    assert response.status_code == 400
    assert error_of(response)["code"] == "empty_message"
    assert not Message.objects.exists()


@pytest.mark.parametrize("length", [4001, 20_000])
def test_a_message_over_4000_characters_is_400_message_too_long_and_nothing_is_stored(client, token, length):
    response = send(client, "/api/v1/messages", {"user_id": "c1", "text": "a" * length}, token=token)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "message_too_long"
    assert str(length) in error["message"]
    assert not Message.objects.exists()


def test_a_user_id_over_200_characters_is_400(client, token):
    response = send(client, "/api/v1/messages", {"user_id": "u" * 201, "text": "hi"}, token=token)

    assert response.status_code == 400
    assert error_of(response)["fields"]["user_id"][0]["code"] == "max_length"


def test_a_wrong_method_is_405_method_not_allowed(client, token):
    response = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_path_under_api_is_a_json_404(client, method):
    response = getattr(client, method)("/api/v1/nothing-here")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unknown_conversation_is_404_not_found(client, token):
    response = client.get("/api/v1/conversations/999999", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_another_bots_conversation_and_message_are_404_as_if_they_did_not_exist(client, bot, token):
    other = Bot.objects.create(name="Other", slug="other", knowledge_base=bot.knowledge_base)
    _, reply = an_exchange(other)
    auth = {"Authorization": f"Bearer {token}"}

    read = client.get(f"/api/v1/conversations/{reply.conversation_id}", headers=auth)
    rate = send(client, f"/api/v1/messages/{reply.pk}/feedback", {"feedback": "down"}, token=token)

    assert read.status_code == 404 and error_of(read)["code"] == "not_found"
    assert rate.status_code == 404 and error_of(rate)["code"] == "not_found"
    reply.refresh_from_db()
    assert reply.feedback == ""


def test_the_key_of_another_bot_is_403_wrong_bot_on_that_bots_routes(client, bot, token):
    Bot.objects.create(name="Other", slug="other", knowledge_base=bot.knowledge_base)

    response = send(client, "/api/v1/bots/other/messages", QUESTION, token=token)

    assert response.status_code == 403
    assert error_of(response)["code"] == "wrong_bot"
    assert not Message.objects.exists()


def test_an_unknown_bot_slug_is_404_bot_not_found(client, token):
    response = client.get(
        "/api/v1/bots/no-such-bot/conversations/1", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 404
    assert error_of(response)["code"] == "bot_not_found"


def test_the_keys_own_bot_slug_is_accepted(client, bot, token):
    _, reply = an_exchange(bot)

    response = client.get(
        f"/api/v1/bots/shop/conversations/{reply.conversation_id}",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200
    assert response.json()["id"] == reply.conversation_id


def test_a_switched_off_bot_is_403_bot_inactive(client, bot, token):
    Bot.objects.filter(pk=bot.pk).update(is_active=False)

    response = send(client, "/api/v1/messages", QUESTION, token=token)

    assert response.status_code == 403
    assert error_of(response)["code"] == "bot_inactive"
    assert not Message.objects.exists()


def test_feedback_on_a_customer_message_is_400_feedback_not_allowed(client, bot, token):
    question, _ = an_exchange(bot)

    response = send(client, f"/api/v1/messages/{question.pk}/feedback", {"feedback": "up"}, token=token)

    assert response.status_code == 400
    assert error_of(response)["code"] == "feedback_not_allowed"


def test_feedback_other_than_up_or_down_is_400_invalid_request(client, bot, token):
    _, reply = an_exchange(bot)

    response = send(client, f"/api/v1/messages/{reply.pk}/feedback", {"feedback": "meh"}, token=token)

    assert response.status_code == 400
    assert error_of(response)["fields"]["feedback"][0]["code"] == "invalid_choice"


def test_errors_are_json_even_when_the_client_asked_for_an_event_stream(client):
    response = send(
        client, "/api/v1/messages", {**QUESTION, "stream": True}, token=None, Accept="text/event-stream"
    )

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


def test_asking_for_a_format_the_api_does_not_speak_is_406_in_json(client, token):
    response = client.get(
        "/api/v1/conversations/1", headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    )

    assert response.status_code == 406
    assert error_of(response)["code"] == "not_acceptable"


def test_an_unexpected_failure_is_a_logged_json_500_not_an_html_page(client, token, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("chatbot.api.views.conversation_get_for_bot", broken)

    response = client.get("/api/v1/conversations/1", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error"
    assert "fire" not in error["message"]  # internals stay in the log
    assert "database on fire" in caplog.text
