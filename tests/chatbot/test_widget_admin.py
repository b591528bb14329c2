"""The bot admin's web widget part: the tag to paste, allowed origins, the identity secret."""

import pytest
from django.urls import reverse

from chatbot.models import Bot
from config.roles import SUPPORT_STAFF
from tests.chatbot.test_admin import bot_form, login_as
from tests.knowledge.helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(
        name="Sao Mai assistant",
        slug="sao-mai",
        knowledge_base=make_knowledge_base("Shop"),
        widget_allowed_origins="https://shop.example.com",
    )


def change_url(bot: Bot) -> str:
    return reverse("admin:chatbot_bot_change", args=[bot.pk])


def test_the_bot_page_shows_the_script_tag_to_paste_and_only_the_end_of_the_identity_secret(client, bot):
    login_as(client, None)

    page = client.get(change_url(bot)).content.decode()

    assert "Web widget" in page
    assert (
        f"&lt;script src=&quot;http://testserver/static/chatbot/widget.js&quot; "
        f"data-bot=&quot;{bot.widget_key}&quot; async&gt;&lt;/script&gt;"
    ) in page
    assert bot.widget_identity_secret[-4:] in page
    assert bot.widget_identity_secret not in page
    assert "https://shop.example.com" in page


def test_allowed_origins_are_saved_normalised_one_per_line(client, bot):
    login_as(client, None)

    response = client.post(
        change_url(bot),
        bot_form(
            bot,
            widget_allowed_origins="HTTPS://Shop.Example.com/\n\nhttp://localhost:3000\nhttps://shop.example.com",
        ),
    )

    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.widget_allowed_origins == "https://shop.example.com\nhttp://localhost:3000"


def test_a_line_that_is_not_an_origin_is_refused_with_its_line_number_and_nothing_changes(client, bot):
    login_as(client, None)

    response = client.post(
        change_url(bot),
        bot_form(bot, widget_allowed_origins="https://shop.example.com\nshop.example.org/chat"),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["widget_allowed_origins"]
    assert "line 2" in errors[0] and "needs its scheme" in errors[0]
    bot.refresh_from_db()
    assert bot.widget_allowed_origins == "https://shop.example.com"


def test_the_widget_key_and_secret_cannot_be_changed_through_the_form(client, bot):
    login_as(client, None)
    key, secret = bot.widget_key, bot.widget_identity_secret

    client.post(change_url(bot), bot_form(bot, widget_key="wk_mine", widget_identity_secret="known"))

    bot.refresh_from_db()
    assert (bot.widget_key, bot.widget_identity_secret) == (key, secret)


def test_rotating_the_identity_secret_asks_first_then_shows_the_new_secret_once(client, bot):
    login_as(client, None)
    old = bot.widget_identity_secret
    url = reverse("admin:chatbot_bot_rotate_widget_secret", args=[bot.pk])

    asked = client.get(url)
    bot.refresh_from_db()
    assert asked.status_code == 200 and "Rotate the secret" in asked.content.decode()
    assert bot.widget_identity_secret == old

    response = client.post(url, follow=True)

    bot.refresh_from_db()
    assert bot.widget_identity_secret != old and len(bot.widget_identity_secret) >= 32
    shown = [str(message) for message in response.context["messages"]]
    assert any(bot.widget_identity_secret in message for message in shown)
    assert bot.widget_identity_secret not in client.get(change_url(bot)).content.decode()


def test_support_staff_see_the_widget_settings_but_cannot_rotate_the_secret(client, bot):
    login_as(client, SUPPORT_STAFF)
    old = bot.widget_identity_secret

    page = client.get(change_url(bot)).content.decode()
    refused = client.post(reverse("admin:chatbot_bot_rotate_widget_secret", args=[bot.pk]))

    assert bot.widget_key in page
    assert refused.status_code == 403
    bot.refresh_from_db()
    assert bot.widget_identity_secret == old
