"""Per API key and per client address rate limits: fixed one-minute windows in Redis.

All counters of a request move in one Lua script, so checking costs one round trip
and two servers counting at once never lose an increment. When Redis is down the
API keeps answering (fail open, with a warning): a limit is a guard against abuse,
not a reason to refuse every customer.
"""

import ipaddress
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django_redis import get_redis_connection
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

from chatbot.api.errors import ApiError
from chatbot.models import ApiKey

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60

# For each key: INCR, start the window on the first hit, and return (count, ms left).
# A key found without a TTL (it should not happen) gets one, so it can never stick.
_HIT = Script(
    None,
    b"""
local out = {}
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
        redis.call('PEXPIRE', key, ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    out[#out + 1] = count
    out[#out + 1] = ttl
end
return out
""",
)


@dataclass(frozen=True)
class Bucket:
    scope: str  # "key" | "ip": which limit, for the error message
    key: str  # Redis key
    limit: int  # requests per window


@dataclass(frozen=True)
class Exceeded:
    scope: str
    limit: int
    retry_after: int  # seconds until the window resets


def rate_limit_hit(*, buckets: Sequence[Bucket]) -> Exceeded | None:
    """Count one request in every bucket; the bucket over its limit (longest wait), or None."""
    buckets = [bucket for bucket in buckets if bucket.limit > 0]
    if not buckets:
        return None
    try:
        counts = _HIT(
            keys=[bucket.key for bucket in buckets],
            args=[WINDOW_SECONDS * 1000],
            client=get_redis_connection("default"),
        )
    except RedisError as error:
        logger.warning("API rate limits not checked, Redis failed: %s: %s", type(error).__name__, error)
        return None
    exceeded = [
        Exceeded(bucket.scope, bucket.limit, max(1, math.ceil(int(ttl) / 1000)))
        for bucket, count, ttl in zip(buckets, counts[0::2], counts[1::2], strict=True)
        if int(count) > bucket.limit
    ]
    return max(exceeded, key=lambda item: item.retry_after, default=None)


def client_ip(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or behind our proxy the address it saw.

    X-Forwarded-For is only believed when SECURE_PROXY_SSL_HEADER says a proxy of
    ours is in front; then its last entry is the one that proxy added (the earlier
    ones are whatever the client sent, so they are never trusted).
    """
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if _is_ip(forwarded):
            return forwarded
    return request.META.get("REMOTE_ADDR") or "unknown"


def api_buckets(*, ip: str, api_key: ApiKey | None) -> list[Bucket]:
    buckets = [
        Bucket("ip", cache.make_key(f"ratelimit:api:ip:{ip}"), settings.API_RATE_LIMIT_PER_IP_PER_MINUTE)
    ]
    if api_key is not None:
        buckets.append(
            Bucket(
                "key",
                cache.make_key(f"ratelimit:api:key:{api_key.pk}"),
                settings.API_RATE_LIMIT_PER_KEY_PER_MINUTE,
            )
        )
    return buckets


class ApiRateLimit(BaseThrottle):
    """DRF throttle: the per-address limit always, the per-key limit once a key is known."""

    def allow_request(self, request, view) -> bool:
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        exceeded = rate_limit_hit(buckets=api_buckets(ip=client_ip(request), api_key=api_key))
        if exceeded is None:
            return True
        who = "this API key" if exceeded.scope == "key" else "your address"
        raise ApiError(
            status_code=429,
            code="rate_limited",
            message=(
                f"Rate limit of {exceeded.limit} requests a minute for {who} reached; "
                f"retry in {exceeded.retry_after} seconds."
            ),
            wait=exceeded.retry_after,
        )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
