"""The chatbot's periodic tasks, run as Celery would call them (eagerly, in-process)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chatbot.answer_cache import cache_store
from chatbot.models import AnswerCacheEntry, Bot
from chatbot.tasks import purge_answer_cache
from tests.knowledge.helpers import make_knowledge_base

pytestmark = pytest.mark.django_db


def test_the_purge_task_removes_expired_cached_answers_and_keeps_fresh_ones():
    knowledge_base = make_knowledge_base("Shop")
    bot = Bot.objects.create(name="Shop bot", slug="shop", knowledge_base=knowledge_base)
    vector = [1.0] + [0.0] * 383
    for question in ("Giờ mở cửa?", "Phí giao hàng?"):
        cache_store(
            bot=bot, language="vi", question=question, query_vector=vector, embedding_model="local-e5-small",
            answer="...", citations=[], documents={1: 1}, knowledge_base_version=knowledge_base.version,
            provider="gemini", model="gemini-3.1-flash-lite", source_message_id=None,
        )  # fmt: skip
    AnswerCacheEntry.objects.filter(question="Giờ mở cửa?").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    deleted = purge_answer_cache.apply().get()

    assert deleted == 1
    assert list(AnswerCacheEntry.objects.values_list("question", flat=True)) == ["Phí giao hàng?"]
