"""`manage.py zalo_connect`: exchange the operator's refresh token and store the whole account."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chatbot.models import Bot, ZaloAccount
from tests.fakes.zalo_fixtures import make_zalo_bot
from tests.knowledge.helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot() -> Bot:
    return Bot.objects.create(name="Sao Mai assistant", slug="sao-mai", knowledge_base=make_knowledge_base())


def connect(server, slug: str = "sao-mai", **changes) -> str:
    arguments = {
        "app_id": server.app_id,
        "app_secret": server.app_secret,
        "oa_secret_key": server.oa_secret_key,
        "refresh_token": server.refresh_token,
        "oa_id": server.oa_id,
        **changes,
    }
    out = StringIO()
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in arguments.items()]
    call_command("zalo_connect", slug, *flags, stdout=out)
    return out.getvalue()


def test_it_exchanges_the_refresh_token_and_stores_the_credentials_and_the_rotated_pair(zalo_server, bot):
    given = zalo_server.refresh_token

    output = connect(zalo_server)

    account = ZaloAccount.objects.get(bot=bot)
    assert (account.app_id, account.app_secret, account.oa_secret_key, account.oa_id) == (
        zalo_server.app_id, zalo_server.app_secret, zalo_server.oa_secret_key, zalo_server.oa_id
    )  # fmt: skip
    assert zalo_server.refreshes == 1
    assert (account.access_token, account.refresh_token) == (
        zalo_server.access_token,
        zalo_server.refresh_token,
    )
    assert account.refresh_token != given
    assert account.access_token_expires_at > timezone.now() + timedelta(hours=24)
    assert "/webhooks/zalo/sao-mai/" in output
    assert account.access_token not in output and account.refresh_token not in output
    assert account.access_token[-4:] in output


def test_connecting_again_clears_the_reconnect_flag(zalo_server):
    bot = make_zalo_bot(zalo_server)
    ZaloAccount.objects.filter(bot=bot).update(
        needs_reconnect=True, last_error="Zalo refused the refresh token"
    )
    zalo_server.issue_tokens()

    connect(zalo_server)

    account = ZaloAccount.objects.get(bot=bot)
    assert account.needs_reconnect is False and account.last_error == ""
    assert ZaloAccount.objects.count() == 1


def test_a_refused_refresh_token_stores_nothing(zalo_server, bot):
    with pytest.raises(CommandError, match="refused the refresh token; nothing was stored"):
        connect(zalo_server, refresh_token="RT-spent-long-ago")

    assert ZaloAccount.objects.count() == 0


def test_zalo_unreachable_stores_nothing(zalo_server, bot):
    zalo_server.respond_next(502, b"bad gateway")

    with pytest.raises(CommandError, match="Could not reach Zalo; nothing was stored"):
        connect(zalo_server)

    assert ZaloAccount.objects.count() == 0


def test_an_unknown_bot_is_an_error(zalo_server, bot):
    with pytest.raises(CommandError, match="No bot with the slug 'nope'"):
        connect(zalo_server, slug="nope")

    assert zalo_server.token_requests() == []


def test_an_empty_secret_is_an_error_before_calling_zalo(zalo_server, bot):
    with pytest.raises(CommandError, match="--oa-secret-key"):
        connect(zalo_server, oa_secret_key=" ")

    assert zalo_server.token_requests() == []
