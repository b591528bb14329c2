"""Reads for the Zalo channel."""

from chatbot.models import ZaloAccount


def zalo_account_for_webhook(*, bot_slug: str) -> ZaloAccount | None:
    """The Zalo account of the bot with this slug, or None: one query, only what the webhook checks.

    Every webhook pays for this; loading the bot's ~40 columns as well tripled its cost.
    """
    found = ZaloAccount.objects.filter(bot__slug=bot_slug).only("id", "bot_id", "app_id", "oa_secret_key")[:1]
    return next(iter(found), None)


def secret_hint(value: str) -> str:
    """A stored secret as people may see it: its last 4 characters only."""
    if not value:
        return "(not set)"
    return f"••••{value[-4:]}" if len(value) > 8 else "••••"
