"""What one model call costs: cost_of against the dated price list."""

import datetime
from decimal import Decimal

import pytest

from billing.services import cost_of, cost_round
from tests.billing.helpers import make_price

pytestmark = pytest.mark.django_db

DAY = datetime.date(2026, 11, 23)


def cost(**usage) -> Decimal | None:
    usage.setdefault("on", DAY)
    return cost_of(provider="testvendor", model="test-model", **usage)


def test_input_and_output_tokens_are_billed_at_their_own_rates():
    make_price(input_rate="0.30", output_rate="2.50")

    assert cost(input_tokens=1_000_000) == Decimal("0.30")
    assert cost(output_tokens=1_000_000) == Decimal("2.50")
    assert cost(input_tokens=2_000, output_tokens=500) == Decimal("0.00185")


def test_cached_tokens_are_billed_at_the_cache_rate_and_the_rest_of_the_input_at_the_input_rate():
    make_price(input_rate="1.00", output_rate="5.00", cached_rate="0.10")

    # 200 fresh tokens at $1/M + 800 cached at $0.10/M
    assert cost(input_tokens=1_000, cached_tokens=800) == Decimal("0.00028")


def test_cached_tokens_are_billed_at_the_input_rate_when_the_price_lists_no_cache_rate():
    make_price(input_rate="1.00", output_rate="5.00", cached_rate=None)

    assert cost(input_tokens=1_000, cached_tokens=800) == cost(input_tokens=1_000) == Decimal("0.001")


def test_cached_tokens_beyond_the_input_count_are_capped_at_it():
    make_price(input_rate="1.00", output_rate="5.00", cached_rate="0.10")

    # A vendor reporting more cached than prompt tokens never makes the fresh part negative.
    assert cost(input_tokens=1_000, cached_tokens=5_000) == Decimal("0.0001")
    assert cost(input_tokens=0, cached_tokens=5_000) == Decimal(0)


def test_thinking_tokens_are_billed_at_the_output_rate():
    make_price(input_rate="0.30", output_rate="2.50")

    assert cost(output_tokens=100, thinking_tokens=400) == cost(output_tokens=500) == Decimal("0.00125")


def test_costs_are_exact_decimals_with_no_float_drift():
    make_price(input_rate="0.30", output_rate="2.50")

    result = cost(input_tokens=1_234_567, output_tokens=7)

    assert isinstance(result, Decimal)
    # 1,234,567 * 0.30 / 1M = 0.3703701 and 7 * 2.50 / 1M = 0.0000175, summed exactly
    assert result == Decimal("0.3703876")
    assert sum(cost(input_tokens=1) for _ in range(10)) == Decimal("0.000003")


def test_a_cost_is_rounded_half_up_to_the_ledgers_eight_places():
    make_price(input_rate="0.025", output_rate="0.004")

    # One input token costs 0.000000025 and one output token 0.000000004: banker's
    # rounding would give 0.00000002 for the first.
    assert cost(input_tokens=1) == Decimal("0.00000003")
    assert cost(output_tokens=1) == Decimal("0.00000000")
    assert cost_round(Decimal("0.000000025")) == Decimal("0.00000003")
    assert cost_round(Decimal("0.0000000249999")) == Decimal("0.00000002")
    assert cost_round(Decimal("0.000000035")).as_tuple().exponent == -8


def test_a_large_call_keeps_every_digit():
    make_price(input_rate="1.50", output_rate="9.00")

    assert cost(input_tokens=123_456_789, output_tokens=98_765_432) == Decimal("1074.0740715")


def test_the_price_in_force_is_the_latest_one_dated_on_or_before_the_day():
    make_price(since=datetime.date(2026, 11, 1), input_rate="1.00")
    make_price(since=datetime.date(2026, 12, 1), input_rate="3.00")

    assert cost(input_tokens=1_000_000, on=datetime.date(2026, 10, 31)) is None
    assert cost(input_tokens=1_000_000, on=datetime.date(2026, 11, 1)) == Decimal("1.00")
    assert cost(input_tokens=1_000_000, on=datetime.date(2026, 11, 30)) == Decimal("1.00")
    assert cost(input_tokens=1_000_000, on=datetime.date(2026, 12, 1)) == Decimal("3.00")
    assert cost(input_tokens=1_000_000, on=datetime.date(2030, 1, 1)) == Decimal("3.00")


def test_a_model_missing_from_the_price_list_has_no_cost():
    make_price(model="test-model")

    assert cost_of(provider="testvendor", model="another-model", input_tokens=1_000, on=DAY) is None
    assert cost_of(provider="othervendor", model="test-model", input_tokens=1_000, on=DAY) is None
