from billing.models import UsageEvent


def usage_record(
    *,
    idempotency_key: str,
    kind: str,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    latency_ms: int = 0,
    knowledge_base_id: int | None = None,
    document_id: int | None = None,
) -> bool:
    """Append one usage row; returns False when the key was already recorded."""
    _, created = UsageEvent.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "kind": kind,
            "provider": provider,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "latency_ms": latency_ms,
            "knowledge_base_id": knowledge_base_id,
            "document_id": document_id,
        },
    )
    return created
