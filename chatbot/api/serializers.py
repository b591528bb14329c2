"""Request validation and response shapes of the REST API (also its OpenAPI schema).

Plain Serializers with declared fields rather than ModelSerializers: the answer
path is latency-sensitive, and the wire format should not follow model changes
by accident.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chatbot.models import LANGUAGES
from chatbot.pipeline import MAX_MESSAGE_CHARS, InvalidMessage, validate_text
from conversations.models import Message


class MessageCreateSerializer(serializers.Serializer):
    user_id = serializers.CharField(
        min_length=1, max_length=200, help_text="Your id of the customer; one conversation per customer."
    )
    text = serializers.CharField(
        allow_blank=True,
        trim_whitespace=False,
        help_text=f"The customer's message, at most {MAX_MESSAGE_CHARS} characters.",
    )
    message_id = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        default="",
        help_text="Your id of this message: sending it again returns the stored answer, never a second one.",
    )
    language = serializers.ChoiceField(
        choices=LANGUAGES,
        required=False,
        allow_blank=True,
        default="",
        help_text="The customer's language if you know it; detected otherwise.",
    )
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    stream = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Answer as server-sent events (same as sending Accept: text/event-stream).",
    )

    def validate_text(self, value: str) -> str:
        # The pipeline's own rule, reported as a field error beside the others.
        try:
            validate_text(value)
        except InvalidMessage as refused:
            raise serializers.ValidationError(str(refused), code=refused.code) from None
        return value


class CitationSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="The [n] marker in the answer's text.")
    document_id = serializers.IntegerField()
    document_title = serializers.CharField()
    heading = serializers.CharField()
    chunk_id = serializers.IntegerField()
    score = serializers.FloatField()


@extend_schema_field(CitationSerializer(many=True))
class CitationsField(serializers.JSONField):
    """Passed through as the pipeline stored them; the schema documents their usual keys."""


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=Message.Role.choices)
    text = serializers.CharField()
    language = serializers.CharField()
    outcome = serializers.CharField(help_text="How a bot answer came about; empty on other messages.")
    citations = CitationsField(help_text="The sources the answer cites.")
    provider = serializers.CharField()
    model = serializers.CharField()
    cache_hit = serializers.BooleanField()
    latency_ms = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    feedback = serializers.CharField(help_text='"up", "down" or empty.')
    created_at = serializers.DateTimeField()


class ReplySerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    question_id = serializers.IntegerField(help_text="The stored customer message.")
    message = MessageSerializer(allow_null=True, help_text="The bot's answer; null when a person answers.")
    status = serializers.CharField(
        help_text='The conversation\'s status: "bot", "waiting_for_human" or "human".'
    )


class ContactSerializer(serializers.Serializer):
    user_id = serializers.CharField(source="external_id")
    display_name = serializers.CharField()


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    channel = serializers.CharField()
    language = serializers.CharField()
    contact = ContactSerializer()
    started_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    messages = serializers.SerializerMethodField(help_text="Oldest first.")

    @extend_schema_field(MessageSerializer(many=True))
    def get_messages(self, conversation) -> list[dict]:
        # Passed in by the view, read through the conversations selector.
        return MessageSerializer(self.context["messages"], many=True).data


class FeedbackSerializer(serializers.Serializer):
    feedback = serializers.ChoiceField(choices=Message.Feedback.values)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, snake_case: branch on this.")
    message = serializers.CharField(help_text="For people; wording may change.")
    fields = serializers.DictField(
        required=False,
        help_text='Validation errors by field: {"text": [{"code": "...", "message": "..."}]}.',
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
