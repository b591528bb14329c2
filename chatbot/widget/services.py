"""Writes for the widget: asking for a person, rating an answer, rotating the identity secret.

Questions themselves go through the answer pipeline (chatbot.pipeline), like every channel's.
"""

from chatbot.models import Bot, new_identity_secret
from chatbot.widget.errors import WidgetError
from chatbot.widget.identity import WidgetIdentity
from conversations.models import Channel, Conversation, Message
from conversations.selectors import message_get_for_bot
from conversations.services import (
    contact_get_or_create,
    conversation_open_for,
    conversation_request_handoff,
    message_add_reply,
    message_set_feedback,
)


def widget_request_handoff(
    *, bot: Bot, identity: WidgetIdentity, language: str
) -> tuple[Conversation, Message | None]:
    """The visitor pressed "talk to a person": the conversation waits for staff.

    Returns the conversation and the bot's handoff notice, stored so a reload and the
    staff transcript show it; None when a person was already asked for or answering.
    """
    contact = contact_get_or_create(
        channel=Channel.WEB, external_id=identity.external_id, display_name=identity.display_name
    )
    conversation = conversation_open_for(contact=contact, bot_id=bot.pk, channel=Channel.WEB)
    if conversation.status != Conversation.Status.BOT:
        return conversation, None
    # Two presses at the same instant could both store a notice (the widget disables
    # the button while one is pending); the status change itself happens once.
    conversation = conversation_request_handoff(conversation=conversation)
    language = language if language in bot.languages else (conversation.language or bot.default_language)
    notice = message_add_reply(
        conversation=conversation,
        in_reply_to=None,
        text=bot.says("handoff", language),
        language=language,
        outcome=Message.Outcome.HANDOFF,
    )
    return conversation, notice


def widget_set_feedback(*, bot: Bot, identity: WidgetIdentity, message_id: int, feedback: str) -> Message:
    """Thumbs up or down on one of the bot's answers in the visitor's own conversations."""
    if feedback not in Message.Feedback.values:
        raise WidgetError(status=400, code="invalid_feedback", message='Feedback is "up" or "down".')
    message = message_get_for_bot(bot_id=bot.pk, message_id=message_id)
    contact = message.conversation.contact if message is not None else None
    # Another visitor's message is "not found", not "forbidden": ids are not to be probed.
    if contact is None or contact.channel != Channel.WEB or contact.external_id != identity.external_id:
        raise WidgetError(status=404, code="not_found", message="No such message in your conversation.")
    try:
        return message_set_feedback(message=message, feedback=feedback)
    except ValueError as error:
        raise WidgetError(status=400, code="feedback_not_allowed", message=str(error)) from None


def widget_identity_secret_rotate(*, bot: Bot) -> str:
    """A new identity secret: hashes signed with the old one are refused from now on."""
    bot.widget_identity_secret = new_identity_secret()
    bot.save(update_fields=["widget_identity_secret", "updated_at"])
    return bot.widget_identity_secret
