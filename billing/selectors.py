import datetime
import time
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum

from billing.models import ModelPrice, UsageEvent

# Every model call is costed, often several per answer, from a list of a few dozen rows
# that changes a few times a year: each process keeps a copy of the whole list. A change
# made here is seen at once (billing.apps forgets the copy); other processes see it
# within this many seconds, and a change is normally entered ahead of its date anyway.
PRICE_LIST_SECONDS = 60.0

_price_list: tuple[float, dict[tuple[str, str], list[ModelPrice]]] | None = None


def price_for(*, provider: str, model: str, on: datetime.date) -> ModelPrice | None:
    """The price in force for `model` on `on`: the latest row dated on or before it."""
    prices = _price_list_copy()
    if prices is None:
        return (
            ModelPrice.objects.filter(provider=provider, model=model, effective_from__lte=on)
            .order_by("-effective_from")
            .first()
        )
    return next((price for price in prices.get((provider, model), ()) if price.effective_from <= on), None)


def price_list_forget() -> None:
    """Drop this process's copy of the price list; the next lookup reads it again."""
    global _price_list
    _price_list = None


def _price_list_copy() -> dict[tuple[str, str], list[ModelPrice]] | None:
    """This process's copy of the price list (each model's rows, latest first), or None.

    None inside a transaction when the copy is stale: the transaction may see rows of its
    own that are not committed (and may never be), which must not outlive it in a copy.
    """
    global _price_list
    copy = _price_list
    if copy is not None and time.monotonic() - copy[0] < PRICE_LIST_SECONDS:
        return copy[1]
    if connection.in_atomic_block:
        return None
    prices: dict[tuple[str, str], list[ModelPrice]] = {}
    for price in ModelPrice.objects.order_by("-effective_from"):
        prices.setdefault((price.provider, price.model), []).append(price)
    _price_list = (time.monotonic(), prices)
    return prices


def price_list_with_status(*, prices: QuerySet[ModelPrice], on: datetime.date) -> QuerySet[ModelPrice]:
    """`prices` annotated with `in_force_from`: the date of the row of the same model in force on `on`.

    A row is in force when its date equals it, scheduled when dated after `on`, and
    superseded otherwise; one correlated subquery, so the list stays a single query.
    """
    in_force = (
        ModelPrice.objects.filter(
            provider=OuterRef("provider"), model=OuterRef("model"), effective_from__lte=on
        )
        .order_by("-effective_from")
        .values("effective_from")[:1]
    )
    return prices.annotate(in_force_from=Subquery(in_force))


def price_list_providers() -> list[str]:
    return list(ModelPrice.objects.order_by("provider").values_list("provider", flat=True).distinct())


def price_list_models() -> list[str]:
    return list(ModelPrice.objects.order_by("model").values_list("model", flat=True).distinct())


@dataclass(frozen=True)
class UsageTotals:
    events: int
    cost: Decimal
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    thinking_tokens: int
    unpriced: int


def usage_totals(*, events: QuerySet[UsageEvent]) -> UsageTotals:
    """Count, cost and tokens of `events` (any filtered ledger queryset) in one query."""
    row = events.aggregate(
        count=Count("pk"),
        cost=Sum("cost"),
        input_tokens=Sum("input_tokens"),
        cached_tokens=Sum("cached_tokens"),
        output_tokens=Sum("output_tokens"),
        thinking_tokens=Sum("thinking_tokens"),
        unpriced=Count("pk", filter=Q(priced=False)),
    )
    return UsageTotals(
        events=row["count"],
        cost=row["cost"] or Decimal(0),
        input_tokens=row["input_tokens"] or 0,
        cached_tokens=row["cached_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
        thinking_tokens=row["thinking_tokens"] or 0,
        unpriced=row["unpriced"],
    )
