"""The price list the product starts with, seeded from the spec's price table."""

import datetime
from decimal import Decimal

import pytest

from billing.models import ModelPrice
from billing.selectors import price_for, price_list_with_status
from billing.services import cost_of
from knowledge.embedding.registry import EMBEDDING_MODELS
from tests.billing.helpers import seed_prices

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def seeded():
    seed_prices()


def test_gemini_3_8_flash_doubles_its_price_on_1_january_2027():
    usage = {"provider": "gemini", "model": "gemini-3.8-flash", "input_tokens": 1_000_000}
    usage_with_output = {**usage, "output_tokens": 1_000_000}

    assert cost_of(**usage, on=datetime.date(2026, 12, 31)) == Decimal("0.75")
    assert cost_of(**usage_with_output, on=datetime.date(2026, 12, 31)) == Decimal("4.50")
    assert cost_of(**usage, on=datetime.date(2027, 1, 1)) == Decimal("1.50")
    assert cost_of(**usage_with_output, on=datetime.date(2027, 1, 1)) == Decimal("9.00")


def test_every_embedding_model_a_knowledge_base_can_use_has_a_price():
    # The ingestion pipeline records the embedder's provider and model id; a mismatch
    # with the price list would leave every indexing call unpriced.
    for entry in EMBEDDING_MODELS.values():
        price = price_for(provider=entry.provider, model=entry.model, on=datetime.date(2026, 11, 23))
        assert price is not None, entry.key


def test_the_seeded_rates_match_the_spec_table():
    def rates(provider: str, model: str) -> tuple[Decimal, Decimal, Decimal | None]:
        price = price_for(provider=provider, model=model, on=datetime.date(2026, 11, 23))
        return price.input_per_million, price.output_per_million, price.cached_input_per_million

    assert rates("gemini", "gemini-embedding-001") == (Decimal("0.15"), Decimal(0), None)
    assert rates("gemini", "gemini-3-flash-preview") == (Decimal("0.50"), Decimal("3.00"), Decimal("0.05"))
    assert rates("gemini", "gemini-3.5-flash") == (Decimal("1.50"), Decimal("9.00"), None)
    assert rates("bedrock", "amazon.nova-micro-v1:0") == (Decimal("0.035"), Decimal("0.14"), None)
    assert rates("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0") == (
        Decimal("1.00"),
        Decimal("5.00"),
        Decimal("0.10"),
    )
    assert rates("local", "multilingual-e5-small") == (Decimal(0), Decimal(0), None)


def test_running_the_seed_again_adds_nothing_and_keeps_staff_corrections():
    ModelPrice.objects.filter(model="gemini-3.5-flash").update(note="checked by finance")
    count = ModelPrice.objects.count()

    seed_prices()

    assert ModelPrice.objects.count() == count
    assert ModelPrice.objects.get(model="gemini-3.5-flash").note == "checked by finance"


def test_each_price_row_knows_whether_it_is_in_force_scheduled_or_superseded():
    on = datetime.date(2026, 11, 23)

    rows = {
        price.effective_from: price.in_force_from
        for price in price_list_with_status(prices=ModelPrice.objects.filter(model="gemini-3.8-flash"), on=on)
    }

    introductory, regular = datetime.date(2026, 11, 1), datetime.date(2027, 1, 1)
    assert rows == {introductory: introductory, regular: introductory}
    later = price_list_with_status(prices=ModelPrice.objects.filter(model="gemini-3.8-flash"), on=regular)
    assert {price.in_force_from for price in later} == {regular}


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_price_list_is_read_once_and_a_change_is_seen_at_once(
    django_assert_num_queries,
):
    on = datetime.date(2026, 11, 23)
    with django_assert_num_queries(1):
        for _ in range(5):
            assert price_for(provider="gemini", model="gemini-3.5-flash", on=on).input_per_million == Decimal(
                "1.50"
            )

    ModelPrice.objects.create(
        provider="gemini",
        model="gemini-3.5-flash",
        effective_from=on,
        input_per_million="2.00",
        output_per_million="9",
    )

    assert price_for(provider="gemini", model="gemini-3.5-flash", on=on).input_per_million == Decimal("2.00")


def test_inside_a_transaction_an_uncommitted_price_is_never_kept_for_later(django_assert_num_queries):
    on = datetime.date(2026, 11, 23)
    make = {"provider": "testvendor", "model": "draft-model", "effective_from": on}
    ModelPrice.objects.create(
        **make, input_per_million="1", output_per_million="1"
    )  # rolled back after the test

    assert price_for(provider="testvendor", model="draft-model", on=on) is not None
    with django_assert_num_queries(1):  # read from the database, not from a copy
        price_for(provider="testvendor", model="draft-model", on=on)
