import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum

from billing.models import ModelPrice, UsageEvent


def price_for(*, provider: str, model: str, on: datetime.date) -> ModelPrice | None:
    """The price in force for `model` on `on`: the latest row dated on or before it."""
    return (
        ModelPrice.objects.filter(provider=provider, model=model, effective_from__lte=on)
        .order_by("-effective_from")
        .first()
    )


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
