"""The demo bot: slug `demo`, answering from the demo knowledge base in Vietnamese and English."""

from chatbot.models import Bot
from knowledge.demo import DEMO_KNOWLEDGE_BASE
from knowledge.models import KnowledgeBase

DEMO_BOT_SLUG = "demo"


def seed_demo_bot() -> Bot:
    knowledge_base = KnowledgeBase.objects.get(name=DEMO_KNOWLEDGE_BASE)
    bot, _ = Bot.objects.get_or_create(
        slug=DEMO_BOT_SLUG,
        defaults={
            "name": "Sao Mai assistant",
            "knowledge_base": knowledge_base,
            "persona": "Warm, concise and practical, like a helpful shop assistant. "
            "Address customers politely (in Vietnamese: “bạn”, refer to yourself as “mình”).",
            # The format, shown in the admin; the demo page (/widget/demo/) needs no entry,
            # since the widget always works on this server's own origin.
            "widget_allowed_origins": "http://localhost:8000\nhttp://127.0.0.1:8000",
        },
    )
    return bot
