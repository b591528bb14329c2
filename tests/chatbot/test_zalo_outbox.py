"""The outbox: parts within Zalo's limit, sent in order, retried when it may pass, failed when it cannot."""

import unicodedata
from datetime import timedelta

import pytest
from django.utils import timezone

from chatbot.models import ZaloAccount, ZaloOutboundMessage
from chatbot.zalo import outbox
from chatbot.zalo.outbox import (
    MAX_ATTEMPTS,
    outbox_add,
    outbox_retry,
    outbox_send,
    outbox_send_due,
    split_text,
)
from chatbot.zalo.services import zalo_account_connect
from chatbot.zalo.tasks import purge_old_events, send_due_outbox, send_outbox

USER = "2468458835296197922"


def add(bot, text: str, message_id: int | None = 1) -> list[int]:
    return outbox_add(account=bot.zalo, user_id=USER, message_id=message_id, text=text)


def row(outbox_id: int) -> ZaloOutboundMessage:
    return ZaloOutboundMessage.objects.get(pk=outbox_id)


def make_due(*outbox_ids: int) -> None:
    ZaloOutboundMessage.objects.filter(pk__in=outbox_ids).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


# -- splitting ---------------------------------------------------------------------------


def test_a_short_answer_is_one_part():
    assert split_text("  Cửa hàng mở cửa lúc 8 giờ.  ") == ["Cửa hàng mở cửa lúc 8 giờ."]


def test_a_long_answer_is_cut_between_paragraphs_first():
    first, second = "A" * 1500, "B" * 1500

    assert split_text(f"{first}\n\n{second}") == [first, second]


def test_without_paragraphs_it_is_cut_after_a_sentence():
    sentence = "Shop giao hàng toàn quốc trong ba ngày làm việc. "  # 49 characters
    text = (sentence * 60).strip()

    parts = split_text(text)

    assert all(len(part) <= 2000 for part in parts)
    assert parts[0].endswith("việc.") and parts[1].startswith("Shop")
    assert " ".join(parts) == text


def test_without_sentences_it_is_cut_between_words():
    text = " ".join(["giohang"] * 600)

    parts = split_text(text)

    assert all(len(part) <= 2000 for part in parts)
    assert all(word == "giohang" for part in parts for word in part.split(" "))


def test_a_run_without_spaces_is_cut_hard_at_the_limit():
    assert [len(part) for part in split_text("x" * 4500)] == [2000, 2000, 500]


def test_decomposed_vietnamese_is_counted_after_nfc():
    decomposed = unicodedata.normalize("NFD", "Việt Nam ") * 220  # 1980 characters once composed

    assert len(decomposed) > 2000
    assert split_text(decomposed) == [unicodedata.normalize("NFC", decomposed).strip()]


# -- sending ---------------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db


@pytestmark_db
def test_rows_are_added_once_per_stored_reply(zalo_server, zalo_bot):
    first = add(zalo_bot, "A" * 2500, message_id=7)
    again = add(zalo_bot, "A" * 2500, message_id=7)

    assert first == again and len(first) == 2
    assert list(ZaloOutboundMessage.objects.order_by("part").values_list("part", "user_id")) == [
        (0, USER), (1, USER)
    ]  # fmt: skip


@pytestmark_db
def test_a_reply_outside_the_7_day_window_fails_at_once_with_zalos_code_and_message(zalo_server, zalo_bot):
    zalo_server.add_user(USER, days_since_interaction=8)
    [outbox_id] = add(zalo_bot, "Chào bạn, đơn hàng đã được giao.")

    assert outbox_send(outbox_ids=[outbox_id]) == ["failed"]

    failed = row(outbox_id)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", -230, 1)
    assert "not interacted with the OA in the past 7 days" in failed.error
    assert failed.next_attempt_at is None
    assert outbox_send_due() == 0 and len(zalo_server.send_requests()) == 1


@pytestmark_db
def test_a_blocked_user_fails_without_retries(zalo_server, zalo_bot):
    zalo_server.add_user(USER, blocked=True)
    [outbox_id] = add(zalo_bot, "Chào bạn")

    outbox_send(outbox_ids=[outbox_id])

    assert (row(outbox_id).status, row(outbox_id).error_code) == ("failed", -217)


