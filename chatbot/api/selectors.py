"""Reads the API needs, always scoped to the calling key's bot.

Another bot's conversation or message is reported as not found, so a key cannot
even learn that an id exists elsewhere.
"""

from conversations.models import Conversation, Message


def conversation_get_for_bot(*, bot_id: int, conversation_id: int) -> Conversation | None:
    return Conversation.objects.select_related("contact").filter(pk=conversation_id, bot_id=bot_id).first()


def message_get_for_bot(*, bot_id: int, message_id: int) -> Message | None:
    return Message.objects.filter(pk=message_id, conversation__bot_id=bot_id).first()
