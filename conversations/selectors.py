"""Reads: conversation history for prompts, transcripts for people."""

from conversations.models import Conversation, Message


def conversation_history(*, conversation: Conversation, before: Message, turns: int) -> list[Message]:
    """The last `turns` customer/bot exchanges before `before`, oldest first.

    Only customer and bot/staff messages with text count; one turn is a customer
    message and what answered it, so up to 2 * turns messages come back.
    """
    if turns <= 0:
        return []
    rows = list(
        Message.objects.filter(
            conversation=conversation,
            pk__lt=before.pk,
            role__in=[Message.Role.USER, Message.Role.ASSISTANT, Message.Role.STAFF],
        )
        .exclude(text="")
        .order_by("-pk")[: turns * 2]
    )
    rows.reverse()
    return rows


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("created_at", "pk"))
