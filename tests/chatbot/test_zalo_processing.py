"""Processing stored Zalo events: answers, polite replies, greetings, silence; each event once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chatbot.models import ZaloEvent, ZaloOutboundMessage
from chatbot.zalo import services
from chatbot.zalo.tasks import process_event, purge_old_events, requeue_pending_events
from config.celery import app as celery_app
from conversations.models import Contact, Conversation, Message
from tests.chatbot.shop import HOURS
from tests.fakes.zalo_server import Delivery
from tests.knowledge.helpers import ingest, paste

pytestmark = pytest.mark.django_db

URL = "/webhooks/zalo/sao-mai/"
USER = "2468458835296197922"


@pytest.fixture
def eager_tasks():
    """Tasks run in the test's own process when enqueued, as the worker would run them."""
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def webhook(client, zalo_server):
    """The fake's deliveries reach our webhook through Django's test client."""

    def post(body: bytes, headers: dict[str, str]) -> int:
        headers = {name: value for name, value in headers.items() if name != "Content-Type"}
        return client.post(URL, data=body, content_type="application/json", headers=headers).status_code

    zalo_server.poster = post


def received(delivery: Delivery) -> ZaloEvent:
    assert delivery.acked, delivery.attempts
    return ZaloEvent.objects.order_by("-pk").first()


def process(event: ZaloEvent) -> str:
    result = process_event.apply(args=[event.pk]).get()
    event.refresh_from_db()
    return result


def texts_sent(server, user: str = USER) -> list[str]:
    return [message.text for message in server.sends_to(user)]


def test_a_question_is_answered_from_the_knowledge_base_and_the_reply_reaches_the_user(
    client, zalo_server, zalo_bot
):
    ingest(paste(zalo_bot.knowledge_base, HOURS, title="Store hours"))
    event = received(zalo_server.user_sends_text(USER, "Cửa hàng mở cửa lúc mấy giờ?"))

    assert process(event) == ZaloEvent.Status.PROCESSED

    assert len(zalo_server.sent) == 1
    assert "8 giờ sáng đến 10 giờ tối" in zalo_server.sent[0].text
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.text == zalo_server.sent[0].text
    assert reply.conversation.channel == "zalo"
    assert reply.in_reply_to.external_id == event.event_key
    row = ZaloOutboundMessage.objects.get()
    assert (row.status, row.message_id, row.zalo_message_id) == (
        "sent",
        reply.pk,
        zalo_server.sent[0].message_id,
    )
    assert event.processed_at is not None


