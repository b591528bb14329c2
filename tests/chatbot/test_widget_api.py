"""The widget's API end to end: origins and CORS, identities, limits, streaming, history, feedback, handoff.

Real pipeline, database, Redis, retrieval and local embedder; answers are extractive unless a
test starts the Gemini fake.
"""

import json
import time
import uuid

import pytest

from chatbot.api import ratelimit
from chatbot.models import Bot
from chatbot.widget.identity import identity_sign
from conversations.models import Contact, Conversation, Message
from knowledge.models import Document
from tests.chatbot.shop import HOURS
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_redis")]

SHOP = "https://shop.example.com"
QUESTION = "Cửa hàng mở cửa lúc mấy giờ?"
VISITOR = str(uuid.uuid4())


@pytest.fixture
def bot() -> Bot:
    knowledge_base = make_knowledge_base("Sao Mai")
    document = paste(knowledge_base, HOURS, title="Store hours")
    ingest(document)
    Document.objects.filter(pk=document.pk).update(source_url="https://shop.example.com/help/hours")
    return Bot.objects.create(
        name="Sao Mai assistant",
        slug="sao-mai",
        knowledge_base=knowledge_base,
        widget_allowed_origins=f"{SHOP}\nhttp://localhost:3000",
    )


def url(bot: Bot, path: str) -> str:
    return f"/widget/api/{bot.widget_key}/{path}"


def identity(visitor: str = VISITOR, **extra: str) -> dict:
    return {"X-Widget-Visitor": visitor, **extra}


def post(client, bot: Bot, path: str, body: dict | None = None, *, origin: str | None = SHOP, **headers):
    if origin is not None:
        headers["Origin"] = origin
    return client.post(
        url(bot, path), data=json.dumps(body or {}), content_type="application/json", headers=headers
    )


def ask(
    client, bot: Bot, text: str = QUESTION, *, origin: str | None = SHOP, visitor: str = VISITOR, **headers
):
    return post(client, bot, "messages", {"text": text}, origin=origin, **identity(visitor), **headers)


def get(client, bot: Bot, path: str, *, origin: str | None = SHOP, **headers):
    if origin is not None:
        headers["Origin"] = origin
    return client.get(url(bot, path), headers=headers)


def events_of(response) -> list[tuple[str, dict]]:
    text = b"".join(response.streaming_content).decode()
    events = []
    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        events.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return events


def nothing_stored() -> bool:
    return not Contact.objects.exists() and not Message.objects.exists()


# Origins and CORS


def test_a_page_on_an_allowed_origin_gets_the_answer_streamed_with_a_linked_citation(client, bot):
    response = ask(client, bot)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in response
    events = events_of(response)
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1)
    name, done = events[-1]
    assert name == "done"
    reply = done["message"]
    assert "".join(data["text"] for _, data in events[:-1]) == reply["text"]
    assert "8 giờ sáng đến 10 giờ tối" in reply["text"]
    assert reply["citations"][0]["title"] == "Store hours"
    assert reply["citations"][0]["url"] == "https://shop.example.com/help/hours"
    assert set(reply) == {"id", "role", "text", "outcome", "citations", "feedback", "created_at"}
    assert done["conversation"]["status"] == "bot"
    contact = Contact.objects.get()
    assert (contact.channel, contact.external_id) == ("web", f"visitor:{VISITOR}")
    assert Message.objects.get(pk=reply["id"]).conversation.contact == contact


def test_a_cited_document_without_a_web_address_is_named_without_a_link(client, bot):
    Document.objects.update(source_url="")

    reply = events_of(ask(client, bot))[-1][1]["message"]

    citation = reply["citations"][0]
    assert (citation["number"], citation["title"], citation["url"]) == (1, "Store hours", "")


def test_a_page_on_another_origin_is_refused_with_403_and_nothing_is_stored(client, bot):
    response = ask(client, bot, origin="https://evil.example.net")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert "https://evil.example.net" in response.json()["error"]["message"]
    # The refusal is readable by the page, so the widget can say why it is off.
    assert response["Access-Control-Allow-Origin"] == "*"
    assert nothing_stored()


@pytest.mark.parametrize(
    "origin",
    ["http://shop.example.com", "https://shop.example.com:8443", "https://www.shop.example.com", "null"],
)
def test_a_different_scheme_port_or_host_or_an_opaque_origin_is_refused(client, bot, origin):
    assert ask(client, bot, origin=origin).status_code == 403
    assert nothing_stored()


def test_origins_are_compared_normalised_whatever_was_stored(client, bot):
    Bot.objects.filter(pk=bot.pk).update(widget_allowed_origins="  HTTPS://Shop.Example.COM:443/  \n")

    response = get(client, bot, "config", origin="https://shop.example.com")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"