@pytestmark_db
def test_a_rate_limited_send_waits_at_least_30_seconds_then_goes_out(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(error=-32, message="Your application reached limit call api")
    [outbox_id] = add(zalo_bot, "Chào bạn")

    assert send_outbox.apply(args=[[outbox_id]]).get() == ["pending"]
    waiting = row(outbox_id)
    assert (waiting.status, waiting.error_code) == ("pending", -32)
    assert waiting.next_attempt_at >= timezone.now() + timedelta(seconds=29)
    assert send_due_outbox.apply().get() == 0  # not due yet

    make_due(outbox_id)
    assert send_due_outbox.apply().get() == 1
    sent = row(outbox_id)
    assert (sent.status, sent.attempts, sent.error) == ("sent", 2, "")
    assert [message.text for message in zalo_server.sent] == ["Chào bạn"]


@pytestmark_db
def test_zalos_5xx_is_retried_with_backoff_until_it_gives_up_visibly(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(http_status=503, times=MAX_ATTEMPTS)
    [outbox_id] = add(zalo_bot, "Chào bạn")
    delays = []

    for _ in range(MAX_ATTEMPTS):
        make_due(outbox_id)
        started = timezone.now()
        outbox_send_due()
        if row(outbox_id).next_attempt_at:
            delays.append((row(outbox_id).next_attempt_at - started).total_seconds())

    failed = row(outbox_id)
    assert (failed.status, failed.attempts, failed.error_code) == ("failed", MAX_ATTEMPTS, 503)
    assert failed.error.startswith(f"Gave up after {MAX_ATTEMPTS} attempts")
    assert delays == sorted(delays) and delays[0] < 10 < delays[-1]
    assert zalo_server.sent == []


@pytestmark_db
def test_an_invalid_token_is_refreshed_once_and_the_send_retried(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.revoke_access_tokens()
    [outbox_id] = add(zalo_bot, "Chào bạn")

    assert outbox_send(outbox_ids=[outbox_id]) == ["sent"]

    assert zalo_server.refreshes == 1
    refused, accepted = (request.headers["access_token"] for request in zalo_server.send_requests())
    assert refused != accepted == ZaloAccount.objects.get().access_token


@pytestmark_db
def test_an_expired_token_by_zalos_clock_is_refreshed_too(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.expire_access_tokens()  # -220, although our clock says it has hours left
    [outbox_id] = add(zalo_bot, "Chào bạn")

    assert outbox_send(outbox_ids=[outbox_id]) == ["sent"]
    assert zalo_server.refreshes == 1


@pytestmark_db
def test_a_token_refused_again_after_the_refresh_is_retried_later_not_refreshed_in_a_loop(
    zalo_server, zalo_bot
):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(error=-216, times=2)
    [outbox_id] = add(zalo_bot, "Chào bạn")

    assert outbox_send(outbox_ids=[outbox_id]) == ["pending"]

    assert zalo_server.refreshes == 1
    assert row(outbox_id).error_code == -216


@pytestmark_db
def test_while_the_oa_needs_reconnecting_replies_wait_and_go_out_after_zalo_connect(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.revoke_access_tokens()
    zalo_server.issue_tokens()  # the stored refresh token is dead too: only a new consent helps
    [outbox_id] = add(zalo_bot, "Chào bạn")

    assert outbox_send(outbox_ids=[outbox_id]) == ["pending"]
    account = ZaloAccount.objects.get()
    assert account.needs_reconnect and "-14014" in account.last_error
    make_due(outbox_id)
    assert outbox_send_due() == 0  # the dead refresh token is not sent again
    assert len(zalo_server.token_requests()) == 1

    _, new_refresh = zalo_server.issue_tokens()
    zalo_account_connect(
        bot=zalo_bot, app_id=account.app_id, app_secret=account.app_secret,
        oa_secret_key=account.oa_secret_key, refresh_token=new_refresh,
    )  # fmt: skip
    make_due(outbox_id)
    assert outbox_send_due() == 1
    assert [message.text for message in zalo_server.sent] == ["Chào bạn"]


@pytestmark_db
def test_a_later_part_waits_while_an_earlier_part_is_retried(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(http_status=500)
    first, second = add(zalo_bot, "A" * 1500 + "\n\n" + "B" * 1500)

    assert outbox_send(outbox_ids=[first, second]) == ["pending"]
    ZaloOutboundMessage.objects.filter(pk=second).update(next_attempt_at=None)
    assert outbox_send_due() == 0  # the second part is due but must not overtake the first

    make_due(first)
    assert outbox_send_due() == 2
    assert [message.text[0] for message in zalo_server.sent] == ["A", "B"]


@pytestmark_db
def test_a_config_error_fails_the_row_and_shows_on_the_account(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(error=-209, message="App has been not approved")
    [outbox_id] = add(zalo_bot, "Chào bạn")

    outbox_send(outbox_ids=[outbox_id])

    assert row(outbox_id).status == "failed"
    assert "App has been not approved" in ZaloAccount.objects.get().last_error


@pytestmark_db
def test_failed_rows_can_be_retried_now(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    zalo_server.fail_next_sends(error=-230, message="User has not interacted with the OA in the past 7 days")
    [outbox_id] = add(zalo_bot, "Chào bạn")
    outbox_send(outbox_ids=[outbox_id])

    assert outbox_retry(outbox_ids=[outbox_id]) == [outbox_id]
    assert outbox_send(outbox_ids=[outbox_id]) == ["sent"]

    sent = row(outbox_id)
    assert (sent.status, sent.attempts, sent.error_code) == ("sent", 1, None)


@pytestmark_db
def test_a_row_being_sent_by_another_worker_is_not_sent_again(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    [outbox_id] = add(zalo_bot, "Chào bạn")
    ZaloOutboundMessage.objects.filter(pk=outbox_id).update(
        attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=outbox.CLAIM_SECONDS)
    )

    assert outbox_send(outbox_ids=[outbox_id]) == ["pending"]
    assert zalo_server.send_requests() == []


@pytestmark_db
def test_sent_rows_are_forgotten_after_30_days(zalo_server, zalo_bot):
    zalo_server.add_user(USER)
    old, recent = add(zalo_bot, "old", message_id=1)[0], add(zalo_bot, "recent", message_id=2)[0]
    outbox_send(outbox_ids=[old, recent])
    ZaloOutboundMessage.objects.filter(pk=old).update(sent_at=timezone.now() - timedelta(days=31))

    assert purge_old_events.apply().get() == {"events": 0, "sent_messages": 1}
    assert list(ZaloOutboundMessage.objects.values_list("pk", flat=True)) == [recent]
