"""The OA's token pair: refreshed ahead of expiry, single-flight, saved before use, never reused."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chatbot.models import ZaloAccount
from chatbot.zalo import client, tokens
from chatbot.zalo.client import ZaloRefreshRevoked, ZaloTransient

USER = "2468458835296197922"


def account_of(bot) -> ZaloAccount:
    return ZaloAccount.objects.get(bot=bot)


def expire_soon(account: ZaloAccount, minutes: int = 30) -> None:
    ZaloAccount.objects.filter(pk=account.pk).update(
        access_token_expires_at=timezone.now() + timedelta(minutes=minutes)
    )


@pytest.mark.django_db
def test_a_token_valid_for_hours_is_used_as_it_is(zalo_server, zalo_bot):
    account = account_of(zalo_bot)

    token = tokens.access_token(account_id=account.pk)

    assert token == account.access_token
    assert zalo_server.token_requests() == []


@pytest.mark.django_db
def test_a_token_expiring_within_the_hour_is_refreshed_and_the_rotated_pair_is_saved(zalo_server, zalo_bot):
    account = account_of(zalo_bot)
    expire_soon(account)

    token = tokens.access_token(account_id=account.pk)

    account.refresh_from_db()
    assert zalo_server.refreshes == 1
    assert token == account.access_token == zalo_server.access_token
    assert account.refresh_token == zalo_server.refresh_token
    assert account.access_token_expires_at > timezone.now() + timedelta(hours=24)
    zalo_server.add_user(USER)
    assert client.send_text(access_token=token, user_id=USER, text="ok")


@pytest.mark.django_db
def test_a_forced_refresh_is_a_no_op_when_another_worker_already_rotated_the_pair(zalo_server, zalo_bot):
    account = account_of(zalo_bot)
    seen = account.access_token
    rotated = tokens.force_refresh(account_id=account.pk, seen_token=seen)

    again = tokens.force_refresh(account_id=account.pk, seen_token=seen)

    assert again == rotated != seen
    assert zalo_server.refreshes == 1


@pytest.mark.django_db
def test_a_rejected_refresh_token_flags_the_account_and_is_never_sent_again(zalo_server, zalo_bot):
    account = account_of(zalo_bot)
    zalo_server.issue_tokens()  # the stored refresh token is now dead at Zalo
    expire_soon(account)

    with pytest.raises(ZaloRefreshRevoked):
        tokens.access_token(account_id=account.pk)
    with pytest.raises(tokens.NeedsReconnect, match="zalo_connect"):
        tokens.access_token(account_id=account.pk)

    account.refresh_from_db()
    assert account.needs_reconnect is True
    assert "-14014" in account.last_error
    assert len(zalo_server.token_requests()) == 1


@pytest.mark.django_db
def test_a_refresh_lost_on_the_network_changes_nothing_stored(zalo_server, zalo_bot):
    account = account_of(zalo_bot)
    expire_soon(account)
    zalo_server.respond_next(500, b"oops")

    with pytest.raises(ZaloTransient):
        tokens.access_token(account_id=account.pk)

    stored = account_of(zalo_bot)
    assert (stored.access_token, stored.refresh_token) == (account.access_token, account.refresh_token)
    assert stored.needs_reconnect is False


@pytest.mark.django_db
def test_the_beat_refreshes_only_accounts_whose_token_expires_within_the_hour(zalo_server, zalo_bot):
    expire_soon(account_of(zalo_bot))

    assert tokens.refresh_expiring_tokens() == 1
    assert tokens.refresh_expiring_tokens() == 0
    assert zalo_server.refreshes == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_refreshing_at_once_make_one_refresh_and_both_get_the_new_token(zalo_server, zalo_bot):
    account = account_of(zalo_bot)
    seen = account.access_token
    zalo_server.revoke_access_tokens()  # Zalo refuses the stored access token: both workers force a refresh
    zalo_server.latency = 0.3  # the first refresh is still in flight when the second worker asks
    start = threading.Barrier(2)
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            start.wait()
            results[name] = tokens.force_refresh(account_id=account.pk, seen_token=seen)
        except Exception as error:  # noqa: BLE001 - surfaced by the assertions below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert zalo_server.refreshes == 1 and zalo_server.refused_refreshes == 0
    stored = account_of(zalo_bot)
    assert results == {"a": stored.access_token, "b": stored.access_token}
    assert stored.refresh_token == zalo_server.refresh_token
    zalo_server.latency = 0
    zalo_server.add_user(USER)
    assert client.send_text(access_token=stored.access_token, user_id=USER, text="works")
    assert client.refresh_access_token(
        app_id=stored.app_id, app_secret=stored.app_secret, refresh_token=stored.refresh_token
    ).access_token
