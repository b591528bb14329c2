"""Writes: contacts, conversations and messages.

Every inbound message is stored before anything else is done with it
(`message_receive`), so a crash afterwards loses nothing.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from conversations.models import Contact, Conversation, Message


@dataclass(frozen=True)
class Received:
    conversation: Conversation
    message: Message
    created: bool  # False when the channel redelivered a message already stored
    new_conversation: bool = False  # the message started the conversation: it has no history


def contact_get_or_create(
    *, channel: str, external_id: str, display_name: str = "", language: str = ""
) -> Contact:
    """The contact of this channel identity, created on first sight; seen now.

    One upsert (one round trip, race-free): a name or language given replaces the
    stored one, an empty one keeps it.
    """
    return _contact_upsert(
        channel=channel, external_id=external_id, display_name=display_name, language=language
    )[0]


def _contact_upsert(
    *, channel: str, external_id: str, display_name: str, language: str
) -> tuple[Contact, bool]:
    """(contact, created). Either way the row stays locked until the transaction ends."""
    table = Contact._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table}
                (channel, external_id, display_name, language, profile, created_at, last_seen_at)
            VALUES (%(channel)s, %(external_id)s, %(display_name)s, %(language)s, '{{}}', %(now)s, %(now)s)
            ON CONFLICT (channel, external_id) DO UPDATE SET
                last_seen_at = EXCLUDED.last_seen_at,
                display_name = COALESCE(NULLIF(EXCLUDED.display_name, ''), {table}.display_name),
                language = COALESCE(NULLIF(EXCLUDED.language, ''), {table}.language)
            RETURNING id, display_name, language, profile, created_at, last_seen_at, (xmax = 0)
            """,
            {
                "channel": channel,
                "external_id": external_id,
                "display_name": display_name,
                "language": language,
                "now": timezone.now(),
            },
        )
        pk, name, language_, profile, created_at, last_seen_at, created = cursor.fetchone()
    if isinstance(profile, str):  # jsonb comes back as text through Django's cursor
        profile = json.loads(profile)
    contact = Contact.from_db(
        "default",
        ["id", "channel", "external_id", "display_name", "language", "profile", "created_at", "last_seen_at"],
        [pk, channel, external_id, name, language_, profile, created_at, last_seen_at],
    )
    return contact, created


def conversation_open_for(*, contact: Contact, bot_id: int, channel: str) -> Conversation:
    """The contact's open conversation with the bot, or a new one."""
    conversation = _open_conversation(contact, bot_id)
    if conversation is not None:
        return conversation
    with transaction.atomic():
        # Lock the contact so two first messages at once start one conversation, not two.
        Contact.objects.select_for_update().filter(pk=contact.pk).first()
        conversation = _open_conversation(contact, bot_id)
        if conversation is None:
            conversation = Conversation.objects.create(contact=contact, bot_id=bot_id, channel=channel)
    return conversation


def _open_conversation(contact: Contact, bot_id: int) -> Conversation | None:
    return (
        Conversation.objects.filter(contact=contact, bot_id=bot_id, status__in=Conversation.OPEN)
        .order_by("-pk")
        .first()
    )


def message_receive(
    *,
    channel: str,
    bot_id: int,
    external_user_id: str,
    text: str,
    external_message_id: str = "",
    display_name: str = "",
    language: str = "",
) -> Received:
    """Store one inbound customer message; a redelivered one (same external id) is returned as it was."""
    # One transaction, so storing a message costs one commit (one fsync), not three.
    with transaction.atomic():
        return _receive(
            channel=channel,
            bot_id=bot_id,
            external_user_id=external_user_id,
            text=text,
            external_message_id=external_message_id,
            display_name=display_name,
            language=language,
        )


