"""The REST API end to end: real pipeline, database, Redis, retrieval and embedder; LLMs offline or faked."""

import json

import pytest
import requests

from chatbot.api_keys import api_key_create
from chatbot.models import Bot
from conversations.models import Contact, Conversation, Message
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_redis")]

SHOP_INFO = (
    "# Giờ mở cửa\n\nCửa hàng Sao Mai mở cửa từ 8 giờ sáng đến 10 giờ tối mỗi ngày, kể cả Chủ nhật.\n\n"
    "# Opening hours\n\nThe Sao Mai shop opens from 8 am to 10 pm every day, Sundays included.\n\n"
    "# Giao hàng\n\nPhí giao hàng nội thành là 20.000 đồng. Đơn từ 500.000 đồng được miễn phí giao hàng."
)
QUESTION = "Cửa hàng mở cửa lúc mấy giờ?"
MESSAGE_FIELDS = {
    "id", "role", "text", "language", "outcome", "citations", "provider", "model", "cache_hit",
    "latency_ms", "input_tokens", "output_tokens", "cached_tokens", "feedback", "created_at",
}  # fmt: skip


@pytest.fixture
def bot() -> Bot:
    knowledge_base = make_knowledge_base("Sao Mai")
    ingest(paste(knowledge_base, SHOP_INFO, title="Store hours"))
    return Bot.objects.create(name="Sao Mai assistant", slug="sao-mai", knowledge_base=knowledge_base)


@pytest.fixture
def token(bot) -> str:
    return api_key_create(bot=bot, name="shop backend")[1]


