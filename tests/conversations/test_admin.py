"""The conversations admin as support staff and managers use it."""

import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.roles import MANAGERS, SUPPORT_STAFF
from conversations.models import Contact, Message
from conversations.services import conversation_request_handoff, message_set_feedback
from tests.accounts import login_as
from tests.conversations.helpers import answer, ask, cited_answer, make_bot

pytestmark = pytest.mark.django_db

ROLES = [None, SUPPORT_STAFF, MANAGERS]  # None: a superuser


@pytest.fixture
def bot():
    return make_bot("Sao Mai helper")


@pytest.fixture
def chat(bot):
    """A conversation as the pipeline leaves it: a cited answer, a cached one, one it did not know."""
    first = ask("Giờ mở cửa thế nào?", bot_id=bot.pk, name="Lan Nguyen", message_id="z1")
    cited = cited_answer(first.message)
    message_set_feedback(message=cited, feedback=Message.Feedback.UP)
    second = ask("Giờ mở cửa chủ nhật?", bot_id=bot.pk, message_id="z2")
    answer(second.message, "Chủ nhật cũng mở cửa 8 giờ đến 21 giờ.", outcome=Message.Outcome.CACHED,
           cache_hit=True, model="gemini-3.1-flash-lite")  # fmt: skip
    third = ask("Có bán thẻ quà tặng không?", bot_id=bot.pk, message_id="z3")
    dont_know = answer(third.message, "Xin lỗi, mình chưa tìm thấy thông tin này.",
                       outcome=Message.Outcome.DONT_KNOW)  # fmt: skip
    message_set_feedback(message=dont_know, feedback=Message.Feedback.DOWN, comment="Không giúp được gì")
    return first.conversation


def page_text(response) -> str:
    return response.content.decode()


@pytest.mark.parametrize("role", ROLES)
def test_every_conversations_page_renders_for_each_role_that_may_read_it(client, role, chat):
    login_as(client, role)
    question = chat.messages.first()

    urls = [
        reverse("admin:conversations_contact_changelist"),
        reverse("admin:conversations_contact_change", args=[chat.contact_id]),
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:conversations_conversation_change", args=[chat.pk]),
        reverse("admin:conversations_message_changelist"),
    ]

    for url in urls:
        assert client.get(url).status_code == 200, url
    message_page = client.get(reverse("admin:conversations_message_change", args=[question.pk]))
    assert message_page.status_code == 302


def test_staff_without_a_role_cannot_read_conversations(client, chat):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))

    assert client.get(reverse("admin:conversations_conversation_change", args=[chat.pk])).status_code == 403
    assert client.get(reverse("admin:conversations_message_changelist")).status_code == 403
    message = chat.messages.first()
    assert client.get(reverse("admin:conversations_message_change", args=[message.pk])).status_code == 403


def test_the_transcript_shows_the_messages_in_order_with_sources_cost_and_badges(client, chat):
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:conversations_conversation_change", args=[chat.pk]))

    page = page_text(response)
    transcript = page[page.index('id="transcript"') :]
    said = [
        "Giờ mở cửa thế nào?",
        "Cửa hàng mở cửa từ 8 giờ đến 21 giờ mỗi ngày [1].",
        "Giờ mở cửa chủ nhật?",
        "Chủ nhật cũng mở cửa",
        "Có bán thẻ quà tặng không?",
        "Xin lỗi, mình chưa tìm thấy thông tin này.",
    ]
    positions = [transcript.index(text) for text in said]
    assert positions == sorted(positions)
    roles = re.findall(r'class="conv-row conv-(\w+)"', transcript)
    assert roles == ["customer", "bot", "customer", "bot", "customer", "bot"]
    assert "Store hours" in transcript and "Giờ mở cửa" in transcript and "Delivery policy" in transcript
    assert '<span class="conv-num">1</span>' in transcript and '<span class="conv-num">2</span>' in transcript
    assert "gemini · gemini-3.1-flash-lite" in transcript
    assert "812 in · 46 out tokens (128 cached)" in transcript
    assert "$0.00012345" in transcript and "1.2 s" in transcript
    assert "Answered from cache" in transcript
    assert "Did not know" in transcript
    assert "thumb_up" in transcript and "thumb_down" in transcript and "Không giúp được gì" in transcript
    assert "Sao Mai helper" in transcript and "Lan Nguyen" in transcript


