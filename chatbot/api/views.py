"""REST API views: authenticate, limit, validate, call one service, shape the answer."""

import json

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbot import pipeline
from chatbot.api.authentication import BotApiKeyAuthentication, KeyForThisBot
from chatbot.api.errors import ApiError
from chatbot.api.ratelimit import ApiRateLimit
from chatbot.api.serializers import (
    ConversationSerializer,
    ErrorSerializer,
    FeedbackSerializer,
    MessageCreateSerializer,
    MessageSerializer,
    ReplySerializer,
)
from chatbot.api.streaming import EVENT_STREAM, answer_event_stream
from chatbot.http import declared_body_length
from conversations.models import Channel
from conversations.selectors import conversation_get_for_bot, conversation_messages, message_get_for_bot
from conversations.services import message_set_feedback


def _errors(*statuses: int) -> dict:
    """Error responses for the schema; errors are JSON whatever the client accepts."""
    described = {
        400: "Invalid JSON or fields (invalid_json, invalid_request, empty_message, message_too_long).",
        401: "Missing, unknown or revoked API key (invalid_api_key).",
        403: "The key is for another bot (wrong_bot), or the bot is switched off (bot_inactive).",
        404: "No such conversation or message for this key's bot, or no such bot (not_found, bot_not_found).",
        405: "Method not allowed (method_not_allowed).",
        413: "Body larger than the limit (body_too_large).",
        415: "Body not sent as application/json (unsupported_media_type).",
        429: "Rate limit reached (rate_limited); see the Retry-After header.",
    }
    return {
        (status, "application/json"): OpenApiResponse(ErrorSerializer, description=described[status])
        for status in statuses
    }


class EventStreamRenderer(BaseRenderer):
    """Lets `Accept: text/event-stream` through content negotiation.

    Only the message view streams, with its own StreamingHttpResponse; anything else
    that would be rendered with this (an error) is rendered as JSON instead.
    """

    media_type = EVENT_STREAM
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


class BotApiView(APIView):
    """Base of the API's views: bearer key, per-key and per-address limits, body cap, JSON errors."""

    authentication_classes = [BotApiKeyAuthentication]
    permission_classes = [KeyForThisBot]
    throttle_classes = [ApiRateLimit]

    def initial(self, request, *args, **kwargs) -> None:
        _check_body_size(request)
        try:
            super().initial(request, *args, **kwargs)
        except (NotAuthenticated, AuthenticationFailed):
            # DRF only throttles after authentication succeeds; guessing keys must
            # count against the caller's address too.
            self.check_throttles(request)
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and not isinstance(response.accepted_renderer, JSONRenderer):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class MessageCreateView(BotApiView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        tags=["messages"],
        summary="Send a customer's message and get the bot's answer",
        description=(
            'Blocking by default. With `"stream": true` or `Accept: text/event-stream` the answer '
            'comes as server-sent events: `event: delta` with `{"text": "..."}` per piece of text, '
            "then one `event: done` with the same body as the blocking answer; a failure after the "
            "stream started is sent as `event: error` with the error body. "
            "When a person handles the conversation the bot stays quiet: 202 with `message: null`."
        ),
        request=MessageCreateSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(ReplySerializer, description="The bot answered."),
            (202, "application/json"): OpenApiResponse(
                ReplySerializer, description="Stored; a person answers (message is null)."
            ),
            (200, EVENT_STREAM): OpenApiResponse(
                OpenApiTypes.STR, description="Server-sent events: delta*, then done (or error)."
            ),
            **_errors(400, 401, 403, 404, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Question",
                value={"user_id": "customer-42", "text": "Mấy giờ cửa hàng mở cửa?", "message_id": "m-1001"},
                request_only=True,
            )
        ],
    )
    def post(self, request, bot_slug: str | None = None) -> Response | StreamingHttpResponse:
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        inbound = pipeline.Inbound(
            bot=request.auth.bot,
            channel=Channel.API,
            user_id=data["user_id"],
            text=data["text"],
            message_id=data["message_id"],
            language=data["language"],
            display_name=data["display_name"],
        )
        try:
            if data["stream"] or request.accepted_media_type == EVENT_STREAM:
                return answer_event_stream(inbound, done_body=_reply_body)
            answer = pipeline.answer(inbound)
        except pipeline.InvalidMessage as error:
            raise ApiError(status_code=400, code=error.code, message=str(error)) from None
        return Response(_reply_body(answer), status=200 if answer.reply is not None else 202)


class ConversationDetailView(BotApiView):
    @extend_schema(
        tags=["conversations"],
        summary="Read a conversation of this key's bot",
        description="Its status, the customer's user_id and every message, oldest first.",
        responses={200: ConversationSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request, conversation_id: int, bot_slug: str | None = None) -> Response:
        conversation = conversation_get_for_bot(bot_id=request.auth.bot_id, conversation_id=conversation_id)
        if conversation is None:
            raise ApiError(status_code=404, code="not_found", message="No such conversation for this bot.")
        messages = conversation_messages(conversation=conversation)
        return Response(ConversationSerializer(conversation, context={"messages": messages}).data)


class MessageFeedbackView(BotApiView):
    @extend_schema(
        tags=["messages"],
        summary="Rate one of the bot's answers",
        description='"up" or "down", with an optional comment.',
        request=FeedbackSerializer,
        responses={200: MessageSerializer, **_errors(400, 401, 403, 404, 413, 415, 429)},
    )
    def post(self, request, message_id: int, bot_slug: str | None = None) -> Response:
        serializer = FeedbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = message_get_for_bot(bot_id=request.auth.bot_id, message_id=message_id)
        if message is None:
            raise ApiError(status_code=404, code="not_found", message="No such message for this bot.")
        try:
            message = message_set_feedback(
                message=message,
                feedback=serializer.validated_data["feedback"],
                comment=serializer.validated_data["comment"],
            )
        except ValueError as error:
            raise ApiError(status_code=400, code="feedback_not_allowed", message=str(error)) from None
        return Response(MessageSerializer(message).data)


def _check_body_size(request) -> None:
    length = declared_body_length(request)
    limit = settings.API_MAX_BODY_BYTES
    if length > limit:
        raise ApiError(
            status_code=413,
            code="body_too_large",
            message=f"The body is {length} bytes; the limit is {limit}.",
        )


def _reply_body(answer: pipeline.Answer) -> dict:
    return ReplySerializer(
        {
            "conversation_id": answer.conversation.pk,
            "question_id": answer.question.pk,
            "message": answer.reply,
            "status": answer.conversation.status,
        }
    ).data
