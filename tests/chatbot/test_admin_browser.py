"""Support staff try the bot in a real browser: ask, read the reply, read the panel."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from billing.models import ModelPrice
from chatbot.models import Bot
from config.roles import SUPPORT_STAFF
from knowledge.models import Document
from tests.chatbot.shop import HOURS
from tests.conftest import PROJECT_DIR, wait_until
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

SCREENSHOTS = PROJECT_DIR / "var" / "screenshots"
DELIVERY = (
    "# Giao hàng\n\nPhí giao hàng nội thành là 20.000 đồng. Đơn từ 500.000 đồng được miễn phí giao hàng. "
    "Đơn đặt trước 12 giờ trưa được giao ngay trong ngày.\n\n"
    "# Delivery\n\nDelivery inside the city costs 20,000 VND. Orders over 500,000 VND ship free."
)


def ready_bot() -> Bot:
    knowledge_base = make_knowledge_base("Sao Mai")
    for title, text in (("Delivery", DELIVERY), ("Store hours", HOURS)):
        document = paste(knowledge_base, text, title=title)
        ingest(document)
        # A suite's Celery worker may have claimed the version first: wait for either to finish.
        wait_until(
            lambda pk=document.pk: Document.objects.get(pk=pk).status == Document.Status.READY,
            timeout=60,
            message=f"{title} to be ready",
        )
    return Bot.objects.create(name="Sao Mai assistant", slug="sao-mai", knowledge_base=knowledge_base)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.evaluate("window.scrollTo(0, 0)")  # the sticky sidebar is drawn where the view is
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.django_db(transaction=True)
def test_support_staff_ask_the_bot_and_see_the_reply_and_how_it_was_made(
    page, live_server, gemini_server, fresh_redis
):
    user = User.objects.create_user("support", password="secret-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT_STAFF))
    bot = ready_bot()
    # Transactional tests flush the seeded price list; the panel should show a real cost.
    ModelPrice.objects.get_or_create(
        provider="gemini",
        model="gemini-3.1-flash-lite",
        effective_from=date(2025, 1, 1),
        defaults={"input_per_million": Decimal("0.25"), "output_per_million": Decimal("1.50")},
    )
    question = "Phí giao hàng nội thành là bao nhiêu vậy shop?"

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "support")
    page.fill("#id_password", "secret-pw-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/admin/chatbot/bot/")
    page.get_by_role("link", name="Try the bot").click()
    page.wait_for_url(f"**/admin/chatbot/bot/{bot.pk}/try/")
    gemini_server.script_reply(
        "Phí giao hàng nội thành là 20.000 đồng; đơn từ 500.000 đồng được miễn phí giao hàng [1]. "
        "Nếu bạn đặt trước 12 giờ trưa, đơn sẽ được giao ngay trong ngày [1]."
    )
    page.fill("#try-form textarea", question)
    page.press("#try-form textarea", "Enter")

    page.locator('#transcript [data-role="assistant"]').wait_for()
    reply = page.locator('#transcript [data-role="assistant"] .tb-bubble').first.inner_text()
    assert "20.000" in reply
    assert "Delivery" in page.locator("#transcript .tb-citations").inner_text()
    panel = page.locator("#panel").inner_text()
    assert "gemini-3.1-flash-lite" in panel and "Simple" in panel and "in ·" in panel
    assert page.locator("#stat-cost dd").inner_text().startswith("$0.0001")
    assert page.locator("#sources tbody tr").first.get_attribute("data-chunk-id")
    assert "cited" in page.locator("#sources tbody tr").first.inner_text().lower()
    assert screenshot(page, "try-the-bot.png").stat().st_size > 10_000

    page.fill("#try-form textarea", question)
    page.click("#try-form button[type=submit]")
    page.locator('#transcript [data-role="assistant"]').nth(1).wait_for()
    assert "Yes, exact match" in page.locator("#stat-cache").inner_text()
    assert "similarity 1.0000" in page.locator("#stat-cache").inner_text()
    screenshot(page, "try-the-bot-cached.png")

    page.click("#start-over-form button")
    page.locator("#transcript .tb-empty").wait_for()
