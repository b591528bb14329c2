"""The OA's access token, refreshed before it expires and when Zalo says it is invalid.

Zalo's refresh token is single-use: a refresh returns a new pair and kills the old
refresh token at once (specs/zalo-oa.md §6.4). So a refresh runs under a row lock on
the account (one at a time per OA), re-reads the row once it holds the lock (another
worker may have rotated the pair meanwhile) and commits the new pair before anyone
uses it. A refresh token Zalo rejected is never sent again: the account is flagged
for reconnection instead.
"""

import logging
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone

from chatbot.models import ZaloAccount
from chatbot.zalo import client
from chatbot.zalo.client import ZaloError, ZaloRefreshRevoked, ZaloTransient

logger = logging.getLogger(__name__)

# Zalo's access tokens live 25 hours; refreshing an hour early leaves room for a slow
# queue, and a daily refresh keeps the 3-month refresh token alive on a quiet OA.
REFRESH_AHEAD = timedelta(hours=1)


class NeedsReconnect(ZaloError):
    """The OA has no usable refresh token: an operator must run zalo_connect (or edit it in the admin)."""


def access_token(*, account_id: int) -> str:
    """A valid access token of the account, refreshed first when it is about to expire."""
    account = ZaloAccount.objects.get(pk=account_id)
    _require_connected(account)
    if _fresh(account):
        return account.access_token
    return _refresh(account_id, seen=account.access_token, force=False)


def force_refresh(*, account_id: int, seen_token: str) -> str:
    """A new access token after Zalo refused `seen_token`.

    A no-op returning the current token when another worker already rotated the pair
    since the caller read `seen_token`: refreshing again would burn a refresh token for nothing.
    """
    return _refresh(account_id, seen=seen_token, force=True)


def refresh_expiring_tokens() -> int:
    """Refresh every connected account whose access token expires within the hour; how many were."""
    due = ZaloAccount.objects.filter(
        needs_reconnect=False,
        access_token_expires_at__lt=timezone.now() + REFRESH_AHEAD,
    ).exclude(refresh_token="")
    refreshed = 0
    for account_id in due.values_list("pk", flat=True):
        try:
            access_token(account_id=account_id)
        except ZaloError as error:
            logger.warning("could not refresh the Zalo token of account %s: %s", account_id, error)
        else:
            refreshed += 1
    return refreshed


def _fresh(account: ZaloAccount) -> bool:
    expires = account.access_token_expires_at
    return bool(account.access_token) and expires is not None and expires > timezone.now() + REFRESH_AHEAD


def _require_connected(account: ZaloAccount) -> None:
    if account.needs_reconnect:
        raise NeedsReconnect(account.last_error or "The OA must be connected again (zalo_connect).")
    if not account.refresh_token and not _fresh(account):
        raise NeedsReconnect("The OA has no refresh token: connect it with zalo_connect.")


def _refresh(account_id: int, *, seen: str, force: bool) -> str:
    rejected: ZaloRefreshRevoked | None = None
    rotated = False
    try:
        with transaction.atomic():
            # Single flight: a second worker waits here, then finds the pair rotated.
            account = ZaloAccount.objects.select_for_update().get(pk=account_id)
            _require_connected(account)
            if force and account.access_token != seen:
                return account.access_token
            if not force and _fresh(account):
                return account.access_token
            try:
                pair = client.refresh_access_token(
                    app_id=account.app_id, app_secret=account.app_secret, refresh_token=account.refresh_token
                )
            except ZaloRefreshRevoked as error:
                rejected = error
                account.needs_reconnect = True
                account.last_error = f"{error} Connect the OA again (zalo_connect)."
                account.save(update_fields=["needs_reconnect", "last_error", "updated_at"])
            except ZaloTransient as error:
                # If the request reached Zalo before the failure, the refresh token may be
                # spent already; the next refresh will tell (and flag the account).
                logger.warning("Zalo token refresh of account %s failed: %s", account_id, error)
                raise
            else:
                now = timezone.now()
                account.access_token = pair.access_token
                account.refresh_token = pair.refresh_token
                account.access_token_expires_at = now + timedelta(seconds=pair.expires_in)
                account.refresh_token_issued_at = now
                account.last_error = ""
                rotated = True
                account.save(
                    update_fields=[
                        "access_token", "refresh_token", "access_token_expires_at",
                        "refresh_token_issued_at", "last_error", "updated_at",
                    ]
                )  # fmt: skip
                logger.info("rotated the Zalo token pair of account %s", account_id)
                return pair.access_token  # after the commit: persist, then use
    except DatabaseError:
        if rotated:
            # Zalo has already killed the old refresh token; with the new one unsaved the
            # grant is gone.
            logger.critical(
                "Zalo rotated the tokens of account %s but they could not be saved: "
                "connect the OA again (zalo_connect)",
                account_id,
            )
        raise
    assert rejected is not None
    raise rejected
