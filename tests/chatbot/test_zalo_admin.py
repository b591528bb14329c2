"""The Zalo admin pages: secrets only ever as their last 4 characters, rights checked per role."""

import pytest
from django.urls import reverse

from chatbot.models import ZaloAccount, ZaloEvent, ZaloOutboundMessage
from chatbot.zalo.outbox import outbox_add
from config.celery import app as celery_app
from config.roles import MANAGERS, SUPPORT_STAFF
from tests.accounts import login_as

pytestmark = pytest.mark.django_db

USER = "2468458835296197922"
SECRET_FIELDS = ("app_secret", "oa_secret_key", "access_token", "refresh_token")


@pytest.fixture
def account(zalo_bot) -> ZaloAccount:
    account = ZaloAccount.objects.get(bot=zalo_bot)
    account.last_error = "Zalo error -209: App has been not approved"
    account.save()
    return account


def secrets_of(account: ZaloAccount) -> list[str]:
    return [getattr(account, name) for name in SECRET_FIELDS]


def assert_no_secret_in(html: str, account: ZaloAccount) -> None:
    for secret in secrets_of(account):
        assert secret not in html
        assert f"••••{secret[-4:]}" in html


def change_form(account: ZaloAccount, **changes) -> dict:
    data = {
        "app_id": account.app_id,
        "oa_id": account.oa_id,
        "access_token_expires_at_0": account.access_token_expires_at.strftime("%Y-%m-%d"),
        "access_token_expires_at_1": account.access_token_expires_at.strftime("%H:%M:%S"),
        **{name: "" for name in SECRET_FIELDS},
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("role", [None, SUPPORT_STAFF, MANAGERS])
def test_every_zalo_page_renders_and_secrets_appear_only_as_their_last_4_characters(
    client, zalo_server, account, role
):
    login_as(client, role)
    event = ZaloEvent.objects.create(
        account=account, event_key="96d3cdf3af150460909a", event_name="user_send_text", sender_id=USER,
        payload={"message": {"text": "Xin chào"}}, status="failed", error="ValueError: boom",
    )  # fmt: skip
    [row] = outbox_add(account=account, user_id=USER, message_id=None, text="Chào bạn")

    pages = [
        reverse("admin:chatbot_zaloaccount_changelist"),
        reverse("admin:chatbot_zaloaccount_change", args=[account.pk]),
        reverse("admin:chatbot_zaloevent_changelist") + "?status__exact=failed&event_name=user_send_text",
        reverse("admin:chatbot_zaloevent_change", args=[event.pk]),
        reverse("admin:chatbot_zalooutboundmessage_changelist") + "?status__exact=pending",
        reverse("admin:chatbot_zalooutboundmessage_change", args=[row]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for secret in secrets_of(account):
            assert secret not in html, page

    assert_no_secret_in(client.get(pages[1]).content.decode(), account)
    assert "App has been not approved" in client.get(pages[0]).content.decode()
    assert "Xin chào" in client.get(pages[3]).content.decode()


def test_the_change_form_has_empty_secret_inputs_that_keep_the_stored_values(client, zalo_server, account):
    login_as(client, None)
    url = reverse("admin:chatbot_zaloaccount_change", args=[account.pk])
    stored = secrets_of(account)

    page = client.get(url).content.decode()
    response = client.post(url, change_form(account, oa_id="999"))

    assert 'type="password" name="app_secret"' in page and "Leave empty to keep it" in page
    assert response.status_code == 302, response.content.decode()[-3000:]
    account.refresh_from_db()
    assert secrets_of(account) == stored
    assert account.oa_id == "999"


def test_a_new_secret_typed_in_replaces_the_stored_one(client, zalo_server, account):
    login_as(client, None)

    client.post(
        reverse("admin:chatbot_zaloaccount_change", args=[account.pk]),
        change_form(account, oa_secret_key="NewOaSecretKey0002"),
    )

    account.refresh_from_db()
    assert account.oa_secret_key == "NewOaSecretKey0002"
    assert account.app_secret == zalo_server.app_secret


def test_a_new_refresh_token_reconnects_the_account_and_is_rotated_on_first_use(client, zalo_server, account):
    from chatbot.zalo import tokens

    login_as(client, None)
    ZaloAccount.objects.filter(pk=account.pk).update(needs_reconnect=True)
    _, fresh_refresh = zalo_server.issue_tokens()

    client.post(
        reverse("admin:chatbot_zaloaccount_change", args=[account.pk]),
        change_form(account, refresh_token=fresh_refresh, needs_reconnect="on"),
    )

    account.refresh_from_db()
    assert account.needs_reconnect is False and account.last_error == ""
    assert account.refresh_token == fresh_refresh and account.access_token_expires_at is None
    assert tokens.access_token(account_id=account.pk) == zalo_server.access_token
    assert zalo_server.refreshes == 1


def test_an_account_is_added_with_its_secrets_and_they_are_required(client, zalo_server, zalo_bot):
    from tests.fakes.zalo_fixtures import make_zalo_bot

    login_as(client, None)
    other = make_zalo_bot(zalo_server, slug="other")
    ZaloAccount.objects.filter(bot=other).delete()
    url = reverse("admin:chatbot_zaloaccount_add")
    base = {"bot": other.pk, "app_id": "42", "oa_id": "", "access_token": "", "access_token_expires_at_0": "",
            "access_token_expires_at_1": ""}  # fmt: skip

    missing = client.post(url, {**base, "app_secret": "", "oa_secret_key": "", "refresh_token": ""})
    created = client.post(
        url, {**base, "app_secret": "S3cretApp", "oa_secret_key": "S3cretOa", "refresh_token": "RT"}
    )

    assert missing.status_code == 200
    assert set(missing.context["adminform"].form.errors) == {"app_secret", "oa_secret_key", "refresh_token"}
    assert created.status_code == 302
    account = ZaloAccount.objects.get(bot=other)
    assert (account.app_secret, account.oa_secret_key, account.refresh_token) == (
        "S3cretApp",
        "S3cretOa",
        "RT",
    )


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_staff_roles_can_look_but_not_change_or_retry(client, zalo_server, account, role):
    login_as(client, role)
    [row] = outbox_add(account=account, user_id=USER, message_id=None, text="Chào bạn")
    ZaloOutboundMessage.objects.filter(pk=row).update(status="failed", error_code=-230)
    changelist = reverse("admin:chatbot_zalooutboundmessage_changelist")

    edit = client.post(reverse("admin:chatbot_zaloaccount_change", args=[account.pk]), change_form(account))
    add = client.get(reverse("admin:chatbot_zaloaccount_add"))
    retry = client.post(changelist, {"action": "retry_now", "_selected_action": [row]})

    assert edit.status_code == 403 and add.status_code == 403
    assert "retry_now" not in client.get(changelist).content.decode()
    assert retry.status_code in (200, 302)
    assert ZaloOutboundMessage.objects.get(pk=row).status == "failed"
    assert ZaloAccount.objects.get(pk=account.pk).app_secret == zalo_server.app_secret


def test_retry_now_sends_failed_messages_again(
    client, zalo_server, account, django_capture_on_commit_callbacks
):
    login_as(client, None)
    zalo_server.add_user(USER)
    [row] = outbox_add(account=account, user_id=USER, message_id=None, text="Chào bạn")
    ZaloOutboundMessage.objects.filter(pk=row).update(status="failed", error_code=-230, error="window")
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("admin:chatbot_zalooutboundmessage_changelist"),
                {"action": "retry_now", "_selected_action": [row]},
            )
    finally:
        celery_app.conf.task_always_eager = False

    assert response.status_code == 302
    assert ZaloOutboundMessage.objects.get(pk=row).status == "sent"
    assert [message.text for message in zalo_server.sent] == ["Chào bạn"]


def test_failed_events_can_be_queued_again_from_the_list(
    client, zalo_server, account, django_capture_on_commit_callbacks
):
    login_as(client, None)
    failed = ZaloEvent.objects.create(
        account=account, event_key="a", event_name="follow", sender_id=USER, payload={}, status="failed"
    )
    done = ZaloEvent.objects.create(
        account=account, event_key="b", event_name="follow", sender_id=USER, payload={}, status="processed"
    )

    with django_capture_on_commit_callbacks() as queued:
        client.post(
            reverse("admin:chatbot_zaloevent_changelist"),
            {"action": "process_again", "_selected_action": [failed.pk, done.pk]},
        )

    assert dict(ZaloEvent.objects.values_list("pk", "status")) == {failed.pk: "pending", done.pk: "processed"}
    assert len(queued) == 1
