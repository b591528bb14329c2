"""The price list in the admin: superusers keep it, managers read it, support staff never see it."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import ModelPrice
from config.roles import MANAGERS, SUPPORT_STAFF
from tests.accounts import login_as
from tests.billing.helpers import make_price

pytestmark = pytest.mark.django_db


def list_url() -> str:
    return reverse("admin:billing_modelprice_changelist")


def add_url() -> str:
    return reverse("admin:billing_modelprice_add")


def price_form(**fields) -> dict[str, str]:
    return {
        "provider": "testvendor",
        "model": "test-model",
        "effective_from": "2027-02-01",
        "input_per_million": "0.40",
        "output_per_million": "3.20",
        "cached_input_per_million": "",
        "note": "",
        **fields,
    }


def test_a_superuser_sees_each_price_with_its_rates_and_whether_it_is_in_force(client):
    login_as(client, None)
    today = timezone.localdate()
    make_price(since=today - datetime.timedelta(days=60), input_rate="0.035", output_rate="0.14")
    make_price(
        since=today - datetime.timedelta(days=1), input_rate="0.30", output_rate="2.50", cached_rate="0.03"
    )
    make_price(since=today + datetime.timedelta(days=30), input_rate="1.50", output_rate="9.00")

    response = client.get(list_url(), {"q": "test-model"})

    assert response.status_code == 200
    page = response.content.decode()
    assert [price.effective_from for price in response.context["cl"].result_list] == [
        today + datetime.timedelta(days=30),
        today - datetime.timedelta(days=1),
        today - datetime.timedelta(days=60),
    ]
    # Newest first, so the labels read scheduled, in force, superseded down the list.
    assert page.index("Scheduled") < page.index("In force") < page.index("Superseded")
    assert "$0.035" in page and "$0.14" in page and "$0.03" in page and "$9.00" in page
    assert "= input" in page
    assert "A price change is a new row with the date it takes effect" in page


def test_the_price_list_filters_by_provider_and_searches_model_ids(client):
    login_as(client, None)
    make_price(provider="testvendor", model="test-model")
    make_price(provider="othervendor", model="other-model")

    by_provider = client.get(list_url(), {"provider": "othervendor"}).context["cl"].result_list
    by_search = client.get(list_url(), {"q": "test-mod"}).context["cl"].result_list

    assert [price.model for price in by_provider] == ["other-model"]
    assert [price.model for price in by_search] == ["test-model"]


def test_a_superuser_adds_a_new_dated_price(client):
    login_as(client, None)

    response = client.post(add_url(), price_form(cached_input_per_million="0.04"))

    assert response.status_code == 302
    price = ModelPrice.objects.get(model="test-model")
    assert price.effective_from == datetime.date(2027, 2, 1)
    assert (str(price.input_per_million), str(price.output_per_million)) == ("0.400000", "3.200000")
    assert str(price.cached_input_per_million) == "0.040000"


def test_save_as_new_turns_the_current_price_into_a_new_dated_row_and_leaves_the_old_one(client):
    login_as(client, None)
    old = make_price(since=datetime.date(2026, 11, 1), input_rate="0.75", output_rate="3.75")

    response = client.post(
        reverse("admin:billing_modelprice_change", args=[old.pk]),
        price_form(
            effective_from="2027-01-01", input_per_million="1.50", output_per_million="7.50", _saveasnew="1"
        ),
    )

    assert response.status_code == 302
    rows = list(ModelPrice.objects.filter(model="test-model").order_by("effective_from"))
    assert [(row.effective_from, str(row.input_per_million)) for row in rows] == [
        (datetime.date(2026, 11, 1), "0.750000"),
        (datetime.date(2027, 1, 1), "1.500000"),
    ]


def test_a_second_price_for_the_same_model_and_day_is_refused_with_a_message(client):
    login_as(client, None)
    make_price(since=datetime.date(2027, 2, 1))

    response = client.post(add_url(), price_form())

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert ModelPrice.objects.filter(model="test-model").count() == 1


def test_a_negative_rate_is_refused(client):
    login_as(client, None)

    response = client.post(add_url(), price_form(output_per_million="-1"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["output_per_million"]
    assert not ModelPrice.objects.filter(model="test-model").exists()


def test_managers_read_the_price_list_but_cannot_add_or_change_a_price(client):
    login_as(client, MANAGERS)
    price = make_price(input_rate="1.00")
    change_url = reverse("admin:billing_modelprice_change", args=[price.pk])

    assert client.get(list_url()).status_code == 200
    assert client.get(change_url).status_code == 200
    assert client.get(add_url()).status_code == 403
    assert client.post(add_url(), price_form()).status_code == 403
    assert client.post(change_url, price_form(input_per_million="9")).status_code == 403
    assert (
        client.post(reverse("admin:billing_modelprice_delete", args=[price.pk]), {"post": "yes"}).status_code
        == 403
    )
    price.refresh_from_db()
    assert str(price.input_per_million) == "1.000000"


def test_support_staff_cannot_see_prices(client):
    login_as(client, SUPPORT_STAFF)
    price = make_price()

    assert client.get(list_url()).status_code == 403
    assert client.get(reverse("admin:billing_modelprice_change", args=[price.pk])).status_code == 403