def test_the_transcript_page_sums_the_conversation_tokens_and_cost(client, chat):
    login_as(client, MANAGERS)

    response = client.get(reverse("admin:conversations_conversation_change", args=[chat.pk]))

    page = page_text(response)
    assert "812 in · 46 out (128 cached)" in page
    assert "$0.00012345" in page
    assert "Waiting" not in page and "Bot answering" in page


def test_a_very_long_conversation_shows_its_newest_messages_and_links_to_the_rest(client, chat, monkeypatch):
    monkeypatch.setattr("conversations.admin.TRANSCRIPT_MAX_MESSAGES", 2)
    login_as(client, SUPPORT_STAFF)

    page = page_text(client.get(reverse("admin:conversations_conversation_change", args=[chat.pk])))

    assert "4 earlier messages not shown" in page
    assert "Giờ mở cửa thế nào?" not in page and "Có bán thẻ quà tặng không?" in page
    assert f"?conversation={chat.pk}" in page


def test_the_transcript_is_read_only_even_for_support_staff(client, chat):
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_conversation_change", args=[chat.pk])

    response = client.post(url, {"status": "closed"})

    assert response.status_code == 403
    chat.refresh_from_db()
    assert chat.status == "bot"
    assert client.get(reverse("admin:conversations_conversation_add")).status_code == 403


def test_the_conversation_list_shows_bot_name_status_and_counts(client, chat):
    conversation_request_handoff(conversation=chat)
    login_as(client, SUPPORT_STAFF)

    page = page_text(client.get(reverse("admin:conversations_conversation_changelist")))

    assert "Lan Nguyen" in page and "zalo-user-1" in page
    assert "Sao Mai helper" in page
    assert "Waiting for a person" in page
    assert ">6<" in page  # message count


def test_the_conversation_list_filters_by_status_channel_and_bot(client, chat, bot):
    other_bot = make_bot("Other shop")
    ask("Hello", bot_id=other_bot.pk, user="visitor-9", name="Web visitor", channel="web")
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_conversation_changelist")

    by_bot = page_text(client.get(url, {"bot": other_bot.pk}))
    by_channel = page_text(client.get(url, {"channel__exact": "zalo"}))
    by_status = page_text(client.get(url, {"status__exact": "waiting_for_human"}))

    assert "Web visitor" in by_bot and "Lan Nguyen" not in by_bot
    assert "Lan Nguyen" in by_channel and "Web visitor" not in by_channel
    assert "Lan Nguyen" not in by_status and "Web visitor" not in by_status
    assert ">Other shop<" in by_bot  # the filter offers bots by name


@pytest.mark.parametrize("term", ["Lan Ng", "zalo-user-1", "thẻ quà tặng"])
def test_the_conversation_list_searches_names_user_ids_and_message_text(client, chat, term):
    ask("Hello", user="visitor-9", name="Web visitor", channel="web")
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:conversations_conversation_changelist"), {"q": term})

    assert [conversation.pk for conversation in response.context["cl"].result_list] == [chat.pk]


def test_the_conversation_list_runs_the_same_queries_for_many_rows_as_for_few(client, bot):
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_conversation_changelist")
    ask("q", bot_id=bot.pk, user="u0")
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for number in range(1, 25):
        ask("q", bot_id=bot.pk, user=f"u{number}", name=f"Customer {number}")

    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200

    assert len(many) == len(few)


def test_the_contact_list_shows_conversation_counts_without_a_query_per_row(client, chat):
    for number in range(20):
        ask("q", user=f"u{number}", name=f"Customer {number}")
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_contact_changelist")

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)

    counts = {
        contact.external_id: contact.conversation_total for contact in response.context["cl"].result_list
    }
    assert counts["zalo-user-1"] == 1 and len(counts) == 21
    assert len(queries) < 15
    assert response.context["cl"].show_full_result_count is False


