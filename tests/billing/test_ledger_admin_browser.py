"""A manager reads the usage ledger and its totals in a real browser."""

import pytest
from django.contrib.auth.models import Group, User

from billing.models import UsageEvent
from config.roles import MANAGERS
from tests.billing.helpers import make_price, record


@pytest.mark.django_db(transaction=True)
def test_a_manager_sees_the_totals_above_the_ledger_and_follows_the_unpriced_link(page, live_server):
    user = User.objects.create_user("manager", password="secret-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=MANAGERS))
    make_price(provider="gemini", model="test-flash", input_rate="0.30", output_rate="2.50")
    record(idempotency_key="answer:1", provider="gemini", model="test-flash", input_tokens=10_000,
           output_tokens=2_000, channel="zalo")  # fmt: skip
    record(idempotency_key="answer:2", provider="bedrock", model="nobody-priced-this", input_tokens=500,
           channel="web")  # fmt: skip
    UsageEvent.objects.update(bot_id=1)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", "secret-pw-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/admin/billing/usageevent/")

    totals = page.locator("#usage-totals")
    assert totals.locator('[data-total="cost"]').inner_text() == "$0.008"
    assert totals.locator('[data-total="events"]').inner_text() == "2"
    assert page.locator("#result_list tbody tr").count() == 2
    totals.locator('[data-total="unpriced"]').click()
    page.wait_for_url("**priced__exact=0")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "nobody-priced-this" in page.locator("#result_list").inner_text()
    assert page.locator("#usage-totals [data-total='cost']").inner_text() == "$0.00"
