"""Widget rate limits: per address on every request, per visitor on what it writes.

The same fixed one-minute windows and Lua script as the REST API (chatbot.api.ratelimit),
under keys of their own. Reads are not counted per visitor: a shopper browsing page
after page reloads the conversation each time and must not run out of messages.
"""

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from chatbot.api.ratelimit import Bucket, client_ip, rate_limit_hit
from chatbot.models import Bot
from chatbot.widget.errors import WidgetError
from chatbot.widget.identity import WidgetIdentity


def widget_buckets(*, ip: str, bot: Bot, identity: WidgetIdentity | None) -> list[Bucket]:
    buckets = [
        Bucket(
            "ip", cache.make_key(f"ratelimit:widget:ip:{ip}"), settings.WIDGET_RATE_LIMIT_PER_IP_PER_MINUTE
        )
    ]
    if identity is not None:
        buckets.append(
            Bucket(
                "visitor",
                cache.make_key(f"ratelimit:widget:visitor:{bot.pk}:{identity.external_id}"),
                settings.WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE,
            )
        )
    return buckets


def widget_rate_limit(*, request: HttpRequest, bot: Bot, identity: WidgetIdentity | None = None) -> None:
    """Count the request; WidgetError 429 when a limit is reached. `identity`: a write by a visitor."""
    exceeded = rate_limit_hit(buckets=widget_buckets(ip=client_ip(request), bot=bot, identity=identity))
    if exceeded is None:
        return
    who = "you" if exceeded.scope == "visitor" else "your address"
    raise WidgetError(
        status=429,
        code="rate_limited",
        message=(
            f"Rate limit of {exceeded.limit} requests a minute for {who} reached; "
            f"retry in {exceeded.retry_after} seconds."
        ),
        retry_after=exceeded.retry_after,
    )
