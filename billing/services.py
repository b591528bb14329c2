"""Writes to the usage ledger, costed from the price list."""

import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.utils import timezone

from billing.models import UsageEvent
from billing.selectors import price_for

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.00000001")  # the ledger's precision (UsageEvent.cost)


def cost_round(value: Decimal) -> Decimal:
    """The one place money is rounded: half up, to the ledger's 8 decimal places."""
    return value.quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def cost_of(
    *,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    thinking_tokens: int = 0,
    on: datetime.date | None = None,
) -> Decimal | None:
    """USD for one call, or None when the price list has no price for the model that day.

    `input_tokens` includes `cached_tokens` (vendors report it so); cached tokens are
    billed at the cache rate when one is listed. Thinking is billed as output.
    """
    price = price_for(provider=provider, model=model, on=on or timezone.localdate())
    if price is None:
        return None
    cached = min(cached_tokens, input_tokens)
    cached_rate = (
        price.input_per_million if price.cached_input_per_million is None else price.cached_input_per_million
    )
    total = (
        (input_tokens - cached) * price.input_per_million
        + cached * cached_rate
        + (output_tokens + thinking_tokens) * price.output_per_million
    ) / MILLION
    return cost_round(total)


def usage_record(
    *,
    idempotency_key: str,
    kind: str,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    thinking_tokens: int = 0,
    latency_ms: int = 0,
    cache_hit: bool = False,
    channel: str = "",
    bot_id: int | None = None,
    contact_id: int | None = None,
    conversation_id: int | None = None,
    message_id: int | None = None,
    knowledge_base_id: int | None = None,
    document_id: int | None = None,
) -> UsageEvent:
    """Append one costed usage row; recording the same key again returns the first row unchanged."""
    if input_tokens or output_tokens or cached_tokens or thinking_tokens:
        cost = cost_of(
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            thinking_tokens=thinking_tokens,
        )
    else:
        # Nothing was sent to a model (an answer-cache hit): it costs nothing whatever
        # the price list says, so it must not be flagged as an unpriced call.
        cost = Decimal(0)
    fields = {
        "idempotency_key": idempotency_key,
        "kind": kind,
        "provider": provider,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_tokens": cached_tokens,
        "thinking_tokens": thinking_tokens,
        "cost": cost if cost is not None else Decimal(0),
        "priced": cost is not None,
        "latency_ms": latency_ms,
        "cache_hit": cache_hit,
        "channel": channel,
        "bot_id": bot_id,
        "contact_id": contact_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "knowledge_base_id": knowledge_base_id,
        "document_id": document_id,
        "created_at": timezone.now(),
    }
    # One round trip on the hot path (every answer writes a row or two). Safe under a
    # race: a loser's insert waits on the unique index until the winner commits, then
    # does nothing, and the read below sees the winner's row (READ COMMITTED).
    columns = ", ".join(fields)
    values = ", ".join(f"%({name})s" for name in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {UsageEvent._meta.db_table} ({columns}) VALUES ({values}) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            fields,
        )
        row = cursor.fetchone()
    if row is None:
        return UsageEvent.objects.get(idempotency_key=idempotency_key)
    return UsageEvent.from_db("default", ["id", *fields], [row[0], *fields.values()])