def _receive(
    *,
    channel: str,
    bot_id: int,
    external_user_id: str,
    text: str,
    external_message_id: str,
    display_name: str,
    language: str,
) -> Received:
    # The upsert locks the contact's row until commit, so two first messages at once
    # start one conversation, and a redelivery racing its original waits for its commit
    # and then finds it below (the unique external id is the last guard).
    contact, new_contact = _contact_upsert(
        channel=channel, external_id=external_user_id, display_name=display_name, language=language
    )
    if external_message_id and not new_contact:
        # Look across the contact's conversations with this bot, not only the open one:
        # a redelivery that arrives after the conversation was closed must not open a
        # new conversation and be answered a second time.
        existing = (
            Message.objects.filter(
                conversation__contact=contact,
                conversation__bot_id=bot_id,
                external_id=external_message_id,
            )
            .select_related("conversation")
            .first()
        )
        if existing is not None:
            return Received(existing.conversation, existing, created=False)
    conversation = None if new_contact else _open_conversation(contact, bot_id)
    new_conversation = conversation is None
    if conversation is None:
        conversation = Conversation.objects.create(contact=contact, bot_id=bot_id, channel=channel)
    message = _append_user_message(
        conversation, text=text, language=language, external_id=external_message_id
    )
    return Received(conversation, message, created=True, new_conversation=new_conversation)


def _append_user_message(
    conversation: Conversation, *, text: str, language: str, external_id: str
) -> Message:
    changes_language = bool(language) and language != conversation.language
    message = _append(
        conversation,
        conversation_language=language if changes_language else "",
        role=Message.Role.USER,
        text=text,
        language=language,
        external_id=external_id,
    )
    if changes_language:
        conversation.language = language
    return message


def message_add_reply(
    *,
    conversation: Conversation,
    in_reply_to: Message | None,
    text: str,
    role: str = Message.Role.ASSISTANT,
    language: str = "",
    outcome: str = "",
    citations: list[dict] | None = None,
    provider: str = "",
    model: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    cost: Decimal = Decimal(0),
    latency_ms: int = 0,
    cache_hit: bool = False,
    details: dict | None = None,
    author: AbstractBaseUser | None = None,
) -> Message:
    return _append(
        conversation,
        role=role,
        text=text,
        language=language,
        in_reply_to=in_reply_to,
        outcome=outcome,
        citations=citations or [],
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cost=cost,
        latency_ms=latency_ms,
        cache_hit=cache_hit,
        details=details or {},
        author=author,
    )


def conversation_request_handoff(*, conversation: Conversation) -> Conversation:
    """The customer asked for a person: wait for one (no-op if a person is already on it)."""
    Conversation.objects.filter(pk=conversation.pk, status=Conversation.Status.BOT).update(
        status=Conversation.Status.WAITING_FOR_HUMAN, handoff_requested_at=timezone.now()
    )
    conversation.refresh_from_db()
    return conversation


def message_set_feedback(*, message: Message, feedback: str, comment: str = "") -> Message:
    if message.role != Message.Role.ASSISTANT:
        raise ValueError("only the bot's answers take feedback")
    if feedback not in Message.Feedback.values:
        raise ValueError(f"feedback must be one of {', '.join(Message.Feedback.values)}")
    message.feedback = feedback
    message.feedback_comment = comment[:2000]
    message.save(update_fields=["feedback", "feedback_comment"])
    return message


def _append(conversation: Conversation, *, conversation_language: str = "", **fields) -> Message:
    message = Message.objects.create(conversation=conversation, **fields)
    # Greatest: when two messages of one conversation commit out of order, the later
    # timestamp must win, or the conversation list sorts a live chat as stale.
    changes = {
        "message_count": F("message_count") + 1,
        "last_message_at": Greatest(F("last_message_at"), message.created_at),
    }
    if conversation_language:
        changes["language"] = conversation_language
    Conversation.objects.filter(pk=conversation.pk).update(**changes)
    return message


def conversations_close(*, channel: str, external_user_id: str, bot_id: int) -> int:
    """Close the contact's open conversations with the bot; the next message starts a new one."""
    return Conversation.objects.filter(
        contact__channel=channel,
        contact__external_id=external_user_id,
        bot_id=bot_id,
        status__in=Conversation.OPEN,
    ).update(status=Conversation.Status.CLOSED, closed_at=timezone.now())
