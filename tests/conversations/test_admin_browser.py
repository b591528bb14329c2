"""Support staff read a conversation in a real browser: it must look like a chat."""

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from config.roles import SUPPORT_STAFF
from conversations.models import Message
from conversations.services import message_set_feedback
from tests.conversations.helpers import answer, ask, cited_answer, make_bot


@pytest.mark.django_db(transaction=True)
def test_the_transcript_shows_customer_bubbles_left_and_bot_bubbles_right(page, live_server):
    user = User.objects.create_user("support", password="secret-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT_STAFF))
    bot = make_bot("Sao Mai helper")
    first = ask("Cửa hàng mở cửa lúc mấy giờ vậy shop?", bot_id=bot.pk, name="Lan Nguyen", message_id="z1")
    message_set_feedback(message=cited_answer(first.message), feedback=Message.Feedback.UP)
    second = ask("Có bán thẻ quà tặng không?", bot_id=bot.pk, message_id="z2")
    answer(
        second.message,
        "Xin lỗi, mình chưa tìm thấy thông tin này. Bạn có muốn nói chuyện với nhân viên không?",
        outcome=Message.Outcome.DONT_KNOW,
        provider="gemini",
        model="gemini-3.1-flash-lite",
        input_tokens=640,
        output_tokens=22,
        cost="0.00004210",
        latency_ms=830,
    )
    third = ask("Giờ mở cửa chủ nhật?", bot_id=bot.pk, message_id="z3")
    source = {"number": 1, "document_id": 11, "document_title": "Store hours", "heading": "Giờ mở cửa"}
    answer(
        third.message,
        "Chủ nhật cửa hàng cũng mở từ 8 giờ đến 21 giờ [1].",
        outcome=Message.Outcome.CACHED,
        cache_hit=True,
        citations=[{**source, "chunk_id": 101}],
    )
    conversation = first.conversation

    transcript_path = f"/admin/conversations/conversation/{conversation.pk}/change/"

    page.goto(f"{live_server.url}/admin/login/?next={transcript_path}")
    page.fill("#id_username", "support")
    page.fill("#id_password", "secret-pw-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{transcript_path}")

    # A window as tall as the page, so the admin's sticky footer does not sit over the chat.
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": max(900, height)})
    screenshots = settings.VAR_DIR / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "conversation-transcript.png"), full_page=True)
    bubbles = page.locator("#transcript .conv-row")
    assert bubbles.count() == 6
    assert [bubbles.nth(index).get_attribute("data-role") for index in range(6)] == ["user", "assistant"] * 3
    box = page.locator("#transcript").bounding_box()
    left, right = box["x"], box["x"] + box["width"]
    for index in range(6):
        bubble = bubbles.nth(index).locator(".conv-bubble").bounding_box()
        if index % 2 == 0:  # the customer: against the left edge, clear of the right one
            assert bubble["x"] - left < 40 and right - (bubble["x"] + bubble["width"]) > 100
        else:  # the bot: against the right edge, clear of the left one
            assert right - (bubble["x"] + bubble["width"]) < 40 and bubble["x"] - left > 100
    sources = page.locator(".conv-bot .conv-source")
    assert sources.first.inner_text().startswith("1") and "Store hours" in sources.first.inner_text()
    assert page.get_by_text("Did not know").is_visible()
    assert page.get_by_text("Answered from cache").is_visible()
    assert page.get_by_text("$0.00012345").first.is_visible()
