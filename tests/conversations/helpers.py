"""Builders for conversation tests: every row is written by the real services."""

from decimal import Decimal

from django.apps import apps

from conversations.models import Conversation, Message
from conversations.services import Received, message_add_reply, message_receive

BOT_ID = 1


def make_bot(name: str = "Sao Mai helper"):
    """A chatbot.Bot row, through the app registry: conversations never imports chatbot."""
    knowledge_base = apps.get_model("knowledge", "KnowledgeBase").objects.create(
        name=f"{name} knowledge", embedding_model="local-e5-small"
    )
    bot_model = apps.get_model("chatbot", "Bot")
    return bot_model.objects.create(
        name=name, slug=name.lower().replace(" ", "-"), knowledge_base=knowledge_base
    )


def ask(
    text: str,
    *,
    bot_id: int = BOT_ID,
    user: str = "zalo-user-1",
    message_id: str = "",
    name: str = "",
    language: str = "vi",
    channel: str = "zalo",
) -> Received:
    return message_receive(
        channel=channel,
        bot_id=bot_id,
        external_user_id=user,
        text=text,
        external_message_id=message_id,
        display_name=name,
        language=language,
    )


def answer(question: Message, text: str, **fields) -> Message:
    return message_add_reply(
        conversation=question.conversation,
        in_reply_to=question,
        text=text,
        language=question.language,
        **fields,
    )


def cited_answer(question: Message) -> Message:
    """A bot answer as the pipeline stores it: sources, model, tokens, cost and timing."""
    return answer(
        question,
        "Cửa hàng mở cửa từ 8 giờ đến 21 giờ mỗi ngày [1]. Giao hàng miễn phí cho đơn từ 500.000đ [2].",
        outcome=Message.Outcome.ANSWERED,
        citations=[
            {
                "number": 1,
                "document_id": 11,
                "document_title": "Store hours",
                "heading": "Giờ mở cửa",
                "chunk_id": 101,
            },
            {
                "number": 2,
                "document_id": 12,
                "document_title": "Delivery policy",
                "heading": "Phí giao hàng",
                "chunk_id": 102,
            },
        ],
        provider="gemini",
        model="gemini-3.1-flash-lite",
        input_tokens=812,
        output_tokens=46,
        cached_tokens=128,
        cost=Decimal("0.00012345"),
        latency_ms=1240,
        details={"route": "simple", "stages_ms": {"retrieve": 42, "llm": 1150}},
    )


def close(conversation: Conversation) -> None:
    # No close service exists yet (retention and staff take-over bring one).
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.CLOSED)