def test_a_preflight_from_an_allowed_origin_lists_the_methods_and_identity_headers(client, bot):
    response = client.options(
        url(bot, "messages"),
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-widget-visitor",
        },
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    allowed = {name.strip().lower() for name in response["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-widget-visitor", "x-widget-user", "x-widget-user-hash"} <= allowed
    assert int(response["Access-Control-Max-Age"]) > 0


def test_a_preflight_from_another_origin_is_refused_so_the_browser_never_sends_the_request(client, bot):
    response = client.options(
        url(bot, "messages"),
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"


def test_this_servers_own_origin_is_allowed_without_being_listed(client, bot):
    Bot.objects.filter(pk=bot.pk).update(widget_allowed_origins="")

    response = ask(client, bot, origin="http://testserver")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "http://testserver"


def test_a_read_without_origin_is_served_as_same_origin_but_a_write_without_origin_is_refused(client, bot):
    # Browsers leave Origin out of same-origin GETs only.
    read = get(client, bot, "config", origin=None)
    write = ask(client, bot, origin=None)

    assert read.status_code == 200
    assert "Access-Control-Allow-Origin" not in read
    assert write.status_code == 403
    assert write.json()["error"]["code"] == "origin_required"
    assert nothing_stored()


def test_an_unknown_widget_key_is_a_json_404(client):
    response = client.get("/widget/api/wk_nosuchkey/config", headers={"Origin": SHOP})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_widget"


def test_an_unknown_path_under_the_widget_api_is_a_json_404(client, bot):
    response = client.get(f"/widget/api/{bot.widget_key}/nothing-here", headers={"Origin": SHOP})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_switched_off_bot_refuses_questions_and_stores_nothing(client, bot):
    Bot.objects.filter(pk=bot.pk).update(is_active=False)

    response = ask(client, bot)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "bot_inactive"
    assert nothing_stored()


def test_a_wrong_method_is_405(client, bot):
    response = get(client, bot, "messages")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# Config and history


def test_the_config_gives_the_bots_name_and_greeting_in_the_asked_language(client, bot):
    english = get(client, bot, "config?lang=en").json()
    unknown = get(client, bot, "config?lang=fr").json()

    assert english["name"] == "Sao Mai assistant"
    assert english["greeting"] == bot.greeting_en and english["language"] == "en"
    assert unknown["greeting"] == bot.greeting_vi and unknown["language"] == "vi"
    assert english["max_message_chars"] == 4000


def test_the_history_shows_the_visitors_earlier_turns_and_nobody_elses(client, bot):
    done = events_of(ask(client, bot))[-1][1]
    stranger = str(uuid.uuid4())

    mine = get(client, bot, "conversation", **identity()).json()
    theirs = get(client, bot, "conversation", **identity(stranger)).json()

    assert mine["conversation"] == {"id": done["conversation"]["id"], "status": "bot"}
    assert [(m["role"], m["text"]) for m in mine["messages"]] == [
        ("user", QUESTION),
        ("assistant", done["message"]["text"]),
    ]
    assert mine["messages"][1]["citations"][0]["url"] == "https://shop.example.com/help/hours"
    assert theirs == {"conversation": None, "messages": []}


def test_the_history_needs_a_visitor_id(client, bot):
    missing = get(client, bot, "conversation")
    malformed = get(client, bot, "conversation", **identity("not-a-uuid"))

    assert missing.status_code == malformed.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_visitor"


# Signed identities


def signed(bot: Bot, user_id: str, **extra: str) -> dict:
    return {
        "X-Widget-User": user_id,
        "X-Widget-User-Hash": identity_sign(secret=bot.widget_identity_secret, user_id=user_id),
        **extra,
    }


def test_a_signed_customer_is_one_contact_on_every_device(client, bot):
    phone, laptop = str(uuid.uuid4()), str(uuid.uuid4())
    # Names travel percent-encoded: header values must be ASCII.
    name = "Nguy%E1%BB%85n%20Th%E1%BB%8B%20Lan"

    ask(client, bot, visitor=phone, **signed(bot, "khach-42", **{"X-Widget-User-Name": name}))
    history = get(client, bot, "conversation", **identity(laptop), **signed(bot, "khach-42")).json()

    contact = Contact.objects.get()
    assert (contact.channel, contact.external_id) == ("web", "user:khach-42")
    assert contact.display_name == "Nguyễn Thị Lan"
    assert history["messages"][0]["text"] == QUESTION


def test_a_user_id_with_a_wrong_hash_is_refused_and_not_treated_as_a_visitor(client, bot):
    forged = {
        "X-Widget-User": "khach-42",
        "X-Widget-User-Hash": identity_sign(secret="guess", user_id="khach-42"),
    }

    response = ask(client, bot, **forged)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_identity"
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert nothing_stored()


def test_a_user_id_without_a_hash_is_refused(client, bot):
    response = get(client, bot, "conversation", **identity(), **{"X-Widget-User": "khach-42"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_identity"


def test_a_hash_signed_for_another_user_id_is_refused(client, bot):
    borrowed = {
        "X-Widget-User": "khach-43",
        "X-Widget-User-Hash": identity_sign(secret=bot.widget_identity_secret, user_id="khach-42"),
    }

    assert ask(client, bot, **borrowed).status_code == 403
    assert nothing_stored()


def test_a_bot_without_an_identity_secret_refuses_signed_ids(client, bot):
    hashed = signed(bot, "khach-42")
    Bot.objects.filter(pk=bot.pk).update(widget_identity_secret="")

    response = ask(client, bot, **hashed)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "identity_not_enabled"


def test_a_user_id_that_is_not_percent_encoded_utf8_is_400(client, bot):
    response = get(
        client, bot, "conversation", **identity(), **{"X-Widget-User": "%FF%FE", "X-Widget-User-Hash": "ab"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_user_id"


# Rate limits


def short_windows(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "WINDOW_SECONDS", 1)


def rate_nothing(client, bot: Bot, visitor: str = VISITOR, **meta):
    # Feedback on a message that does not exist: a cheap write that passes every check.
    return client.post(
        url(bot, "messages/999999/feedback"),
        data=json.dumps({"feedback": "up"}),
        content_type="application/json",
        headers={"Origin": SHOP, **identity(visitor)},
        **meta,
    )


def test_a_visitor_over_the_limit_gets_429_with_retry_after_and_other_visitors_do_not(
    client, bot, settings, monkeypatch
):
    short_windows(monkeypatch)
    settings.WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE = 3

    statuses = [rate_nothing(client, bot).status_code for _ in range(3)]
    limited = rate_nothing(client, bot)
    other = rate_nothing(client, bot, visitor=str(uuid.uuid4()))

    assert statuses == [404, 404, 404]
    assert limited.status_code == 429
    body = limited.json()["error"]
    assert body["code"] == "rate_limited" and body["retry_after"] == 1
    assert limited["Retry-After"] == "1"
    assert "Retry-After" in limited["Access-Control-Expose-Headers"]
    assert other.status_code == 404
    time.sleep(1.1)
    assert rate_nothing(client, bot).status_code == 404


def test_a_limited_question_is_refused_before_anything_is_stored(client, bot, settings):
    settings.WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE = 1
    ask(client, bot)
    stored = Message.objects.count()

    limited = ask(client, bot, "Phí giao hàng bao nhiêu?")

    assert limited.status_code == 429
    assert Message.objects.count() == stored


def test_reading_the_history_does_not_use_up_a_visitors_messages(client, bot, settings):
    settings.WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE = 1

    for _ in range(3):
        assert get(client, bot, "conversation", **identity()).status_code == 200

    assert rate_nothing(client, bot).status_code == 404


def test_one_address_over_its_limit_is_refused_whatever_visitor_it_claims(client, bot, settings):
    settings.WIDGET_RATE_LIMIT_PER_IP_PER_MINUTE = 3

    statuses = [rate_nothing(client, bot, visitor=str(uuid.uuid4())).status_code for _ in range(3)]
    limited = get(client, bot, "config")
    other_address = client.get(url(bot, "config"), headers={"Origin": SHOP}, REMOTE_ADDR="203.0.113.9")

    assert statuses == [404, 404, 404]
    assert limited.status_code == 429
    assert "your address" in limited.json()["error"]["message"]
    assert other_address.status_code == 200


def test_guessing_signatures_counts_against_the_address(client, bot, settings):
    settings.WIDGET_RATE_LIMIT_PER_IP_PER_MINUTE = 2
    forged = {"X-Widget-User": "khach-42", "X-Widget-User-Hash": "00" * 32}

    statuses = [ask(client, bot, **forged).status_code for _ in range(3)]

    assert statuses == [403, 403, 429]


# Feedback


def test_a_visitor_rates_an_answer_and_it_is_stored_on_the_message(client, bot):
    reply = events_of(ask(client, bot))[-1][1]["message"]

    response = post(client, bot, f"messages/{reply['id']}/feedback", {"feedback": "up"}, **identity())
    changed = post(client, bot, f"messages/{reply['id']}/feedback", {"feedback": "down"}, **identity())

    assert response.status_code == 200
    assert response.json()["message"]["feedback"] == "up"
    assert changed.json()["message"]["feedback"] == "down"
    assert Message.objects.get(pk=reply["id"]).feedback == "down"


def test_a_visitor_cannot_rate_an_answer_in_someone_elses_conversation(client, bot):
    reply = events_of(ask(client, bot))[-1][1]["message"]

    response = post(
        client, bot, f"messages/{reply['id']}/feedback", {"feedback": "down"}, **identity(str(uuid.uuid4()))
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Message.objects.get(pk=reply["id"]).feedback == ""


def test_only_the_bots_answers_take_feedback_and_only_up_or_down(client, bot):
    done = events_of(ask(client, bot))[-1][1]

    own_question = post(
        client, bot, f"messages/{done['question_id']}/feedback", {"feedback": "up"}, **identity()
    )
    sideways = post(
        client, bot, f"messages/{done['message']['id']}/feedback", {"feedback": "meh"}, **identity()
    )

    assert own_question.status_code == 400
    assert own_question.json()["error"]["code"] == "feedback_not_allowed"
    assert sideways.status_code == 400
    assert sideways.json()["error"]["code"] == "invalid_feedback"


# Talk to a person


def test_talk_to_a_person_hands_the_conversation_over_with_the_bots_handoff_text(client, bot):
    events_of(ask(client, bot))

    response = post(client, bot, "handoff", {"language": "en"}, **identity())
    again = post(client, bot, "handoff", {"language": "en"}, **identity())

    assert response.status_code == 200
    body = response.json()
    assert body["conversation"]["status"] == "waiting_for_human"
    assert body["message"]["text"] == bot.handoff_en
    assert body["message"]["outcome"] == "handoff"
    conversation = Conversation.objects.get(pk=body["conversation"]["id"])
    assert conversation.status == "waiting_for_human" and conversation.handoff_requested_at is not None
    assert again.json() == {"conversation": body["conversation"], "message": None}
    assert Message.objects.filter(outcome="handoff").count() == 1


def test_after_a_handoff_questions_are_kept_for_the_person_and_the_bot_stays_quiet(client, bot):
    post(client, bot, "handoff", {}, **identity())

    response = ask(client, bot)

    assert response.status_code == 202
    events = events_of(response)
    assert events == [("done", events[0][1])]
    assert events[0][1]["message"] is None
    assert events[0][1]["conversation"]["status"] == "waiting_for_human"
    assert Message.objects.filter(role="user", text=QUESTION).exists()


def test_the_handoff_text_follows_the_conversation_when_no_language_is_given(client, bot):
    response = post(client, bot, "handoff", {}, **identity())

    assert response.json()["message"]["text"] == bot.handoff_vi


# Bad input


@pytest.mark.parametrize("text", ["", "   \n "])
def test_an_empty_message_is_400_empty_message_and_nothing_is_stored(client, bot, text):
    response = ask(client, bot, text)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_message"
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert nothing_stored()


def test_a_message_over_4000_characters_is_400_message_too_long_and_nothing_is_stored(client, bot):
    response = ask(client, bot, "a" * 4001)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "message_too_long"
    assert nothing_stored()


def test_a_body_over_the_cap_is_413_and_nothing_is_stored(client, bot):
    response = ask(client, bot, "a" * 40_000)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert nothing_stored()


def test_malformed_json_a_non_object_or_a_missing_text_is_400(client, bot):
    headers = {"Origin": SHOP, **identity()}
    broken = client.post(url(bot, "messages"), data="{nope", content_type="application/json", headers=headers)
    listed = client.post(url(bot, "messages"), data="[1]", content_type="application/json", headers=headers)
    textless = post(client, bot, "messages", {"question": QUESTION}, **identity())

    assert broken.status_code == listed.status_code == 400
    assert broken.json()["error"]["code"] == listed.json()["error"]["code"] == "invalid_json"
    assert textless.status_code == 400 and textless.json()["error"]["code"] == "invalid_request"
    assert nothing_stored()


def test_a_form_encoded_body_is_415(client, bot):
    response = client.post(
        url(bot, "messages"), data={"text": QUESTION}, headers={"Origin": SHOP, **identity()}
    )

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_the_same_message_id_sent_twice_is_answered_once(client, bot):
    body = {"text": QUESTION, "message_id": "m-1"}
    first = events_of(post(client, bot, "messages", body, **identity()))[-1][1]
    again = events_of(post(client, bot, "messages", body, **identity()))[-1][1]

    assert again["message"]["id"] == first["message"]["id"]
    assert Message.objects.count() == 2