def test_the_webhook_queues_the_event_and_the_task_sends_the_reply(
    client, zalo_server, zalo_bot, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        event = received(zalo_server.user_sends_text(USER, "Xin chào"))

    event.refresh_from_db()
    assert event.status == ZaloEvent.Status.PROCESSED
    assert texts_sent(zalo_server) == [zalo_bot.greeting_vi]
    assert Contact.objects.get().channel == "zalo"


def test_a_message_delivered_twice_is_answered_once(
    client, zalo_server, zalo_bot, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as queued:
        delivery = zalo_server.user_sends_text(USER, "Xin chào")
        zalo_server.redeliver(delivery)
        zalo_server.redeliver(delivery)
    event = ZaloEvent.objects.get()
    process(event)  # and the beat's requeue running it once more

    assert len(queued) == 3 and event.deliveries == 3
    assert [attempt.status for attempt in delivery.attempts] == [200, 200, 200]
    assert len(zalo_server.sent) == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1


def test_an_event_another_worker_holds_is_left_to_it(client, zalo_server, zalo_bot):
    from django.core.cache import cache

    event = received(zalo_server.user_sends_text(USER, "Xin chào"))
    cache.add(f"zalo:event-lease:{event.pk}", "other-worker", timeout=60)
    try:
        assert process(event) == "busy"
    finally:
        cache.delete(f"zalo:event-lease:{event.pk}")

    assert event.status == ZaloEvent.Status.PENDING
    assert zalo_server.sent == []


def test_a_long_answer_goes_out_in_parts_of_at_most_2000_characters_in_order(client, zalo_server, zalo_bot):
    paragraphs = [f"Đoạn {number}: " + "Cửa hàng Sao Mai phục vụ tận tình. " * 25 for number in range(6)]
    paragraphs = [paragraph.strip() for paragraph in paragraphs]
    zalo_bot.greeting_vi = "\n\n".join(paragraphs)  # about 5,500 characters
    zalo_bot.save()

    process(received(zalo_server.user_follows(USER)))

    sent = texts_sent(zalo_server)
    assert len(sent) == 3
    assert all(len(part) <= 2000 for part in sent)
    assert sent[0].startswith("Đoạn 0:") and sent[1].startswith("Đoạn 2:") and sent[2].startswith("Đoạn 4:")
    assert "\n\n".join(sent) == zalo_bot.greeting_vi.strip()
    assert list(ZaloOutboundMessage.objects.order_by("part").values_list("part", "status")) == [
        (0, "sent"), (1, "sent"), (2, "sent")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("send", "stored"),
    [
        (lambda server: server.user_sends_image(USER), "[image]"),
        (lambda server: server.user_sends_sticker(USER), "[sticker]"),
        (lambda server: server.user_sends_file(USER, "hop-dong.pdf"), "[file: hop-dong.pdf]"),
    ],
)
def test_an_image_sticker_or_file_gets_a_polite_reply_in_the_bots_language(
    client, zalo_server, zalo_bot, send, stored
):
    event = received(send(zalo_server))

    assert process(event) == ZaloEvent.Status.PROCESSED

    assert texts_sent(zalo_server) == [services.NON_TEXT_REPLY["vi"]]
    assert Message.objects.get(role=Message.Role.USER).text == stored


def test_an_image_with_an_english_caption_gets_the_polite_reply_in_english(client, zalo_server, zalo_bot):
    process(received(zalo_server.user_sends_image(USER, caption="What is the price of this one?")))

    assert texts_sent(zalo_server) == [services.NON_TEXT_REPLY["en"]]


def test_a_new_follower_gets_the_bots_greeting(client, zalo_server, zalo_bot):
    event = received(zalo_server.user_follows(USER))

    assert process(event) == ZaloEvent.Status.PROCESSED

    assert texts_sent(zalo_server) == [zalo_bot.greeting_vi]


@pytest.mark.parametrize(
    "send",
    [
        lambda server: server.user_unfollows(USER),
        lambda server: server.user_sees(USER, ["63ecf43f0df7dba892e6"]),
        lambda server: server.user_receives(USER, "63ecf43f0df7dba892e6"),
        lambda server: server.oa_sends(USER, "our own reply"),
    ],
    ids=["unfollow", "seen", "received", "echo of our own reply"],
)
def test_receipts_echoes_and_unfollows_are_ignored_without_a_reply(client, zalo_server, zalo_bot, send):
    event = received(send(zalo_server))

    assert process(event) == ZaloEvent.Status.IGNORED
    assert zalo_server.sent == []
    assert Message.objects.count() == 0


def test_staff_answering_in_zalos_own_tool_silences_the_bot(client, zalo_server, zalo_bot):
    process(received(zalo_server.user_sends_text(USER, "Xin chào")))
    staff = process(received(zalo_server.admin_replies(USER, "Chào bạn, mình là Lan ở cửa hàng.")))

    question = received(zalo_server.user_sends_text(USER, "Cho mình hỏi giá áo khoác"))
    process(question)

    assert staff == ZaloEvent.Status.PROCESSED
    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.WAITING_FOR_HUMAN
    assert (
        conversation.messages.filter(role=Message.Role.STAFF).get().text
        == "Chào bạn, mình là Lan ở cửa hàng."
    )
    assert question.error == "A person handles this conversation."
    assert len(zalo_server.sent) == 1  # only the greeting before the person stepped in


def test_an_empty_text_is_ignored_with_the_reason(client, zalo_server, zalo_bot):
    event = received(zalo_server.user_sends_text(USER, "   "))

    assert process(event) == ZaloEvent.Status.IGNORED

    assert event.error == "The message is empty."
    assert zalo_server.sent == []


def test_events_for_a_switched_off_bot_are_kept_but_not_answered(client, zalo_server, zalo_bot):
    zalo_bot.is_active = False
    zalo_bot.save()

    event = received(zalo_server.user_sends_text(USER, "Xin chào"))

    assert process(event) == ZaloEvent.Status.IGNORED
    assert event.error == "The bot is switched off."
    assert zalo_server.sent == []


def test_an_event_that_breaks_processing_is_marked_failed_and_can_be_retried(
    client, zalo_server, zalo_bot, monkeypatch, eager_tasks, django_capture_on_commit_callbacks
):
    event = received(zalo_server.user_sends_text(USER, "Xin chào"))
    with monkeypatch.context() as patched:
        patched.setattr(services, "answer", lambda inbound: 1 / 0)
        assert process(event) == ZaloEvent.Status.FAILED
    assert event.error == "ZeroDivisionError: division by zero"

    with django_capture_on_commit_callbacks(execute=True):
        assert services.zalo_events_retry(event_ids=[event.pk]) == 1

    event.refresh_from_db()
    assert event.status == ZaloEvent.Status.PROCESSED
    assert texts_sent(zalo_server) == [zalo_bot.greeting_vi]


def test_the_beat_requeues_pending_events_older_than_a_minute(client, zalo_server, zalo_bot, eager_tasks):
    stale = received(zalo_server.user_sends_text(USER, "Xin chào"))
    fresh = received(zalo_server.user_sends_text("1111111111111111111", "Xin chào"))
    ZaloEvent.objects.filter(pk=stale.pk).update(received_at=timezone.now() - timedelta(minutes=2))

    assert requeue_pending_events.apply().get() == 1

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("processed", "pending")
    assert texts_sent(zalo_server) == [zalo_bot.greeting_vi]


def test_the_purge_forgets_handled_events_after_three_days_and_keeps_pending_ones(
    client, zalo_server, zalo_bot
):
    old_done = received(zalo_server.user_follows(USER))
    old_pending = received(zalo_server.user_sends_text(USER, "Xin chào"))
    recent_done = received(zalo_server.user_unfollows(USER))
    ZaloEvent.objects.filter(pk__in=[old_done.pk, recent_done.pk]).update(status="processed")
    ZaloEvent.objects.filter(pk__in=[old_done.pk, old_pending.pk]).update(
        received_at=timezone.now() - timedelta(days=3, minutes=1)
    )

    assert purge_old_events.apply().get() == {"events": 1, "sent_messages": 0}
    assert set(ZaloEvent.objects.values_list("pk", flat=True)) == {old_pending.pk, recent_done.pk}
