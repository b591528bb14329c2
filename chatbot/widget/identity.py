"""Who is writing: an anonymous visitor of one browser, or a shop customer the shop vouches for.

A visitor is a random UUID the widget keeps in localStorage; the contact is
"visitor:<uuid>". A logged-in customer comes with the shop's own user id and
HMAC-SHA256(bot.widget_identity_secret, user_id) in hex, computed on the shop's
server; the contact is then "user:<user_id>", the same on every device. A hash that
does not verify is refused: falling back to an anonymous visitor would hide a
broken integration and mix the customer's conversations.
"""

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from chatbot.models import Bot
from chatbot.widget.errors import WidgetError

VISITOR_PREFIX = "visitor:"
USER_PREFIX = "user:"
MAX_USER_ID_CHARS = 200 - len(USER_PREFIX)  # Contact.external_id holds 200
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class WidgetIdentity:
    external_id: str  # the web contact's external id
    display_name: str = ""

    @property
    def is_user(self) -> bool:
        return self.external_id.startswith(USER_PREFIX)


def identity_sign(*, secret: str, user_id: str) -> str:
    """What the shop's server computes: hex HMAC-SHA256 of the user id (UTF-8) under the secret."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_verify(*, secret: str, user_id: str, user_hash: str) -> bool:
    if not secret or not user_hash:
        return False
    expected = identity_sign(secret=secret, user_id=user_id)
    return hmac.compare_digest(expected.encode(), user_hash.strip().lower().encode())


def identity_resolve(
    *, bot: Bot, visitor_id: str, user_id: str = "", user_hash: str = "", display_name: str = ""
) -> WidgetIdentity:
    """The identity a widget request speaks for; WidgetError when it cannot be trusted."""
    if user_id or user_hash:
        if not user_id or len(user_id) > MAX_USER_ID_CHARS or not user_id.isprintable():
            raise WidgetError(
                status=400,
                code="invalid_user_id",
                message=f"The user id must be 1 to {MAX_USER_ID_CHARS} printable characters.",
            )
        if not bot.widget_identity_secret:
            raise WidgetError(
                status=403,
                code="identity_not_enabled",
                message="This bot has no identity secret, so signed user ids cannot be checked.",
            )
        if not identity_verify(secret=bot.widget_identity_secret, user_id=user_id, user_hash=user_hash):
            raise WidgetError(
                status=403,
                code="invalid_identity",
                message="The user hash does not match the user id: sign it with the bot's identity secret.",
            )
        return WidgetIdentity(f"{USER_PREFIX}{user_id}", display_name=display_name.strip()[:MAX_NAME_CHARS])
    try:
        visitor = uuid.UUID(visitor_id)
    except (ValueError, TypeError, AttributeError):
        raise WidgetError(
            status=400, code="invalid_visitor", message="Send the visitor id (a UUID) the widget keeps."
        ) from None
    # A visitor's name would only be what the page claims; it is not stored.
    return WidgetIdentity(f"{VISITOR_PREFIX}{visitor}")
