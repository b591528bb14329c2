"""What earlier turns the bot sees, and the transcript and totals people see."""

from decimal import Decimal

import pytest

from conversations.models import Message
from conversations.selectors import conversation_history, conversation_messages, conversation_totals
from conversations.services import contact_get_or_create, conversation_open_for, message_add_reply
from tests.conversations.helpers import BOT_ID, answer, ask, cited_answer

pytestmark = pytest.mark.django_db


def exchange(question: str, reply: str, **asked) -> Message:
    received = ask(question, **asked)
    answer(received.message, reply)
    return received.message


def texts(messages: list[Message]) -> list[str]:
    return [message.text for message in messages]


def test_history_returns_the_last_turns_oldest_first_without_the_current_message():
    exchange("q1", "a1")
    exchange("q2", "a2")
    exchange("q3", "a3")
    current = ask("q4").message

    history = conversation_history(conversation=current.conversation, before=current, turns=2)

    assert texts(history) == ["q2", "a2", "q3", "a3"]


def test_history_counts_a_question_answered_by_two_messages_as_one_turn():
    exchange("q1", "a1")
    question = ask("q2").message
    answer(question, "handoff notice")
    answer(question, "staff reply", role=Message.Role.STAFF)
    current = ask("q3").message

    history = conversation_history(conversation=current.conversation, before=current, turns=1)

    assert texts(history) == ["q2", "handoff notice", "staff reply"]


def test_history_keeps_several_customer_messages_in_a_row_in_one_turn():
    exchange("q1", "a1")
    ask("are you there?")
    ask("hello?")
    current = ask("anyone?").message

    history = conversation_history(conversation=current.conversation, before=current, turns=1)

    assert texts(history) == ["are you there?", "hello?"]


def test_history_never_starts_with_an_answer_whose_question_is_outside_it():
    # The widget opens the conversation with a greeting before the customer types.
    contact = contact_get_or_create(channel="web", external_id="visitor-1")
    conversation = conversation_open_for(contact=contact, bot_id=BOT_ID, channel="web")
    message_add_reply(conversation=conversation, in_reply_to=None, text="Xin chào! Mình giúp gì được?")
    exchange("q1", "a1", channel="web", user="visitor-1")
    current = ask("q2", channel="web", user="visitor-1").message

    history = conversation_history(conversation=current.conversation, before=current, turns=5)

    assert texts(history) == ["q1", "a1"]


def test_history_leaves_out_system_notes_and_empty_messages():
    question = ask("q1").message
    answer(question, "")
    answer(question, "conversation assigned to Lan", role=Message.Role.SYSTEM)
    answer(question, "a1")
    current = ask("q2").message

    history = conversation_history(conversation=current.conversation, before=current, turns=3)

    assert texts(history) == ["q1", "a1"]


def test_history_of_zero_turns_is_empty():
    exchange("q1", "a1")
    current = ask("q2").message

    assert conversation_history(conversation=current.conversation, before=current, turns=0) == []


def test_the_transcript_can_be_limited_to_the_newest_messages_still_oldest_first():
    exchange("q1", "a1")
    exchange("q2", "a2")
    conversation = ask("q3").conversation

    assert texts(conversation_messages(conversation=conversation)) == ["q1", "a1", "q2", "a2", "q3"]
    assert texts(conversation_messages(conversation=conversation, last=3)) == ["q2", "a2", "q3"]


def test_totals_add_up_the_tokens_and_cost_of_the_bot_answers_only():
    question = ask("Giờ mở cửa?").message
    cited_answer(question)
    cited_answer(question)
    answer(question, "staff", role=Message.Role.STAFF, input_tokens=999)

    totals = conversation_totals(conversation=question.conversation)

    assert (totals.answers, totals.input_tokens, totals.output_tokens, totals.cached_tokens) == (
        2,
        1624,
        92,
        256,
    )
    assert totals.cost == Decimal("0.00024690")
