"""API key services: a token shown once, only its hash stored, revoked keys refused."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from chatbot.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from chatbot.models import ApiKey, Bot
from tests.knowledge.helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(name="Shop", slug="shop", knowledge_base=make_knowledge_base("Shop"))


def test_a_new_key_returns_a_token_that_authenticates_as_its_bot(bot):
    staff = User.objects.create_user("owner")

    api_key, token = api_key_create(bot=bot, name="shop backend", created_by=staff)

    assert token.startswith(f"sk_bot_{api_key.lookup}_")
    assert api_key_authenticate(token=token) == api_key
    assert api_key.created_by == staff and api_key.bot == bot


def test_only_a_hash_of_the_secret_is_stored(bot):
    api_key, token = api_key_create(bot=bot, name="backend")

    secret = token.removeprefix(f"sk_bot_{api_key.lookup}_")
    row = ApiKey.objects.values().get(pk=api_key.pk)
    assert secret not in str(row)
    assert row["secret_hash"] == ApiKey.hash_secret(secret)


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # wrong secret
        lambda token: token.replace("sk_bot_", "sk_live_"),  # wrong prefix
        lambda token: "sk_bot_0123456789abcdef_" + token.rsplit("_", 1)[-1],  # unknown lookup
        lambda token: token.rsplit("_", 1)[0],  # secret missing
        lambda token: "",
        lambda token: "sk_bot_",
    ],
)
def test_a_token_that_is_not_exactly_a_key_is_refused(bot, forge):
    _, token = api_key_create(bot=bot, name="backend")

    assert api_key_authenticate(token=forge(token)) is None


def test_a_revoked_key_is_refused_and_revoking_again_keeps_the_first_time(bot):
    api_key, token = api_key_create(bot=bot, name="backend")

    api_key_revoke(api_key=api_key)
    first = api_key.revoked_at
    api_key_revoke(api_key=api_key)

    assert api_key_authenticate(token=token) is None
    assert first is not None and api_key.revoked_at == first
    assert not api_key.is_active


def test_authenticating_costs_one_query_and_writes_last_used_at_at_most_once_a_minute(
    bot, django_assert_num_queries
):
    api_key, token = api_key_create(bot=bot, name="backend")

    api_key_authenticate(token=token)  # first use: lookup + the last_used_at write
    first_use = ApiKey.objects.get(pk=api_key.pk).last_used_at
    with django_assert_num_queries(1):
        authenticated = api_key_authenticate(token=token)
    assert authenticated.bot.knowledge_base.name == "Shop"  # loaded by that one query
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first_use

    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    api_key_authenticate(token=token)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first_use
