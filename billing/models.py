from django.db import models


class UsageEvent(models.Model):
    """One model call (embedding or generation), append-only.

    The idempotency key makes recording safe to repeat: a retried task writes the
    same key and the second row is dropped. Costs are derived from the price list.
    """

    class Kind(models.TextChoices):
        EMBEDDING = "embedding", "Embedding"
        GENERATION = "generation", "Generation"

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    provider = models.CharField(max_length=30)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    knowledge_base_id = models.BigIntegerField(null=True, blank=True)
    document_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "model", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} {self.input_tokens}+{self.output_tokens} tokens"
