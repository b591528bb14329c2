"""The bot admin: bots, API keys and cached answers, as each role sees them."""

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from chatbot.api_keys import api_key_authenticate, api_key_create
from chatbot.models import AnswerCacheEntry, ApiKey, Bot
from config.roles import MANAGERS, SUPPORT_STAFF
from tests.accounts import login_as
from tests.knowledge.helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(
        name="Sao Mai assistant", slug="sao-mai", knowledge_base=make_knowledge_base("Shop")
    )


def bot_form(bot: Bot, **changes) -> dict:
    """The change form as a browser would post it, with `changes` applied."""
    data = {
        "name": bot.name,
        "slug": bot.slug,
        "knowledge_base": bot.knowledge_base_id,
        "is_active": "on",
        "persona": bot.persona,
        "languages": list(bot.languages),
        "default_language": bot.default_language,
        "provider_order": ",".join(bot.provider_order),
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
    }
    for field in ("greeting", "dont_know", "handoff"):
        for language in ("vi", "en"):
            data[f"{field}_{language}"] = getattr(bot, f"{field}_{language}")
    for field in (
        "history_turns", "simple_max_words", "strong_keywords", "gemini_simple_model", "gemini_strong_model",
        "bedrock_simple_model", "bedrock_strong_model", "max_output_tokens", "temperature",
        "answer_budget_seconds", "top_k", "min_relevance", "cache_similarity", "cache_ttl_hours",
    ):  # fmt: skip
        data[field] = getattr(bot, field)
    if bot.cache_enabled:
        data["cache_enabled"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def cache_entry(bot: Bot, question: str, **fields) -> AnswerCacheEntry:
    fields.setdefault("expires_at", timezone.now() + timedelta(days=7))
    return AnswerCacheEntry.objects.create(
        bot=bot,
        language="vi",
        question=question,
        normalized_question=question.lower(),
        question_hash=hashlib.sha256(question.encode()).hexdigest(),
        embedding_model="local-e5-small",
        embedding=[0.1] * 384,
        answer="Cửa hàng mở cửa từ 8 giờ sáng. [1]",
        citations=[{"number": 1, "document_id": 1, "document_title": "Store hours", "heading": "Giờ mở cửa"}],
        knowledge_base_version=1,
        provider="gemini",
        model="gemini-3.1-flash-lite",
        **fields,
    )


def test_every_bot_admin_page_renders_for_a_superuser(client, bot):
    login_as(client, None)
    api_key, _ = api_key_create(bot=bot, name="shop backend")
    entry = cache_entry(bot, "Mấy giờ mở cửa?")

    urls = [
        reverse("admin:chatbot_bot_changelist"),
        reverse("admin:chatbot_bot_add"),
        reverse("admin:chatbot_bot_change", args=[bot.pk]),
        reverse("admin:chatbot_bot_try_bot", args=[bot.pk]),
        reverse("admin:chatbot_apikey_changelist"),
        reverse("admin:chatbot_apikey_add"),
        reverse("admin:chatbot_apikey_change", args=[api_key.pk]),
        reverse("admin:chatbot_apikey_revoke_key", args=[api_key.pk]),
        reverse("admin:chatbot_answercacheentry_changelist"),
        reverse("admin:chatbot_answercacheentry_change", args=[entry.pk]),
    ]

    assert {url: client.get(url).status_code for url in urls} == dict.fromkeys(urls, 200)


def test_the_bot_list_shows_languages_providers_cache_and_a_try_link(client, bot):
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:chatbot_bot_changelist"))

    page = response.content.decode()
    assert "Sao Mai assistant" in page and "Vietnamese, English" in page and "Gemini → Bedrock" in page
    assert reverse("admin:chatbot_bot_try_bot", args=[bot.pk]) in page


def test_the_bot_list_searches_names_and_filters_by_knowledge_base(client, bot):
    other = Bot.objects.create(name="Night shift", slug="night", knowledge_base=make_knowledge_base("Other"))
    login_as(client, MANAGERS)
    url = reverse("admin:chatbot_bot_changelist")

    assert list(client.get(url, {"q": "sao mai"}).context["cl"].queryset) == [bot]
    assert list(
        client.get(url, {"knowledge_base__id__exact": other.knowledge_base_id}).context["cl"].queryset
    ) == [other]


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_roles_read_a_bot_but_cannot_change_it(client, bot, role):
    login_as(client, role)
    url = reverse("admin:chatbot_bot_change", args=[bot.pk])

    assert client.get(url).status_code == 200
    assert client.post(url, bot_form(bot, name="Hacked")).status_code == 403
    assert client.get(reverse("admin:chatbot_bot_add")).status_code == 403
    bot.refresh_from_db()
    assert bot.name == "Sao Mai assistant"


def test_the_bot_form_groups_settings_and_shows_which_providers_this_server_has(client, bot, settings):
    settings.GEMINI_API_KEY = ""
    login_as(client, None)

    response = client.get(reverse("admin:chatbot_bot_change", args=[bot.pk]))

    page = response.content.decode()
    for title in ("Identity &amp; knowledge", "Voice &amp; messages", "Model routing &amp; providers",
                  "Retrieval", "Answer cache"):  # fmt: skip
        assert title in page
    assert "✗ Gemini (set GEMINI_API_KEY)" in page
    assert "✓ Quoted passages (no LLM)" in page
    assert "Gemini (not configured here), then Bedrock" in page  # in the provider order choices


def test_a_bot_is_saved_from_language_checkboxes_and_a_provider_order_choice(client, bot):
    login_as(client, None)

    response = client.post(
        reverse("admin:chatbot_bot_change", args=[bot.pk]),
        bot_form(bot, languages=["en"], default_language="en", provider_order="bedrock,gemini"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    bot.refresh_from_db()
    assert (bot.languages, bot.default_language, bot.provider_order) == (["en"], "en", ["bedrock", "gemini"])


def test_choosing_no_llm_leaves_only_the_quoted_passages(client, bot):
    login_as(client, None)

    url = reverse("admin:chatbot_bot_change", args=[bot.pk])

    client.post(url, bot_form(bot, provider_order="extractive"))

    bot.refresh_from_db()
    assert bot.provider_order == ["extractive"]


def test_a_provider_order_set_elsewhere_stays_selected_and_unchanged_on_save(client, bot):
    Bot.objects.filter(pk=bot.pk).update(provider_order=["extractive", "gemini"])
    bot.refresh_from_db()
    login_as(client, None)
    url = reverse("admin:chatbot_bot_change", args=[bot.pk])

    assert '<option value="extractive,gemini" selected>' in client.get(url).content.decode()
    client.post(url, bot_form(bot, name="Renamed"))
    bot.refresh_from_db()
    assert (bot.name, bot.provider_order) == ("Renamed", ["extractive", "gemini"])


def test_the_bot_form_shows_the_model_validation_error_beside_the_field(client, bot):
    login_as(client, None)

    response = client.post(
        reverse("admin:chatbot_bot_change", args=[bot.pk]),
        bot_form(bot, languages=["en"], default_language="vi"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "default_language": ["Must be one of the bot's languages."]
    }
    assert "Must be one of the bot&#x27;s languages." in response.content.decode()
    bot.refresh_from_db()
    assert bot.languages == ["vi", "en"]


def test_a_new_api_key_is_shown_once_and_only_its_hash_is_stored(client, bot):
    user = login_as(client, None)

    response = client.post(
        reverse("admin:chatbot_apikey_add"), {"bot": bot.pk, "name": "shop backend"}, follow=True
    )

    api_key = ApiKey.objects.get()
    page = response.content.decode()
    token = page.split('class="api-key-token"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    secret = token.removeprefix(f"sk_bot_{api_key.lookup}_")
    assert secret != token
    assert api_key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert api_key_authenticate(token=token) == api_key
    assert (api_key.bot, api_key.name, api_key.created_by) == (bot, "shop backend", user)
    for url in (
        reverse("admin:chatbot_apikey_changelist"),
        reverse("admin:chatbot_apikey_change", args=[api_key.pk]),
        reverse("admin:chatbot_bot_change", args=[bot.pk]),
    ):
        again = client.get(url).content.decode()
        assert secret not in again and api_key.secret_hash not in again, url


def test_the_new_key_button_on_a_bot_opens_the_key_form_for_that_bot(client, bot):
    login_as(client, None)

    response = client.get(reverse("admin:chatbot_bot_new_api_key", args=[bot.pk]), follow=True)

    assert response.context["adminform"].form.initial["bot"] == str(bot.pk)


def test_revoking_keys_from_the_list_refuses_them_from_then_on(client, bot):
    login_as(client, None)
    revoked, revoked_token = api_key_create(bot=bot, name="old backend")
    kept, kept_token = api_key_create(bot=bot, name="new backend")

    client.post(
        reverse("admin:chatbot_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [revoked.pk]},
    )

    assert api_key_authenticate(token=revoked_token) is None
    assert api_key_authenticate(token=kept_token) == kept
    page = client.get(reverse("admin:chatbot_apikey_changelist"), {"status": "revoked"}).content.decode()
    assert "old backend" in page and "new backend" not in page


def test_revoking_from_the_key_page_asks_first_and_revokes_on_confirmation(client, bot):
    login_as(client, None)
    api_key, token = api_key_create(bot=bot, name="shop backend")
    url = reverse("admin:chatbot_apikey_revoke_key", args=[api_key.pk])

    question = client.get(url)
    assert 'id="revoke-form"' in question.content.decode()
    assert api_key_authenticate(token=token) == api_key

    done = client.post(url, follow=True)
    assert "is revoked" in done.content.decode()
    assert api_key_authenticate(token=token) is None


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_roles_see_keys_but_cannot_create_or_revoke_them(client, bot, role):
    api_key, token = api_key_create(bot=bot, name="shop backend")
    login_as(client, role)

    assert client.get(reverse("admin:chatbot_apikey_changelist")).status_code == 200
    assert (
        client.post(reverse("admin:chatbot_apikey_add"), {"bot": bot.pk, "name": "mine"}).status_code == 403
    )
    assert client.post(reverse("admin:chatbot_apikey_revoke_key", args=[api_key.pk])).status_code == 403
    client.post(
        reverse("admin:chatbot_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [api_key.pk]},
    )
    assert ApiKey.objects.count() == 1
    assert api_key_authenticate(token=token) == api_key


def test_cached_answers_are_listed_read_only_with_hits_and_expiry(client, bot):
    cache_entry(bot, "Mấy giờ mở cửa?", hits=3)
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:chatbot_answercacheentry_changelist"))

    page = response.content.decode()
    assert "Mấy giờ mở cửa?" in page and "Sao Mai assistant" in page
    assert [row.hits for row in response.context["cl"].result_list] == [3]
    assert "forget_answers" not in page  # only those who may delete can forget


def test_cached_answers_filter_by_bot(client, bot):
    other = Bot.objects.create(name="Night shift", slug="night", knowledge_base=bot.knowledge_base)
    cache_entry(bot, "Mấy giờ mở cửa?")
    cache_entry(other, "Giao hàng bao lâu?")
    login_as(client, None)

    response = client.get(reverse("admin:chatbot_answercacheentry_changelist"), {"bot__id__exact": other.pk})

    assert [entry.question for entry in response.context["cl"].result_list] == ["Giao hàng bao lâu?"]


def test_forgetting_cached_answers_deletes_only_the_selected_ones(client, bot):
    forgotten = cache_entry(bot, "Mấy giờ mở cửa?")
    kept = cache_entry(bot, "Giao hàng bao lâu?")
    login_as(client, None)

    response = client.post(
        reverse("admin:chatbot_answercacheentry_changelist"),
        {"action": "forget_answers", "_selected_action": [forgotten.pk]},
        follow=True,
    )

    assert "1 cached answer(s) forgotten." in response.content.decode()
    assert list(AnswerCacheEntry.objects.all()) == [kept]


def test_nobody_can_edit_a_cached_answer(client, bot):
    entry = cache_entry(bot, "Mấy giờ mở cửa?")
    login_as(client, None)

    response = client.post(
        reverse("admin:chatbot_answercacheentry_change", args=[entry.pk]), {"answer": "Something else"}
    )

    assert response.status_code == 403
    assert client.get(reverse("admin:chatbot_answercacheentry_add")).status_code == 403
