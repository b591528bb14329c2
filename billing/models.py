from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

NOT_NEGATIVE = [MinValueValidator(Decimal(0))]


class ModelPrice(models.Model):
    """What one model costs from a date on, in USD per million tokens.

    Prices are data: a price change is a new row with a later `effective_from`, so
    past ledger rows keep the price that applied when they were made.
    """

    provider = models.CharField(
        max_length=30, help_text="As the ledger records it: gemini, bedrock, local or extractive."
    )
    model = models.CharField(
        max_length=100, help_text="The vendor's model id, exactly as the ledger records it."
    )
    effective_from = models.DateField(
        help_text="The day (in the server's time zone) this price starts to apply. A price change is a new "
        "row with a later date, not an edit: rows already in the ledger keep the cost they were written with."
    )
    input_per_million = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=0,
        validators=NOT_NEGATIVE,
        help_text="USD per 1M input tokens.",
    )
    output_per_million = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=0,
        validators=NOT_NEGATIVE,
        help_text="USD per 1M output tokens. Thinking tokens are billed at this rate too.",
    )
    cached_input_per_million = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=NOT_NEGATIVE,
        help_text="USD per 1M prompt tokens read from the vendor's cache; empty means the input rate.",
    )
    note = models.CharField(max_length=300, blank=True, help_text="Where the price comes from.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        verbose_name = "model price"
        verbose_name_plural = "price list"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="price_unique_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from}"


class UsageEvent(models.Model):
    """One model call (embedding or generation) or one cache hit, append-only.

    The idempotency key makes recording safe to repeat: a retried task writes the
    same key and the second row is dropped. `cost` is computed once, when the row is
    written, from the price in force that day. Bots, contacts, conversations and
    messages are referred to by id so the ledger outlives them.
    """

    class Kind(models.TextChoices):
        EMBEDDING = "embedding", "Embedding"
        GENERATION = "generation", "Generation"
        CACHE_HIT = "cache_hit", "Cache hit"

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    provider = models.CharField(max_length=30)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    thinking_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    priced = models.BooleanField(default=True, help_text="False when no price was known for the model.")
    latency_ms = models.PositiveIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    channel = models.CharField(max_length=10, blank=True)
    bot_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    contact_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    knowledge_base_id = models.BigIntegerField(null=True, blank=True)
    document_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "usage event"
        verbose_name_plural = "usage ledger"
        indexes = [
            models.Index(fields=["kind", "model", "created_at"]),
            models.Index(fields=["bot_id", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} {self.input_tokens}+{self.output_tokens} tokens"
