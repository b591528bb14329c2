"""The usage ledger in the admin: read-only for everyone, with totals of what the filters select."""

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import UsageEvent
from config.roles import MANAGERS, SUPPORT_STAFF
from tests.accounts import login_as
from tests.billing.helpers import make_price, record

pytestmark = pytest.mark.django_db


def list_url() -> str:
    return reverse("admin:billing_usageevent_changelist")


def totals(response) -> dict[str, str]:
    return dict(re.findall(r'data-total="(\w+)"[^>]*>([^<]*)<', response.content.decode()))


def shown(response) -> set[str]:
    return {event.idempotency_key for event in response.context["cl"].result_list}


@pytest.fixture
def ledger() -> dict[str, UsageEvent]:
    make_price(
        provider="gemini", model="test-flash", input_rate="0.30", output_rate="2.50", cached_rate="0.03"
    )
    make_price(provider="local", model="test-e5", input_rate="0", output_rate="0")
    events = {
        "zalo-answer": record(
            idempotency_key="answer:zalo",
            provider="gemini",
            model="test-flash",
            input_tokens=10_000,
            cached_tokens=4_000,
            output_tokens=1_000,
            thinking_tokens=500,
            channel="zalo",
            bot_id=3,
            latency_ms=1_200,
        ),
        "web-answer": record(
            idempotency_key="answer:web",
            provider="gemini",
            model="test-flash",
            input_tokens=2_000,
            output_tokens=300,
            channel="web",
            bot_id=4,
        ),
        "cached-answer": record(
            idempotency_key="cache:web",
            kind=UsageEvent.Kind.CACHE_HIT,
            provider="gemini",
            model="test-flash",
            cache_hit=True,
            channel="web",
            bot_id=4,
        ),
        "embedding": record(
            idempotency_key="embed:doc-9:batch",
            kind=UsageEvent.Kind.EMBEDDING,
            provider="local",
            model="test-e5",
            input_tokens=50_000,
        ),
        "unpriced": record(
            idempotency_key="answer:unpriced",
            provider="bedrock",
            model="nobody-priced-this",
            input_tokens=700,
            output_tokens=70,
            channel="api",
        ),
    }
    # 6,000 * 0.30 + 4,000 * 0.03 + 1,500 * 2.50 per million; 2,000 * 0.30 + 300 * 2.50
    assert events["zalo-answer"].cost == Decimal("0.00567")
    assert events["web-answer"].cost == Decimal("0.00135")
    return events


def test_a_superuser_sees_every_call_with_tokens_cost_and_the_totals_above_the_list(client, ledger):
    login_as(client, None)

    response = client.get(list_url())

    assert response.status_code == 200
    assert shown(response) == {event.idempotency_key for event in ledger.values()}
    assert totals(response) == {
        "cost": "$0.00702",
        "unpriced": "1 call had no price",
        "events": "5",
        "input": "62,700",
        "cached": "4,000 read from the vendor's cache",
        "output": "1,370",
        "thinking": "and 500 thinking, billed as output",
    }
    page = response.content.decode()
    assert "1,000 + 500 thinking" in page and "$0.00567" in page and "1,200 ms" in page
    assert "no price" in page


def test_the_totals_follow_the_filters_not_the_page(client, ledger):
    login_as(client, None)

    response = client.get(list_url(), {"channel": "web", "kind__exact": "generation"})

    assert shown(response) == {"answer:web"}
    assert totals(response)["cost"] == "$0.00135"
    assert totals(response)["events"] == "1"
    assert "unpriced" not in totals(response)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind__exact": "embedding"}, {"embed:doc-9:batch"}),
        ({"kind__exact": "cache_hit"}, {"cache:web"}),
        ({"provider": "local"}, {"embed:doc-9:batch"}),
        ({"model": "test-flash"}, {"answer:zalo", "answer:web", "cache:web"}),
        ({"cache_hit__exact": "1"}, {"cache:web"}),
        ({"channel": "zalo"}, {"answer:zalo"}),
        ({"channel": "none"}, {"embed:doc-9:batch"}),
        ({"priced__exact": "0"}, {"answer:unpriced"}),
        ({"q": "embed:doc-9"}, {"embed:doc-9:batch"}),
        ({"q": "nobody-priced"}, {"answer:unpriced"}),
    ],
)
def test_each_filter_and_the_search_narrow_the_ledger(client, ledger, params, expected):
    login_as(client, None)

    response = client.get(list_url(), params)

    assert response.status_code == 200
    assert shown(response) == expected


def test_the_ledger_filters_by_date_and_drills_down_by_month(client, ledger):
    login_as(client, None)
    long_ago = timezone.now() - datetime.timedelta(days=60)
    UsageEvent.objects.filter(idempotency_key="answer:zalo").update(created_at=long_ago)
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    past_week = {
        "created_at__gte": str(midnight - datetime.timedelta(days=7)),
        "created_at__lt": str(midnight + datetime.timedelta(days=1)),
    }
    local = timezone.localtime(long_ago)

    recent = client.get(list_url(), past_week)
    that_month = client.get(list_url(), {"created_at__year": local.year, "created_at__month": local.month})

    assert shown(recent) == {event.idempotency_key for event in ledger.values()} - {"answer:zalo"}
    assert shown(that_month) == {"answer:zalo"}
    assert totals(that_month)["cost"] == "$0.00567"


def test_nobody_can_add_change_or_delete_a_ledger_row_not_even_a_superuser(client, ledger):
    login_as(client, None)
    event = ledger["zalo-answer"]
    change_url = reverse("admin:billing_usageevent_change", args=[event.pk])
    delete_url = reverse("admin:billing_usageevent_delete", args=[event.pk])

    detail = client.get(change_url)

    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert "answer:zalo" in detail.content.decode()
    assert client.get(reverse("admin:billing_usageevent_add")).status_code == 403
    assert (
        client.post(reverse("admin:billing_usageevent_add"), {"idempotency_key": "forged"}).status_code == 403
    )
    assert client.post(change_url, {"input_tokens": "1", "cost": "0"}).status_code == 403
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk_delete = client.post(
        list_url(), {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert bulk_delete.status_code in {200, 302}
    event.refresh_from_db()
    assert (event.input_tokens, event.cost) == (10_000, Decimal("0.00567"))
    assert UsageEvent.objects.count() == len(ledger)
    assert not UsageEvent.objects.filter(idempotency_key="forged").exists()


def test_managers_read_the_ledger_and_its_totals(client, ledger):
    login_as(client, MANAGERS)

    response = client.get(list_url())

    assert response.status_code == 200
    assert totals(response)["events"] == "5"
    assert (
        client.get(reverse("admin:billing_usageevent_change", args=[ledger["web-answer"].pk])).status_code
        == 200
    )
    assert client.get(reverse("admin:billing_usageevent_add")).status_code == 403


def test_support_staff_cannot_see_the_ledger(client, ledger):
    login_as(client, SUPPORT_STAFF)

    assert client.get(list_url()).status_code == 403
    assert (
        client.get(reverse("admin:billing_usageevent_change", args=[ledger["web-answer"].pk])).status_code
        == 403
    )


def test_an_empty_ledger_shows_zero_totals(client):
    login_as(client, MANAGERS)

    response = client.get(list_url())

    assert response.status_code == 200
    assert totals(response)["cost"] == "$0.00"
    assert totals(response)["events"] == "0"
