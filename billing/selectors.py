import datetime

from billing.models import ModelPrice


def price_for(*, provider: str, model: str, on: datetime.date) -> ModelPrice | None:
    """The price in force for `model` on `on`: the latest row dated on or before it."""
    return (
        ModelPrice.objects.filter(provider=provider, model=model, effective_from__lte=on)
        .order_by("-effective_from")
        .first()
    )