def test_the_contact_list_filters_by_channel_and_language_and_searches(client, chat):
    ask("Hello", user="visitor-9", name="Web visitor", channel="web", language="en")
    ask("Hi", user="visitor-10", channel="web", language="")
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_contact_changelist")

    def shown(params: dict) -> set[str]:
        return {contact.external_id for contact in client.get(url, params).context["cl"].result_list}

    assert shown({"channel__exact": "web"}) == {"visitor-9", "visitor-10"}
    assert shown({"language": "en"}) == {"visitor-9"}
    assert shown({"language": "unknown"}) == {"visitor-10"}
    assert shown({"q": "Lan"}) == {"zalo-user-1"}
    assert shown({"q": "visitor-1"}) == {"visitor-10"}


def test_support_staff_can_correct_a_contact_name_and_managers_cannot(client, chat):
    contact = chat.contact
    url = reverse("admin:conversations_contact_change", args=[contact.pk])
    form = {
        "display_name": "Nguyễn Thị Lan",
        "language": "vi",
        "conversations-TOTAL_FORMS": "1",
        "conversations-INITIAL_FORMS": "1",
        "conversations-MIN_NUM_FORMS": "0",
        "conversations-MAX_NUM_FORMS": "0",
        "conversations-0-id": str(chat.pk),
        "conversations-0-contact": str(contact.pk),
    }
    login_as(client, MANAGERS)
    assert client.post(url, form).status_code == 403

    login_as(client, SUPPORT_STAFF)
    response = client.post(url, form)

    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.display_name, contact.channel, contact.external_id) == (
        "Nguyễn Thị Lan",
        "zalo",
        "zalo-user-1",
    )
    assert client.get(reverse("admin:conversations_contact_add")).status_code == 403


def test_the_message_list_finds_unanswered_questions_with_the_question_beside_the_answer(client, chat):
    login_as(client, MANAGERS)

    response = client.get(reverse("admin:conversations_message_changelist"), {"outcome__exact": "dont_know"})

    rows = response.context["cl"].result_list
    assert [message.text for message in rows] == ["Xin lỗi, mình chưa tìm thấy thông tin này."]
    page = page_text(response)
    assert "Có bán thẻ quà tặng không?" in page
    transcript = reverse("admin:conversations_conversation_change", args=[chat.pk])
    assert f"{transcript}#message-{rows[0].pk}" in page


def test_the_message_list_searches_text_and_filters_role_cache_feedback_and_channel(client, chat):
    ask("Hello there", user="visitor-9", channel="web")
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:conversations_message_changelist")

    def shown(params: dict) -> list[str]:
        return [message.text for message in client.get(url, params).context["cl"].result_list]

    assert shown({"q": "thẻ quà"}) == ["Có bán thẻ quà tặng không?"]
    assert shown({"cache_hit__exact": "1"}) == ["Chủ nhật cũng mở cửa 8 giờ đến 21 giờ."]
    assert shown({"feedback__exact": "down"}) == ["Xin lỗi, mình chưa tìm thấy thông tin này."]
    assert shown({"conversation__channel__exact": "web"}) == ["Hello there"]
    assert len(shown({"role__exact": "user"})) == 4
    assert shown({"conversation": chat.pk})[0] == "Xin lỗi, mình chưa tìm thấy thông tin này."  # newest first


def test_opening_a_message_leads_to_its_place_in_the_transcript(client, chat):
    login_as(client, SUPPORT_STAFF)
    message = chat.messages.last()

    response = client.get(reverse("admin:conversations_message_change", args=[message.pk]))

    transcript = reverse("admin:conversations_conversation_change", args=[chat.pk])
    assert response["Location"] == f"{transcript}#message-{message.pk}"


def test_nobody_can_add_change_or_delete_messages_in_the_admin(client, chat):
    login_as(client, None)
    message = chat.messages.first()

    assert client.get(reverse("admin:conversations_message_add")).status_code == 403
    assert client.post(reverse("admin:conversations_message_delete", args=[message.pk])).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()
    assert Contact.objects.count() == 1
