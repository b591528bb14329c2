"""API keys: create (the token is shown once), authenticate, revoke.

A token reads `sk_bot_<lookup>_<secret>`: the lookup part finds the row with one
indexed query, and only a SHA-256 hash of the secret part is stored. The secret is
32 random bytes, so a fast hash is enough (no password stretching needed).
"""

import hmac
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from chatbot.models import ApiKey, Bot

# last_used_at is for people ("is this key still in use?"), so a write per request
# would be pure cost on the hot path; once a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)
LOOKUP_LENGTH = 16


def api_key_create(*, bot: Bot, name: str, created_by: AbstractBaseUser | None = None) -> tuple[ApiKey, str]:
    """A new key for `bot` and its full token, which is not stored and cannot be shown again."""
    token, lookup, secret_hash = ApiKey.new_token()
    api_key = ApiKey.objects.create(
        bot=bot, name=name, lookup=lookup, secret_hash=secret_hash, created_by=created_by
    )
    return api_key, token


def api_key_authenticate(*, token: str) -> ApiKey | None:
    """The active key the token belongs to (its bot and knowledge base loaded), or None.

    None for anything that is not exactly a live key of ours: malformed, unknown,
    wrong secret, or revoked.
    """
    lookup, secret = _split(token)
    if not lookup:
        return None
    api_key = ApiKey.objects.select_related("bot__knowledge_base").filter(lookup=lookup).first()
    if api_key is None:
        return None
    if not hmac.compare_digest(ApiKey.hash_secret(secret), api_key.secret_hash):
        return None
    if not api_key.is_active:
        return None
    _touch(api_key)
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Refuse the key from now on; revoking twice keeps the first time."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def _split(token: str) -> tuple[str, str]:
    if not token.startswith(ApiKey.PREFIX):
        return "", ""
    # The lookup is hex, so the first "_" after the prefix ends it; the secret
    # (URL-safe base64) may hold more underscores.
    lookup, _, secret = token[len(ApiKey.PREFIX) :].partition("_")
    if len(lookup) != LOOKUP_LENGTH or not secret:
        return "", ""
    return lookup, secret


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at > stale:
        return
    # Conditional, so concurrent requests of the same minute write once between them.
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
    ).update(last_used_at=now)
    api_key.last_used_at = now
