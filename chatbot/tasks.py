"""Celery entry points of the chatbot app (queue: chat)."""

from celery import shared_task

from chatbot.answer_cache import cache_purge


@shared_task(ignore_result=True)
def purge_answer_cache() -> int:
    """Expired answers and answers whose documents changed leave the cache; hit counts reach the rows."""
    return cache_purge()
