import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from pgvector.django import VectorField

from knowledge.embedding.registry import EMBEDDING_MODELS
from knowledge.models import KnowledgeBase

LANGUAGES = ("vi", "en")
PROVIDER_NAMES = ("gemini", "bedrock", "extractive")


def default_languages() -> list[str]:
    return list(LANGUAGES)


def default_provider_order() -> list[str]:
    return ["gemini", "bedrock"]


def default_strong_keywords() -> str:
    return (
        "so sánh, tại sao, vì sao, giải thích, hướng dẫn, khác nhau, "
        "compare, why, explain, difference, how do i, step by step"
    )


def new_widget_key() -> str:
    return f"wk_{secrets.token_urlsafe(18)}"


def new_identity_secret() -> str:
    return secrets.token_urlsafe(32)


class Bot(models.Model):
    """One assistant: its knowledge, its voice, the models it may use and how it picks one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.PROTECT, related_name="bots")
    is_active = models.BooleanField(default=True, help_text="Inactive bots answer no channel.")

    persona = models.TextField(
        blank=True,
        help_text="Who the bot is and how it speaks. Added to the system rules; it cannot override them.",
    )
    languages = models.JSONField(
        default=default_languages, help_text='Languages it answers in, e.g. ["vi", "en"].'
    )
    default_language = models.CharField(max_length=5, default="vi")
    greeting_vi = models.TextField(default="Xin chào! Mình có thể giúp gì cho bạn?")
    greeting_en = models.TextField(default="Hello! How can I help you today?")
    dont_know_vi = models.TextField(
        default="Xin lỗi, mình chưa tìm thấy thông tin này. Bạn có muốn nói chuyện với nhân viên không?"
    )
    dont_know_en = models.TextField(
        default="Sorry, I could not find that in our information. Would you like to talk to a person?"
    )
    handoff_vi = models.TextField(
        default="Mình đã chuyển cuộc trò chuyện cho nhân viên, bạn chờ một chút nhé."
    )
    handoff_en = models.TextField(
        default="I have passed this conversation to a person; they will reply shortly."
    )
    history_turns = models.PositiveSmallIntegerField(
        default=5,
        validators=[MaxValueValidator(20)],
        help_text="Earlier question/answer pairs sent as context.",
    )

    # Model routing: short, simple questions go to the cheaper model.
    simple_max_words = models.PositiveSmallIntegerField(
        default=12, help_text="Questions of at most this many words may go to the simple model."
    )
    strong_keywords = models.TextField(
        default=default_strong_keywords,
        blank=True,
        help_text="Comma-separated words or phrases that always send a question to the strong model.",
    )
    gemini_simple_model = models.CharField(max_length=100, blank=True, default="gemini-3.1-flash-lite")
    gemini_strong_model = models.CharField(max_length=100, blank=True, default="gemini-3.5-flash")
    bedrock_simple_model = models.CharField(max_length=100, blank=True, default="amazon.nova-micro-v1:0")
    bedrock_strong_model = models.CharField(max_length=100, blank=True, default="amazon.nova-pro-v1:0")
    provider_order = models.JSONField(
        default=default_provider_order,
        help_text='Providers to try in order, e.g. ["gemini", "bedrock"]. Quoting the best passages '
        "(extractive) always comes last.",
    )
    max_output_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(16)])
    temperature = models.FloatField(default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    answer_budget_seconds = models.FloatField(
        default=25.0,
        validators=[MinValueValidator(2.0), MaxValueValidator(120.0)],
        help_text="Total time for retries and fallbacks before quoting passages instead.",
    )

    # Retrieval.
    top_k = models.PositiveSmallIntegerField(
        default=6, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    min_relevance = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Similarity the best passage needs, or the bot says it does not know without asking "
        "a model. Empty: the embedding model's default.",
    )

    # Answer cache.
    cache_enabled = models.BooleanField(default=True)
    cache_similarity = models.FloatField(
        default=0.94,  # BANKING77: wrong hits under 1 % of hits, seeded and replayed (docs/benchmarks.md)
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Query similarity at which a cached answer is reused for a differently worded question.",
    )
    cache_ttl_hours = models.PositiveIntegerField(default=24 * 7)

    widget_key = models.CharField(
        max_length=40,
        unique=True,
        default=new_widget_key,
        help_text="Public: goes in the widget's script tag (data-bot). It is not a secret.",
    )
    widget_allowed_origins = models.TextField(
        blank=True,
        help_text="One origin per line, e.g. https://shop.example.com. "
        "The widget is refused on any other site; empty means nowhere.",
    )
    widget_identity_secret = models.CharField(
        max_length=100,
        blank=True,
        default=new_identity_secret,
        help_text="Shared with the shop's server, which signs logged-in customers' ids (HMAC-SHA256).",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        languages = self.languages if isinstance(self.languages, list) else None
        if not languages or any(language not in LANGUAGES for language in languages):
            errors["languages"] = f"A list drawn from {', '.join(LANGUAGES)}."
        elif self.default_language not in languages:
            errors["default_language"] = "Must be one of the bot's languages."
        order = self.provider_order if isinstance(self.provider_order, list) else None
        if (
            order is None
            or any(name not in PROVIDER_NAMES for name in order)
            or len(set(order)) != len(order)
        ):
            errors["provider_order"] = f"A list of distinct names from {', '.join(PROVIDER_NAMES)}."
        if errors:
            raise ValidationError(errors)

    def says(self, what: str, language: str) -> str:
        """The bot's canned text `what` ("greeting", "dont_know", "handoff") in `language`."""
        language = language if language in LANGUAGES else self.default_language
        return getattr(self, f"{what}_{language}") or getattr(self, f"{what}_{self.default_language}")

    def relevance_floor(self) -> float:
        if self.min_relevance is not None:
            return self.min_relevance
        return EMBEDDING_MODELS[self.knowledge_base.embedding_model].relevance_floor

    def strong_keyword_list(self) -> list[str]:
        return [word.strip().lower() for word in self.strong_keywords.split(",") if word.strip()]

    def model_for(self, provider: str, tier: str) -> str:
        """The configured model id of `provider` for a "simple" or "strong" question ("" if none)."""
        if provider == "extractive":
            return "extractive"
        simple = getattr(self, f"{provider}_simple_model", "")
        strong = getattr(self, f"{provider}_strong_model", "")
        return (simple or strong) if tier == "simple" else (strong or simple)


