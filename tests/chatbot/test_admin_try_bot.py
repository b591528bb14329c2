"""The "try the bot" page: staff ask through the real pipeline and see how the answer came about."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbot.models import AnswerCacheEntry, Bot
from config.roles import MANAGERS, SUPPORT_STAFF
from conversations.models import Conversation, Message
from tests.accounts import login_as
from tests.chatbot.shop import shop_knowledge_base

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_redis")]


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(name="Sao Mai assistant", slug="sao-mai", knowledge_base=shop_knowledge_base())


def try_url(bot: Bot) -> str:
    return reverse("admin:chatbot_bot_try_bot", args=[bot.pk])


def test_support_staff_get_the_reply_with_citations_and_the_panel(client, bot, settings):
    settings.GEMINI_API_KEY = ""  # the extractive provider answers: offline
    login_as(client, SUPPORT_STAFF)

    response = client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"})

    assert response.status_code == 200
    turn = response.context["turn"]
    assert turn["outcome"] == Message.Outcome.EXTRACTIVE
    assert turn["reply"].provider == "extractive" and "8 giờ sáng đến 10 giờ tối" in turn["reply"].text
    assert turn["cache"] is None and turn["route"]["tier"] == "simple" and turn["prompt"]["system_chars"] > 0
    assert turn["sources"][0]["hit"].document_title == "Store hours" and turn["sources"][0]["cited"]
    page = response.content.decode()
    panel_parts = ["stat-cache", "stat-model", "stat-route", "stat-tokens", "stat-cost", "stat-latency",
                   "stat-prompt", "stat-retrieval", "attempts", "stages", "sources"]  # fmt: skip
    for part in panel_parts:
        assert f'id="{part}"' in page, part
    assert "Quoted passages (no LLM)" in page and "[1]</span>" in page and "Store hours" in page


def test_the_conversation_goes_on_across_questions_and_start_over_closes_it(client, bot, settings):
    settings.GEMINI_API_KEY = ""
    user = login_as(client, SUPPORT_STAFF)
    client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"})

    second = client.post(try_url(bot), {"text": "Phí giao hàng nội thành bao nhiêu?"})

    conversation = second.context["conversation"]
    assert conversation.contact.external_id == f"staff:{user.pk}" and conversation.channel == "admin"
    assert [item["role"] for item in second.context["transcript"]] == ["user", "assistant"] * 2
    assert second.context["turn"]["prompt"]["history_messages"] == 2

    client.post(try_url(bot), {"start_over": "1"})

    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED and conversation.closed_at is not None
    fresh = client.get(try_url(bot))
    assert fresh.context["conversation"] is None and fresh.context["transcript"] == []


def test_each_staff_member_has_their_own_test_conversation(client, bot, settings):
    settings.GEMINI_API_KEY = ""
    login_as(client, SUPPORT_STAFF)
    client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"})

    other = Client()
    login_as(other, MANAGERS)

    assert other.get(try_url(bot)).context["conversation"] is None


def test_after_a_reload_the_panel_still_explains_the_last_answer(client, bot, settings):
    settings.GEMINI_API_KEY = ""
    login_as(client, MANAGERS)
    client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"})

    response = client.get(try_url(bot))

    turn = response.context["turn"]
    assert turn["outcome"] == Message.Outcome.EXTRACTIVE and turn["route"]["tier"] == "simple"
    assert turn["stages"] and not turn["sources_known"]


def test_the_second_identical_question_is_answered_by_the_cache_and_the_panel_says_so(
    client, bot, gemini_server
):
    login_as(client, SUPPORT_STAFF)
    question = "Phí giao hàng nội thành là bao nhiêu tiền vậy shop?"
    first = client.post(try_url(bot), {"text": question})
    assert first.context["turn"]["outcome"] == Message.Outcome.ANSWERED
    assert first.context["turn"]["reply"].provider == "gemini"

    second = client.post(try_url(bot), {"text": question})

    turn = second.context["turn"]
    assert turn["outcome"] == Message.Outcome.CACHED and turn["cache"]["kind"] in {"exact", "semantic"}
    assert turn["reply"].text == first.context["turn"]["reply"].text
    assert len(gemini_server.chat_requests()) == 1
    assert "Yes, exact match" in second.content.decode()
    assert turn["cache"]["entry"] == AnswerCacheEntry.objects.get(bot=bot).pk
    cached = client.get(reverse("admin:chatbot_answercacheentry_changelist"), {"bot__id__exact": bot.pk})
    assert [(row.question, row.hits) for row in cached.context["cl"].result_list] == [(question, 1)]


def test_an_empty_message_is_refused_with_a_form_error_and_nothing_is_stored(client, bot):
    login_as(client, SUPPORT_STAFF)

    response = client.post(try_url(bot), {"text": "   "})

    assert response.status_code == 200
    assert 'id="form-errors"' in response.content.decode()
    assert not Message.objects.exists()


def test_posting_without_a_csrf_token_is_refused(bot):
    client = Client(enforce_csrf_checks=True)
    login_as(client, SUPPORT_STAFF)

    response = client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"})

    assert response.status_code == 403
    assert not Message.objects.exists()


def test_staff_without_a_role_cannot_try_the_bot(client, bot):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))

    assert client.get(try_url(bot)).status_code == 403
    assert client.post(try_url(bot), {"text": "Cửa hàng mở cửa lúc mấy giờ?"}).status_code == 403
    assert not Message.objects.exists()


def test_anonymous_visitors_are_sent_to_the_login_page(client, bot):
    response = client.get(try_url(bot))

    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_the_bot_page_links_to_try_the_bot_for_each_role_but_not_to_new_keys(client, bot, role):
    login_as(client, role)

    page = client.get(reverse("admin:chatbot_bot_change", args=[bot.pk])).content.decode()

    assert try_url(bot) in page
    assert reverse("admin:chatbot_bot_new_api_key", args=[bot.pk]) not in page
