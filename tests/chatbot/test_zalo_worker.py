"""The real path: Zalo posts to the webhook over HTTP, the Celery worker answers, the reply reaches Zalo."""

import pytest

from chatbot.models import ZaloEvent, ZaloOutboundMessage
from tests.conftest import wait_until
from tests.fakes.zalo_fixtures import make_zalo_bot

USER = "2468458835296197922"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_zalo_message_is_acknowledged_at_once_and_answered_by_the_worker(
    celery_worker_process, live_server, zalo_server
):
    bot = make_zalo_bot(zalo_server)
    zalo_server.webhook_url = f"{live_server.url}/webhooks/zalo/{bot.slug}/"

    greeting = zalo_server.user_sends_text(USER, "Xin chào")
    sticker = zalo_server.user_sends_sticker(USER)

    assert greeting.acked and sticker.acked
    assert all(attempt.latency < zalo_server.webhook_timeout_s for attempt in greeting.attempts)
    sent = zalo_server.wait_for_sends(2, timeout=90)
    assert sorted(message.text for message in sent) == sorted(
        [
            bot.greeting_vi,
            "Cảm ơn bạn! Hiện mình chỉ đọc được tin nhắn chữ. Bạn nhắn câu hỏi bằng chữ giúp mình nhé.",
        ]
    )
    wait_until(
        lambda: (
            set(ZaloEvent.objects.values_list("status", flat=True)) == {"processed"}
            and set(ZaloOutboundMessage.objects.values_list("status", flat=True)) == {"sent"}
        ),
        timeout=30,
        message="both events processed and both replies recorded as sent",
    )
    assert ZaloOutboundMessage.objects.count() == 2
