"""Celery entry points of the Zalo channel (queue: chat): ids in, one service call each."""

from celery import shared_task

from chatbot.zalo import outbox, services, tokens


# Idempotent (a lease per event, the pipeline answers a msg_id once, outbox rows are
# unique per reply part), so a task lost with its worker may simply run again.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def process_event(event_id: int) -> str:
    return services.zalo_event_process(event_id=event_id)


@shared_task
def send_outbox(outbox_ids: list[int]) -> list[str]:
    return outbox.outbox_send(outbox_ids=outbox_ids)


@shared_task
def send_due_outbox() -> int:
    return outbox.outbox_send_due()


@shared_task
def requeue_pending_events() -> int:
    return services.zalo_events_requeue()


@shared_task
def refresh_expiring_tokens() -> int:
    return tokens.refresh_expiring_tokens()


@shared_task
def purge_old_events() -> dict[str, int]:
    return {"events": services.zalo_events_purge(), "sent_messages": outbox.outbox_purge_sent()}
