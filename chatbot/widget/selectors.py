"""Reads for the widget: its bot, the visitor's conversation, messages as the browser sees them.

A browser gets only what a customer should see of a message: no provider, model,
tokens or cost.
"""

from collections.abc import Iterable

from chatbot.models import Bot
from chatbot.widget.identity import WidgetIdentity
from conversations.models import Channel, Conversation, Message
from conversations.selectors import conversation_messages, conversation_open_of
from knowledge.selectors import document_source_urls

MAX_KEY_CHARS = 40
HISTORY_MESSAGES = 50  # a reload shows the recent part; the admin keeps the whole transcript
SHOWN_ROLES = (Message.Role.USER, Message.Role.ASSISTANT, Message.Role.STAFF)


def widget_bot_get(*, widget_key: str) -> Bot | None:
    if not widget_key or len(widget_key) > MAX_KEY_CHARS:
        return None
    return Bot.objects.select_related("knowledge_base").filter(widget_key=widget_key).first()


def widget_conversation(*, bot: Bot, identity: WidgetIdentity) -> Conversation | None:
    return conversation_open_of(channel=Channel.WEB, external_user_id=identity.external_id, bot_id=bot.pk)


def widget_history(*, bot: Bot, identity: WidgetIdentity) -> dict:
    """The visitor's open conversation (status and recent messages), or none yet."""
    conversation = widget_conversation(bot=bot, identity=identity)
    if conversation is None:
        return {"conversation": None, "messages": []}
    messages = [
        message
        for message in conversation_messages(conversation=conversation, last=HISTORY_MESSAGES)
        if message.role in SHOWN_ROLES and message.text
    ]
    return {"conversation": conversation_body(conversation), "messages": message_bodies(messages)}


def conversation_body(conversation: Conversation) -> dict:
    return {"id": conversation.pk, "status": conversation.status}


def message_bodies(messages: Iterable[Message]) -> list[dict]:
    messages = list(messages)
    # One query for the links of every cited document on the page.
    urls = document_source_urls(
        document_ids=(
            citation["document_id"]
            for message in messages
            for citation in message.citations or []
            if isinstance(citation, dict) and isinstance(citation.get("document_id"), int)
        )
    )
    return [_message_body(message, urls) for message in messages]


def _message_body(message: Message, urls: dict[int, str]) -> dict:
    return {
        "id": message.pk,
        "role": message.role,
        "text": message.text,
        "outcome": message.outcome,
        "citations": [_citation(item, urls) for item in message.citations or [] if isinstance(item, dict)],
        "feedback": message.feedback,
        "created_at": message.created_at.isoformat(),
    }


def _citation(citation: dict, urls: dict[int, str]) -> dict:
    url = urls.get(citation.get("document_id"), "")
    return {
        "number": citation.get("number"),
        "title": citation.get("document_title") or "",
        "heading": citation.get("heading") or "",
        "url": url if url.startswith(("https://", "http://")) else "",
    }