def post_message(client, token: str, **body):
    body.setdefault("user_id", "customer-1")
    return client.post(
        "/api/v1/messages",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def parse_events(raw: bytes) -> list[tuple[str, dict]]:
    """Server-sent events, strictly: every event is `event:` then `data:`, ended by a blank line."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events = []
    for block in text[:-2].split("\n\n"):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return events


def test_a_message_gets_the_bots_answer_with_citations_and_the_stored_ids(client, bot, token):
    response = post_message(client, token, text=QUESTION, display_name="Lan", language="vi")

    assert response.status_code == 200
    body = response.json()
    reply = body["message"]
    assert set(reply) == MESSAGE_FIELDS
    assert reply["role"] == "assistant" and reply["outcome"] == "extractive"
    assert "8 giờ sáng đến 10 giờ tối" in reply["text"]
    assert reply["citations"][0]["document_title"] == "Store hours"
    assert reply["provider"] == "extractive" and reply["cache_hit"] is False
    assert body["status"] == "bot"
    stored = Message.objects.get(pk=reply["id"])
    assert stored.conversation_id == body["conversation_id"]
    assert stored.in_reply_to_id == body["question_id"]
    conversation = Conversation.objects.get(pk=body["conversation_id"])
    assert conversation.bot_id == bot.pk and conversation.channel == "api"
    assert Contact.objects.get(external_id="customer-1", channel="api").display_name == "Lan"


def test_sending_the_same_message_id_again_returns_the_same_answer_and_stores_nothing_twice(client, token):
    first = post_message(client, token, text=QUESTION, message_id="order-page-77")
    again = post_message(client, token, text=QUESTION, message_id="order-page-77")

    assert first.status_code == again.status_code == 200
    assert again.json()["message"]["id"] == first.json()["message"]["id"]
    assert again.json()["question_id"] == first.json()["question_id"]
    assert Message.objects.count() == 2


def test_the_same_question_from_another_customer_is_answered_from_the_cache(client, token, gemini_server):
    first = post_message(client, token, text="Phí giao hàng nội thành bao nhiêu?").json()["message"]
    second = post_message(client, token, text="phi giao hang noi thanh bao nhieu", user_id="customer-2")

    assert second.status_code == 200
    cached = second.json()["message"]
    assert first["provider"] == "gemini" and first["cache_hit"] is False
    assert cached["cache_hit"] is True and cached["outcome"] == "cached"
    assert cached["text"] == first["text"] and cached["id"] != first["id"]
    assert len(gemini_server.chat_requests()) == 1


def test_when_a_person_handles_the_conversation_the_message_is_stored_and_the_answer_is_202(client, token):
    handed = post_message(client, token, text="Cho mình gặp nhân viên tư vấn với")
    waiting = post_message(client, token, text=QUESTION)

    assert handed.status_code == 200
    assert handed.json()["message"]["outcome"] == "handoff"
    assert handed.json()["status"] == "waiting_for_human"
    assert waiting.status_code == 202
    body = waiting.json()
    assert body["message"] is None and body["status"] == "waiting_for_human"
    assert Message.objects.get(pk=body["question_id"]).text == QUESTION  # kept for the person

    Conversation.objects.filter(pk=body["conversation_id"]).update(status=Conversation.Status.HUMAN)
    assert post_message(client, token, text="Alo?").json()["status"] == "human"


def test_the_answer_streams_as_delta_events_then_one_done_event_with_the_blocking_body(
    client, bot, token, gemini_server
):
    gemini_server.script_reply("Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối [1].", pieces=4)

    response = post_message(client, token, text=QUESTION, stream=True)

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    events = parse_events(b"".join(response.streaming_content))
    names = [name for name, _ in events]
    assert names == ["delta"] * 4 + ["done"]
    done = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == done["message"]["text"]
    assert done["message"]["outcome"] == "answered" and done["message"]["provider"] == "gemini"
    assert set(done) == {"conversation_id", "question_id", "message", "status"}
    assert Message.objects.get(pk=done["message"]["id"]).text == done["message"]["text"]


def test_accept_text_event_stream_also_streams(client, token):
    response = client.post(
        "/api/v1/messages",
        data=json.dumps({"user_id": "customer-1", "text": QUESTION}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
    )

    assert response["Content-Type"] == "text/event-stream"
    events = parse_events(b"".join(response.streaming_content))
    assert events[-1][0] == "done"
    assert "8 giờ sáng" in events[-1][1]["message"]["text"]


def test_a_stream_to_a_conversation_a_person_handles_is_202_with_only_a_done_event(client, token):
    post_message(client, token, text="Cho mình gặp nhân viên tư vấn với")

    response = post_message(client, token, text=QUESTION, stream=True)

    assert response.status_code == 202
    events = parse_events(b"".join(response.streaming_content))
    assert events == [("done", events[0][1])]
    assert events[0][1]["message"] is None and events[0][1]["status"] == "waiting_for_human"


def test_a_failure_after_the_stream_started_is_sent_as_an_error_event(client, token, monkeypatch):
    def failing_stream(inbound):
        yield "Cửa hàng mở cửa "
        raise RuntimeError("connection reset")

    monkeypatch.setattr("chatbot.api.views.pipeline.answer_stream", failing_stream)

    response = post_message(client, token, text=QUESTION, stream=True)

    events = parse_events(b"".join(response.streaming_content))
    assert events[0] == ("delta", {"text": "Cửa hàng mở cửa "})
    assert events[1][0] == "error"
    assert events[1][1]["error"]["code"] == "internal_error"


def test_the_conversation_reads_back_oldest_first_with_its_contact(client, token):
    post_message(client, token, text=QUESTION, user_id="customer-9")
    last = post_message(client, token, text="Phí giao hàng nội thành bao nhiêu?", user_id="customer-9").json()

    response = client.get(
        f"/api/v1/conversations/{last['conversation_id']}", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == last["conversation_id"]
    assert body["status"] == "bot" and body["channel"] == "api"
    assert body["contact"]["user_id"] == "customer-9"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]
    assert body["messages"][0]["text"] == QUESTION
    assert body["messages"][-1]["id"] == last["message"]["id"]
    assert all(set(m) == MESSAGE_FIELDS for m in body["messages"])


def test_feedback_on_an_answer_is_stored(client, token):
    reply = post_message(client, token, text=QUESTION).json()["message"]

    response = client.post(
        f"/api/v1/messages/{reply['id']}/feedback",
        data=json.dumps({"feedback": "down", "comment": "Mình cần giờ mở cửa ngày Tết"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200
    assert response.json()["feedback"] == "down"
    stored = Message.objects.get(pk=reply["id"])
    assert (stored.feedback, stored.feedback_comment) == ("down", "Mình cần giờ mở cửa ngày Tết")


@pytest.mark.django_db(transaction=True)
def test_over_real_http_the_answer_arrives_as_server_sent_events(live_server, bot, token, gemini_server):
    gemini_server.script_reply("Cửa hàng mở cửa từ 8 giờ sáng đến 10 giờ tối [1].", pieces=3)

    with requests.post(
        f"{live_server.url}/api/v1/messages",
        json={"user_id": "customer-1", "text": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = [line.decode() for line in response.iter_lines()]

    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["delta", "delta", "delta", "done"]
    done = json.loads(lines[lines.index("event: done") + 1].removeprefix("data: "))
    assert done["message"]["provider"] == "gemini"
