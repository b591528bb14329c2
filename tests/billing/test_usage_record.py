"""Writing the usage ledger: costed, append-only, and safe to repeat or race."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from billing.models import UsageEvent
from tests.billing.helpers import make_price, record
from tests.conftest import wait_until


@pytest.mark.django_db
def test_a_call_is_recorded_with_its_tokens_and_the_cost_from_todays_price():
    make_price(input_rate="0.30", output_rate="2.50", cached_rate="0.03")

    event = record(
        idempotency_key="answer:1",
        input_tokens=1_000,
        cached_tokens=400,
        output_tokens=200,
        thinking_tokens=100,
        latency_ms=850,
        channel="zalo",
        bot_id=7,
        contact_id=11,
        conversation_id=13,
        message_id=17,
    )

    event.refresh_from_db()
    # 600 * 0.30 + 400 * 0.03 + (200 + 100) * 2.50, per million
    assert event.cost == Decimal("0.000942")
    assert event.priced is True
    assert (event.input_tokens, event.cached_tokens, event.output_tokens, event.thinking_tokens) == (
        1_000,
        400,
        200,
        100,
    )
    assert (event.channel, event.bot_id, event.contact_id, event.conversation_id, event.message_id) == (
        "zalo",
        7,
        11,
        13,
        17,
    )
    assert event.latency_ms == 850


@pytest.mark.django_db
def test_a_call_to_a_model_with_no_price_is_recorded_unpriced_at_zero_cost():
    event = record(model="a-model-nobody-priced", input_tokens=5_000, output_tokens=500)

    event.refresh_from_db()
    assert event.priced is False
    assert event.cost == Decimal(0)
    assert event.input_tokens == 5_000


@pytest.mark.django_db
def test_recording_the_same_key_twice_keeps_one_row_and_the_first_values():
    make_price(input_rate="1.00", output_rate="1.00")
    first = record(idempotency_key="embed:doc-1:batch-a", input_tokens=100)

    again = record(idempotency_key="embed:doc-1:batch-a", input_tokens=999, latency_ms=5)

    assert UsageEvent.objects.filter(idempotency_key="embed:doc-1:batch-a").count() == 1
    assert again.pk == first.pk
    again.refresh_from_db()
    assert (again.input_tokens, again.cost, again.latency_ms) == (100, Decimal("0.0001"), 0)


@pytest.mark.django_db
def test_a_repeated_key_inside_the_callers_transaction_does_not_break_it():
    with transaction.atomic():
        record(idempotency_key="retry:1", input_tokens=1)
        record(idempotency_key="retry:1", input_tokens=2)
        record(idempotency_key="retry:2", input_tokens=3)

    assert sorted(UsageEvent.objects.values_list("idempotency_key", "input_tokens")) == [
        ("retry:1", 1),
        ("retry:2", 3),
    ]


def _in_thread(target, results: list, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target())
        except Exception as error:  # noqa: BLE001 - the test asserts there were none
            errors.append(error)
        finally:
            connections.close_all()

    return threading.Thread(target=run)


@pytest.mark.django_db(transaction=True)
def test_many_workers_recording_the_same_key_at_once_leave_one_row_and_raise_nothing():
    make_price(input_rate="1.00", output_rate="1.00")
    start = threading.Barrier(8)
    results: list[UsageEvent] = []
    errors: list[Exception] = []

    def attempt() -> UsageEvent:
        start.wait(timeout=10)
        return record(idempotency_key="race:many", input_tokens=10)

    threads = [_in_thread(attempt, results, errors) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert UsageEvent.objects.filter(idempotency_key="race:many").count() == 1
    assert len({event.pk for event in results}) == 1 and len(results) == 8


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_loses_the_insert_race_returns_the_winners_row():
    # Deterministic version of the race: the winner's row is inserted but not yet
    # committed when the loser looks for it, so the loser's own insert waits on the
    # unique index and then collides with the committed row.
    results: list[UsageEvent] = []
    errors: list[Exception] = []
    loser_pid: list[int] = []

    def lose() -> UsageEvent:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            loser_pid.append(cursor.fetchone()[0])
        return record(idempotency_key="race:one", input_tokens=2)

    with transaction.atomic():
        winner = record(idempotency_key="race:one", input_tokens=1)
        loser = _in_thread(lose, results, errors)
        loser.start()

        def loser_is_blocked() -> bool:
            if not loser_pid:
                return False
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [loser_pid[0]])
                return cursor.fetchone() is not None

        wait_until(loser_is_blocked, timeout=10, interval=0.05, message="the second insert to wait")
    loser.join(timeout=10)

    assert errors == []
    assert [event.pk for event in results] == [winner.pk]
    assert results[0].input_tokens == 1
    assert UsageEvent.objects.filter(idempotency_key="race:one").count() == 1


@pytest.mark.django_db
def test_a_cache_hit_with_no_tokens_costs_nothing_and_is_not_flagged_as_unpriced():
    event = record(kind=UsageEvent.Kind.CACHE_HIT, provider="cache", model="cache", cache_hit=True)

    event.refresh_from_db()
    assert (event.cost, event.priced, event.cache_hit) == (Decimal(0), True, True)
