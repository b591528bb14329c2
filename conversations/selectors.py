"""Reads: conversation history for prompts, transcripts for people."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Sum

from conversations.models import Conversation, Message

# A turn is a customer message (or a run of them) and what answered it; a long run of
# customer messages while waiting for a person must not pull in a whole day of chat.
_ROWS_PER_TURN = 4


@dataclass(frozen=True)
class ConversationTotals:
    answers: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: Decimal


def conversation_history(*, conversation: Conversation, before: Message, turns: int) -> list[Message]:
    """The last `turns` customer/bot exchanges before `before`, oldest first.

    Only customer and bot/staff messages with text count. One turn starts at a customer
    message and runs to the next one, so a question answered by two messages (a handoff
    notice, then a person) still counts once. The result always starts with a customer
    message: an answer whose question fell outside the window would only confuse the
    model (and Bedrock refuses a conversation that starts with the assistant).
    """
    if turns <= 0:
        return []
    newest_first = list(
        Message.objects.filter(
            conversation=conversation,
            pk__lt=before.pk,
            role__in=[Message.Role.USER, Message.Role.ASSISTANT, Message.Role.STAFF],
        )
        .exclude(text="")
        .order_by("-pk")[: turns * _ROWS_PER_TURN]
    )
    kept: list[Message] = []
    seen_turns = 0
    for index, message in enumerate(newest_first):
        kept.append(message)
        older = newest_first[index + 1] if index + 1 < len(newest_first) else None
        starts_turn = message.role == Message.Role.USER and (older is None or older.role != Message.Role.USER)
        if starts_turn:
            seen_turns += 1
            if seen_turns == turns:
                break
    kept.reverse()
    while kept and kept[0].role != Message.Role.USER:
        kept.pop(0)
    return kept


def conversation_messages(*, conversation: Conversation, last: int | None = None) -> list[Message]:
    """The conversation's messages oldest first; only the newest `last` of them when given."""
    messages = conversation.messages.select_related("author")
    if last is None:
        return list(messages.order_by("created_at", "pk"))
    newest_first = list(messages.order_by("-created_at", "-pk")[:last])
    newest_first.reverse()
    return newest_first


def conversation_totals(*, conversation: Conversation) -> ConversationTotals:
    """What the bot's answers in one conversation used and cost."""
    totals = conversation.messages.filter(role=Message.Role.ASSISTANT).aggregate(
        answers=Count("pk"),
        input_tokens=Sum("input_tokens", default=0),
        output_tokens=Sum("output_tokens", default=0),
        cached_tokens=Sum("cached_tokens", default=0),
        cost=Sum("cost", default=Decimal(0)),
    )
    return ConversationTotals(**totals)


def conversation_open_of(*, channel: str, external_user_id: str, bot_id: int) -> Conversation | None:
    """The contact's open conversation with the bot, if any (read-only: nothing is created)."""
    return (
        Conversation.objects.filter(
            contact__channel=channel,
            contact__external_id=external_user_id,
            bot_id=bot_id,
            status__in=Conversation.OPEN,
        )
        .order_by("-pk")
        .first()
    )


def conversation_get_for_bot(*, bot_id: int, conversation_id: int) -> Conversation | None:
    """One of the bot's conversations; another bot's id is simply not found."""
    return Conversation.objects.select_related("contact").filter(pk=conversation_id, bot_id=bot_id).first()


def message_get_for_bot(*, bot_id: int, message_id: int) -> Message | None:
    """One message of the bot's conversations; another bot's id is simply not found."""
    return Message.objects.filter(pk=message_id, conversation__bot_id=bot_id).first()
