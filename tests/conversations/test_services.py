"""Storing what customers say and what answers them."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversations.models import Contact, Conversation, Message
from conversations.services import conversation_request_handoff, message_set_feedback
from tests.conversations.helpers import answer, ask, close

pytestmark = pytest.mark.django_db


def test_a_redelivered_message_with_the_same_external_id_is_stored_once():
    first = ask("Giờ mở cửa?", message_id="zalo-msg-1")

    again = ask("Giờ mở cửa?", message_id="zalo-msg-1")

    assert (first.created, again.created) == (True, False)
    assert again.message.pk == first.message.pk
    assert Message.objects.count() == 1
    again.conversation.refresh_from_db()
    assert again.conversation.message_count == 1


@pytest.mark.django_db(transaction=True)
def test_deliveries_of_one_message_racing_in_threads_store_it_once():
    ask("Xin chào", message_id="zalo-msg-0")  # the contact and conversation exist, as for a regular
    threads_per_round, rounds = 6, 4
    for round_number in range(rounds):
        message_id = f"zalo-msg-race-{round_number}"
        start = threading.Barrier(threads_per_round)
        results, errors = [], []

        def deliver(message_id=message_id, start=start, results=results, errors=errors):
            try:
                start.wait(timeout=10)
                results.append(ask("Còn hàng không?", message_id=message_id))
            except Exception as error:  # noqa: BLE001 - a thread's error would otherwise vanish
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=deliver) for _ in range(threads_per_round)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert errors == []
        stored = Message.objects.filter(external_id=message_id)
        assert stored.count() == 1
        assert {result.message.pk for result in results} == {stored.get().pk}
        assert sum(result.created for result in results) == 1
    conversation = Conversation.objects.get()
    assert conversation.message_count == 1 + rounds


def test_a_second_message_reuses_the_open_conversation():
    first = ask("Giờ mở cửa?", message_id="m1")
    answer(first.message, "8 giờ đến 21 giờ.")

    second = ask("Cuối tuần thì sao?", message_id="m2")

    assert second.conversation.pk == first.conversation.pk
    assert Conversation.objects.count() == 1
    second.conversation.refresh_from_db()
    assert second.conversation.message_count == 3


def test_the_same_person_talking_to_another_bot_gets_a_conversation_of_its_own():
    first = ask("Giờ mở cửa?", bot_id=1)

    other = ask("Giờ mở cửa?", bot_id=2)

    assert other.conversation.pk != first.conversation.pk
    assert Contact.objects.count() == 1


def test_a_message_after_the_conversation_was_closed_starts_a_new_one():
    first = ask("Giờ mở cửa?", message_id="m1")
    close(first.conversation)

    later = ask("Tôi muốn đổi hàng", message_id="m2")

    assert later.created
    assert later.conversation.pk != first.conversation.pk
    assert later.conversation.status == Conversation.Status.BOT


def test_a_redelivery_arriving_after_the_conversation_closed_does_not_start_a_new_one():
    first = ask("Giờ mở cửa?", message_id="m1")
    close(first.conversation)

    again = ask("Giờ mở cửa?", message_id="m1")

    assert not again.created
    assert again.message.pk == first.message.pk
    assert Conversation.objects.count() == 1


def test_the_contact_keeps_the_latest_name_and_language_and_when_it_was_last_seen():
    ask("Xin chào", name="Lan", language="vi")
    before = Contact.objects.get().last_seen_at

    ask("Hello again", name="Lan Nguyen", language="en")

    contact = Contact.objects.get()
    assert (contact.display_name, contact.language) == ("Lan Nguyen", "en")
    assert contact.last_seen_at > before
    assert Conversation.objects.get().language == "en"


def test_a_reply_keeps_the_conversation_count_and_never_moves_its_last_message_time_back():
    received = ask("Giờ mở cửa?")
    later = timezone.now() + timedelta(minutes=5)
    Conversation.objects.filter(pk=received.conversation.pk).update(last_message_at=later)

    answer(received.message, "8 giờ đến 21 giờ.")

    conversation = Conversation.objects.get()
    assert conversation.message_count == 2
    assert conversation.last_message_at == later


def test_asking_for_a_person_moves_a_bot_conversation_to_waiting():
    received = ask("Cho tôi gặp nhân viên")

    conversation = conversation_request_handoff(conversation=received.conversation)

    assert conversation.status == Conversation.Status.WAITING_FOR_HUMAN
    assert conversation.handoff_requested_at is not None


def test_asking_for_a_person_again_keeps_the_first_request_time():
    conversation = conversation_request_handoff(conversation=ask("Cho tôi gặp nhân viên").conversation)
    first_request = conversation.handoff_requested_at

    conversation = conversation_request_handoff(conversation=conversation)

    assert conversation.status == Conversation.Status.WAITING_FOR_HUMAN
    assert conversation.handoff_requested_at == first_request


@pytest.mark.parametrize("status", [Conversation.Status.HUMAN, Conversation.Status.CLOSED])
def test_asking_for_a_person_never_moves_a_conversation_back_to_waiting(status):
    conversation = ask("Cho tôi gặp nhân viên").conversation
    Conversation.objects.filter(pk=conversation.pk).update(status=status)

    conversation = conversation_request_handoff(conversation=conversation)

    assert conversation.status == status
    assert conversation.handoff_requested_at is None


def test_feedback_is_recorded_on_a_bot_answer():
    received = ask("Giờ mở cửa?")
    reply = answer(received.message, "8 giờ đến 21 giờ.")

    message_set_feedback(message=reply, feedback=Message.Feedback.DOWN, comment="Chủ nhật đóng cửa mà")

    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("down", "Chủ nhật đóng cửa mà")


def test_feedback_on_a_customer_message_is_refused():
    received = ask("Giờ mở cửa?")

    with pytest.raises(ValueError, match="only the bot's answers"):
        message_set_feedback(message=received.message, feedback=Message.Feedback.UP)

    received.message.refresh_from_db()
    assert received.message.feedback == ""


def test_feedback_on_a_staff_reply_is_refused():
    received = ask("Giờ mở cửa?")
    staff_reply = answer(received.message, "Chào chị, em kiểm tra giúp chị nhé.", role=Message.Role.STAFF)

    with pytest.raises(ValueError):
        message_set_feedback(message=staff_reply, feedback=Message.Feedback.UP)


def test_feedback_other_than_up_or_down_is_refused():
    reply = answer(ask("Giờ mở cửa?").message, "8 giờ đến 21 giờ.")

    with pytest.raises(ValueError, match="up, down"):
        message_set_feedback(message=reply, feedback="meh")
