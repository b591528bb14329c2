"""The outbox: every text part sent to a Zalo user is a row first, then a send.

A row is claimed by a conditional UPDATE (only one worker sends it), sent through
the client, and ends `sent`, `failed` (a reason that cannot pass: outside the 7-day
reply window, the user is gone, the message is refused) or back to `pending` with a
later `next_attempt_at` (rate limit, network, Zalo's 5xx, a token problem). The
parts of one reply go out in order: a part waits while an earlier part is pending.
"""

import logging
import random
import re
import unicodedata
from datetime import timedelta

from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from chatbot.models import ZaloAccount, ZaloOutboundMessage
from chatbot.zalo import client, tokens
from chatbot.zalo.client import (
    TEXT_LIMIT,
    ZaloAuthError,
    ZaloConfigError,
    ZaloError,
    ZaloPermanent,
    ZaloRateLimited,
    ZaloRefreshRevoked,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 15 * 60
RATE_LIMITED_MIN_SECONDS = 30  # Zalo's limit is per minute
# A send in flight holds its row this long; a worker that dies mid-send leaves the row
# due again afterwards (the part may then arrive twice, never zero times).
CLAIM_SECONDS = 90
DUE_BATCH = 200
KEEP_SENT = timedelta(days=30)

Status = ZaloOutboundMessage.Status

# Where a long answer may be cut, best first: between paragraphs, lines, sentences, words.
_BOUNDARIES = [re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?…][\"')\]]*\s"), re.compile(r"\s")]


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at the best boundary in each part's
    second half (a hard cut only for a run of `limit` characters without a space)."""
    # Zalo counts characters after NFC: a decomposed "ệ" would otherwise count as three.
    rest = unicodedata.normalize("NFC", text).strip()
    parts = []
    while len(rest) > limit:
        cut = _cut_at(rest[: limit + 1], limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _cut_at(window: str, limit: int) -> int:
    for boundary in _BOUNDARIES:
        ends = [match.end() for match in boundary.finditer(window, limit // 2) if match.end() <= limit]
        if ends:
            return ends[-1]
    return limit


def outbox_add(*, account: ZaloAccount, user_id: str, message_id: int | None, text: str) -> list[int]:
    """Rows for `text` (split at Zalo's limit) to `user_id`; their ids in sending order.

    Idempotent per stored message: adding the same reply again adds nothing.
    """
    rows = [
        ZaloOutboundMessage(account=account, user_id=user_id, message_id=message_id, part=index, text=part)
        for index, part in enumerate(split_text(text))
    ]
    if message_id is None:
        return [row.pk for row in ZaloOutboundMessage.objects.bulk_create(rows)]
    ZaloOutboundMessage.objects.bulk_create(rows, ignore_conflicts=True)
    return list(
        ZaloOutboundMessage.objects.filter(account=account, message_id=message_id)
        .order_by("part")
        .values_list("pk", flat=True)
    )


def outbox_send(*, outbox_ids: list[int]) -> list[str]:
    """Send these rows in order, stopping at the first that is not sent now; each row's status."""
    statuses = []
    for outbox_id in outbox_ids:
        status = outbox_send_one(outbox_id=outbox_id)
        statuses.append(status)
        if status != Status.SENT:
            break
    return statuses


def outbox_send_due(*, limit: int = DUE_BATCH) -> int:
    """Send the rows whose time has come (the beat calls this); how many were sent."""
    due = list(
        _sendable(ZaloOutboundMessage.objects.all(), timezone.now())
        .order_by("created_at", "part")
        .values("pk", "account_id", "message_id", "part")[:limit]
    )
    sent = 0
    for row in due:
        if outbox_send_one(outbox_id=row["pk"]) != Status.SENT:
            continue
        sent += 1
        if row["message_id"] is not None:
            # The parts that waited for this one go out now, not at the next beat.
            later = ZaloOutboundMessage.objects.filter(
                account_id=row["account_id"],
                message_id=row["message_id"],
                part__gt=row["part"],
                status=Status.PENDING,
            ).order_by("part")
            statuses = outbox_send(outbox_ids=list(later.values_list("pk", flat=True)))
            sent += statuses.count(Status.SENT)
    return sent


def outbox_retry(*, outbox_ids: list[int]) -> list[int]:
    """Failed rows back to pending, due now (an operator fixed the cause); the ids requeued."""
    rows = ZaloOutboundMessage.objects.filter(pk__in=outbox_ids, status=Status.FAILED)
    retried = list(rows.order_by("created_at", "part").values_list("pk", flat=True))
    ZaloOutboundMessage.objects.filter(pk__in=retried).update(
        status=Status.PENDING, attempts=0, next_attempt_at=None, error="", error_code=None
    )
    return retried


def outbox_purge_sent() -> int:
    deleted, _ = ZaloOutboundMessage.objects.filter(
        status=Status.SENT, sent_at__lt=timezone.now() - KEEP_SENT
    ).delete()
    return deleted


def outbox_send_one(*, outbox_id: int) -> str:
    """Try one row once, if it is due and no earlier part waits; its status afterwards."""
    now = timezone.now()
    claimed = _sendable(ZaloOutboundMessage.objects.filter(pk=outbox_id), now).update(
        attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)
    )
    row = ZaloOutboundMessage.objects.get(pk=outbox_id)
    if not claimed:
        return row.status
    try:
        zalo_message_id = _deliver(row)
    except (ZaloRefreshRevoked, tokens.NeedsReconnect) as error:
        # The account waits for an operator; the row goes out once the OA is connected again.
        return _retry_later(row, error)
    except ZaloPermanent as error:
        if isinstance(error, ZaloConfigError):
            _note_account_error(row.account_id, str(error))
        return _fail(row, error.code, str(error))
    except ZaloError as error:
        return _retry_later(row, error)
    except Exception as error:
        logger.exception("sending Zalo outbox row %s failed", outbox_id)
        return _retry_later(row, error)
    ZaloOutboundMessage.objects.filter(pk=row.pk).update(
        status=Status.SENT,
        sent_at=timezone.now(),
        zalo_message_id=zalo_message_id,
        next_attempt_at=None,
        error="",
        error_code=None,
    )
    return Status.SENT