class ApiKey(models.Model):
    """A secret that lets a server call the REST API as one bot. Only its hash is stored."""

    PREFIX = "sk_bot_"

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Who uses this key, e.g. 'shop backend'.")
    lookup = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}{self.lookup}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def new_token(cls) -> tuple[str, str, str]:
        """(full token shown once, lookup part, hash of the secret part)."""
        lookup = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        return f"{cls.PREFIX}{lookup}_{secret}", lookup, cls.hash_secret(secret)


class AnswerCacheEntry(models.Model):
    """An answer that may be served again for the same (or an equivalent) question.

    It remembers the knowledge it was built from (`documents`: id -> live version)
    and is only served while those documents still serve that version.
    """

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="cache_entries")
    language = models.CharField(max_length=5)
    question = models.TextField()
    normalized_question = models.TextField()
    question_hash = models.CharField(max_length=64)
    embedding_model = models.CharField(max_length=64)
    embedding = VectorField()
    answer = models.TextField()
    citations = models.JSONField(default=list)
    documents = models.JSONField(default=dict, help_text="Document id -> live version used.")
    knowledge_base_version = models.PositiveIntegerField()
    provider = models.CharField(max_length=30, blank=True)
    model = models.CharField(max_length=100, blank=True)
    source_message_id = models.BigIntegerField(null=True, blank=True)
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_hit_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "cached answer"
        indexes = [models.Index(fields=["bot", "language", "embedding_model"])]
        constraints = [
            models.UniqueConstraint(
                fields=["bot", "language", "question_hash"], name="answer_cache_unique_question"
            )
        ]

    def __str__(self) -> str:
        return self.question[:80]


class ZaloAccount(models.Model):
    """A bot's Zalo Official Account: the app's credentials and the OA's current token pair.

    Zalo's refresh token is single-use: each refresh returns a new pair and kills the old
    refresh token, so the pair is rotated under a row lock and saved before it is used.
    """

    bot = models.OneToOneField(Bot, on_delete=models.CASCADE, related_name="zalo")
    app_id = models.CharField(max_length=40, help_text="The Zalo App id; events of another app are refused.")
    app_secret = models.CharField(max_length=200, help_text="The App Secret Key (OAuth token refresh).")
    oa_secret_key = models.CharField(max_length=200, help_text="The OA Secret Key (webhook signatures).")
    oa_id = models.CharField(max_length=40, blank=True)
    access_token = models.TextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    refresh_token = models.TextField(blank=True)
    refresh_token_issued_at = models.DateTimeField(null=True, blank=True)
    needs_reconnect = models.BooleanField(
        default=False, help_text="Zalo rejected the refresh token: connect the OA again (zalo_connect)."
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Zalo account"

    def __str__(self) -> str:
        return f"Zalo OA of {self.bot}"


class ZaloEvent(models.Model):
    """A webhook delivery, stored before it is acknowledged and processed once on the chat queue.

    `event_key` is Zalo's message id (or a digest of the body for events without one):
    Zalo redelivers for about two hours, and a redelivery finds the row already there.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    account = models.ForeignKey(ZaloAccount, on_delete=models.CASCADE, related_name="events")
    event_key = models.CharField(max_length=100)
    event_name = models.CharField(max_length=60)
    sender_id = models.CharField(max_length=40, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    deliveries = models.PositiveSmallIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Zalo event"
        constraints = [models.UniqueConstraint(fields=["account", "event_key"], name="zalo_event_once")]

    def __str__(self) -> str:
        return f"{self.event_name} {self.event_key}"


class ZaloOutboundMessage(models.Model):
    """One text part to send through the OA message API: the persisted outbox.

    A send that fails for a reason that may pass (rate limit, network, token) is retried
    with backoff; one that cannot succeed (outside the reply window, user gone) ends
    `failed` with Zalo's code and message, visible in the admin.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    account = models.ForeignKey(ZaloAccount, on_delete=models.CASCADE, related_name="outbox")
    user_id = models.CharField(max_length=40)
    message_id = models.BigIntegerField(
        null=True, blank=True, help_text="The stored reply (conversations.Message) this part belongs to."
    )
    part = models.PositiveSmallIntegerField(default=0)
    text = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    zalo_message_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Zalo outbound message"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "message_id", "part"],
                condition=models.Q(message_id__isnull=False),
                name="zalo_outbound_part_once",
            )
        ]

    def __str__(self) -> str:
        return f"to {self.user_id}: {self.text[:60]}"
