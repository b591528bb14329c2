"""Who talks to the bot (Contact), their threads (Conversation) and every turn (Message).

This app sits at the bottom of the ladder and imports no other app: a conversation
names its bot by id only (`bot_id`), and billing refers to these rows by id.
"""

from django.conf import settings
from django.db import models


class Channel(models.TextChoices):
    WEB = "web", "Web widget"
    ZALO = "zalo", "Zalo OA"
    API = "api", "REST API"
    ADMIN = "admin", "Admin (staff test)"


class Contact(models.Model):
    """One end user on one channel: a Zalo user id, a widget visitor id, an API caller's user id."""

    channel = models.CharField(max_length=10, choices=Channel.choices)
    external_id = models.CharField(max_length=200)
    display_name = models.CharField(max_length=200, blank=True)
    language = models.CharField(max_length=5, blank=True, help_text="Last language the contact wrote in.")
    profile = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-last_seen_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], name="contact_unique_channel_identity")
        ]

    def __str__(self) -> str:
        return self.display_name or f"{self.get_channel_display()} {self.external_id}"


class Conversation(models.Model):
    class Status(models.TextChoices):
        BOT = "bot", "Bot answering"
        WAITING_FOR_HUMAN = "waiting_for_human", "Waiting for a person"
        HUMAN = "human", "Person answering"
        CLOSED = "closed", "Closed"

    OPEN = (Status.BOT, Status.WAITING_FOR_HUMAN, Status.HUMAN)

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    bot_id = models.BigIntegerField(db_index=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.BOT, db_index=True)
    language = models.CharField(max_length=5, blank=True)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
    )
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at", "-pk"]
        indexes = [models.Index(fields=["contact", "bot_id", "status"])]

    def __str__(self) -> str:
        return f"Conversation {self.pk} with {self.contact}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "Customer"
        ASSISTANT = "assistant", "Bot"
        STAFF = "staff", "Staff"
        SYSTEM = "system", "System"

    class Outcome(models.TextChoices):
        """How the bot's answer came about; empty on customer and staff messages."""

        ANSWERED = "answered", "Answered"
        CACHED = "cached", "Answered from cache"
        FALLBACK = "fallback", "Answered by a fallback"
        EXTRACTIVE = "extractive", "Quoted passages (no LLM)"
        DONT_KNOW = "dont_know", "Did not know"
        HANDOFF = "handoff", "Handed over to a person"
        INTERRUPTED = "interrupted", "Cut off mid-answer"
        FAILED = "failed", "Failed"

    class Feedback(models.TextChoices):
        UP = "up", "Helpful"
        DOWN = "down", "Not helpful"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    language = models.CharField(max_length=5, blank=True)
    # The channel's own id of an inbound message (Zalo msg_id, a client-supplied id):
    # unique per conversation, so a redelivered webhook stores nothing twice.
    external_id = models.CharField(max_length=200, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    in_reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )

    # Bot answers: what answered, with which sources, at what cost.
    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True)
    citations = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=30, blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    cache_hit = models.BooleanField(default=False)
    details = models.JSONField(default=dict, blank=True, help_text="Route, attempts, timings, prompt size.")

    feedback = models.CharField(max_length=5, choices=Feedback.choices, blank=True)
    feedback_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["conversation", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "external_id"],
                condition=~models.Q(external_id=""),
                name="message_unique_external_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.text[:60]}"