def _sendable(rows, now):
    earlier_part_waits = ZaloOutboundMessage.objects.filter(
        account_id=OuterRef("account_id"),
        message_id=OuterRef("message_id"),
        part__lt=OuterRef("part"),
        status=Status.PENDING,
    )
    return rows.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        ~Exists(earlier_part_waits),
        status=Status.PENDING,
    )


def _deliver(row: ZaloOutboundMessage) -> str:
    token = tokens.access_token(account_id=row.account_id)
    try:
        return client.send_text(access_token=token, user_id=row.user_id, text=row.text)
    except ZaloAuthError:
        # Refused although not expired by our clock (revoked, or rotated elsewhere):
        # one refresh, unless another worker just did it, and one more try.
        token = tokens.force_refresh(account_id=row.account_id, seen_token=token)
        return client.send_text(access_token=token, user_id=row.user_id, text=row.text)


def _retry_later(row: ZaloOutboundMessage, error: Exception) -> str:
    code = getattr(error, "code", None)
    if row.attempts >= MAX_ATTEMPTS:
        return _fail(row, code, f"Gave up after {row.attempts} attempts. Last error: {error}")
    ZaloOutboundMessage.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=backoff_seconds(row.attempts, error)),
        error_code=code,
        error=str(error)[:2000],
    )
    return Status.PENDING


def _fail(row: ZaloOutboundMessage, code: int | None, message: str) -> str:
    logger.warning("Zalo outbox row %s failed: %s", row.pk, message)
    ZaloOutboundMessage.objects.filter(pk=row.pk).update(
        status=Status.FAILED, error_code=code, error=message[:2000], next_attempt_at=None
    )
    return Status.FAILED


def backoff_seconds(attempts: int, error: Exception) -> float:
    """Exponential backoff with jitter after `attempts` tries; at least a minute's share on -32."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    delay *= random.uniform(0.8, 1.2)
    if isinstance(error, ZaloRateLimited):
        delay = max(delay, RATE_LIMITED_MIN_SECONDS)
    return delay


def _note_account_error(account_id: int, text: str) -> None:
    ZaloAccount.objects.filter(pk=account_id).update(last_error=text[:2000], updated_at=timezone.now())
