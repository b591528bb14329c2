"""Small builders for billing tests: prices and ledger rows through the real services."""

import datetime
import importlib
import itertools
from decimal import Decimal

from django.apps import apps

from billing.models import ModelPrice, UsageEvent
from billing.services import usage_record

LONG_AGO = datetime.date(2000, 1, 1)
_keys = itertools.count(1)


def seed_prices() -> None:
    """Run the seed migration's own code: a flush by a transactional test elsewhere in the
    session (or an earlier run on a reused test database) empties the table it filled."""
    importlib.import_module("billing.migrations.0003_seed_prices").seed(apps, None)


def make_price(
    *,
    provider: str = "testvendor",
    model: str = "test-model",
    since: datetime.date = LONG_AGO,
    input_rate: str = "1.00",
    output_rate: str = "2.00",
    cached_rate: str | None = None,
) -> ModelPrice:
    return ModelPrice.objects.create(
        provider=provider,
        model=model,
        effective_from=since,
        input_per_million=Decimal(input_rate),
        output_per_million=Decimal(output_rate),
        cached_input_per_million=None if cached_rate is None else Decimal(cached_rate),
    )


def record(**fields) -> UsageEvent:
    fields.setdefault("idempotency_key", f"test:{next(_keys)}")
    fields.setdefault("kind", UsageEvent.Kind.GENERATION)
    fields.setdefault("provider", "testvendor")
    fields.setdefault("model", "test-model")
    return usage_record(**fields)
