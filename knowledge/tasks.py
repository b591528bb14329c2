"""Celery entry points for ingestion: ids in, one service call each (queue: ingest)."""

import random

from celery import shared_task

from knowledge.embedding import RateLimited, TransientError
from knowledge.ingest.pipeline import document_ingest
from knowledge.reembed import knowledge_base_reembed
from knowledge.services import documents_requeue_stuck

MAX_RETRIES = 5


def backoff_seconds(retries: int, error: TransientError) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After wins when longer."""
    delay = random.uniform(0, min(300, 5 * 2**retries))
    if isinstance(error, RateLimited) and error.retry_after:
        delay = max(delay, error.retry_after)
    return delay


# Idempotent (the run claims its version with a conditional update), so acks_late is
# safe: a task lost with its worker is delivered again and simply re-runs.
@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=1800,
    time_limit=1900,
)
def ingest_document(self, document_id: int, version: int) -> str:
    try:
        outcome = document_ingest(
            document_id=document_id, version=version, final_attempt=self.request.retries >= MAX_RETRIES
        )
    except TransientError as error:
        raise self.retry(countdown=backoff_seconds(self.request.retries, error)) from error
    return outcome.status


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES, time_limit=3600)
def reembed_knowledge_base(self, knowledge_base_id: int, model: str) -> str:
    try:
        return knowledge_base_reembed(knowledge_base_id=knowledge_base_id, model=model)
    except TransientError as error:
        raise self.retry(countdown=backoff_seconds(self.request.retries, error)) from error


@shared_task
def requeue_stuck_documents() -> dict[str, int]:
    return documents_requeue_stuck()
