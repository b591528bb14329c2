"""The widget's JSON/SSE API under /widget/api/<widget_key>/, and the demo page.

Every API request is checked in this order: the key names an active bot, the page's
origin is one of the bot's (or this server's own), the body is small enough, the
identity verifies, the rate limits allow it; only then is anything read or stored.
Browsers call it with `credentials: "omit"`: no cookie is read, so there is no CSRF
to guard against, and the allowed origin is echoed without Allow-Credentials.
"""

import json
from collections.abc import Callable
from functools import wraps
from urllib.parse import unquote

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from chatbot import pipeline
from chatbot.api.errors import error_body
from chatbot.api.streaming import answer_event_stream
from chatbot.demo import DEMO_BOT_SLUG
from chatbot.http import declared_body_length
from chatbot.models import LANGUAGES, Bot
from chatbot.widget.errors import WidgetError
from chatbot.widget.identity import WidgetIdentity, identity_resolve
from chatbot.widget.origins import InvalidOrigin, origin_of_request, origin_of_server, origins_allowed
from chatbot.widget.ratelimit import widget_rate_limit
from chatbot.widget.selectors import conversation_body, message_bodies, widget_bot_get, widget_history
from chatbot.widget.services import widget_request_handoff, widget_set_feedback
from conversations.models import Channel

MAX_BODY_BYTES = 32 * 1024  # a 4,000-character message is at most 16 KB of UTF-8 JSON
MAX_MESSAGE_ID_CHARS = 100
ALLOWED_HEADERS = "Content-Type, X-Widget-Visitor, X-Widget-User, X-Widget-User-Hash, X-Widget-User-Name"
PREFLIGHT_MAX_AGE = 600
ANY_ORIGIN = "*"

View = Callable[..., HttpResponse]


def widget_endpoint(method: str, *, visitor: bool = True) -> Callable[[View], View]:
    """Checks and CORS around a view taking (request, bot[, identity], **url_kwargs).

    `visitor`: the request speaks for a visitor (identity headers), passed to the view.
    Every request counts against its address's limit, a refused identity too; writes
    (POST) also count against the visitor's.
    """

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, widget_key: str, **kwargs) -> HttpResponse:
            # A refusal before the origin is accepted is readable by any page, so the widget
            # can say why it is off; it carries nothing but the error.
            cors_origin: str | None = ANY_ORIGIN
            try:
                bot = widget_bot_get(widget_key=widget_key)
                if bot is None:
                    raise WidgetError(status=404, code="unknown_widget", message="No widget has this key.")
                cors_origin = _allowed_origin(request, bot)
                if request.method == "OPTIONS":
                    return _preflight(cors_origin, method)
                if request.method != method:
                    raise WidgetError(status=405, code="method_not_allowed", message=f"Use {method}.")
                if not bot.is_active:
                    raise WidgetError(status=403, code="bot_inactive", message="This chat is switched off.")
                _check_body_size(request)
                if not visitor:
                    widget_rate_limit(request=request, bot=bot)
                    response = view(request, bot, **kwargs)
                else:
                    identity, refused = None, None
                    try:
                        identity = _identity(request, bot)
                    except WidgetError as error:
                        refused = error
                    widget_rate_limit(
                        request=request, bot=bot, identity=identity if method == "POST" else None
                    )
                    if refused is not None:
                        raise refused
                    response = view(request, bot, identity, **kwargs)
            except WidgetError as error:
                response = _error_response(error)
            return _with_cors(response, cors_origin)

        return wrapper

    return decorate


@widget_endpoint("GET", visitor=False)
def config(request: HttpRequest, bot: Bot) -> HttpResponse:
    """What the widget shows before anyone writes: the bot's name and greeting."""
    language = _language(request.GET.get("lang", ""), bot)
    return JsonResponse(
        {
            "name": bot.name,
            "language": language,
            "languages": list(bot.languages),
            "greeting": bot.says("greeting", language),
            "max_message_chars": pipeline.MAX_MESSAGE_CHARS,
        }
    )


@widget_endpoint("GET")
def conversation(request: HttpRequest, bot: Bot, identity: WidgetIdentity) -> HttpResponse:
    """The visitor's open conversation and its recent messages, so a reload shows earlier turns."""
    return JsonResponse(widget_history(bot=bot, identity=identity))


@widget_endpoint("POST")
def messages(request: HttpRequest, bot: Bot, identity: WidgetIdentity) -> HttpResponse:
    """A question; the answer comes as server-sent events: delta*, then done (or error)."""
    body = _json_body(request)
    text = body.get("text")
    message_id = body.get("message_id", "")
    if not isinstance(text, str):
        raise WidgetError(status=400, code="invalid_request", message='Send the message as {"text": "..."}.')
    if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise WidgetError(
            status=400,
            code="invalid_request",
            message=f"message_id is a string of at most {MAX_MESSAGE_ID_CHARS} characters.",
        )
    inbound = pipeline.Inbound(
        bot=bot,
        channel=Channel.WEB,
        user_id=identity.external_id,
        text=text,
        message_id=message_id,
        display_name=identity.display_name,
    )
    try:
        return answer_event_stream(inbound, done_body=_done_body)
    except pipeline.InvalidMessage as error:  # the text is empty or too long; nothing was stored
        raise WidgetError(status=400, code=error.code, message=str(error)) from None


@widget_endpoint("POST")
def feedback(request: HttpRequest, bot: Bot, identity: WidgetIdentity, message_id: int) -> HttpResponse:
    body = _json_body(request)
    message = widget_set_feedback(
        bot=bot, identity=identity, message_id=message_id, feedback=body.get("feedback")
    )
    return JsonResponse({"message": message_bodies([message])[0]})


@widget_endpoint("POST")
def handoff(request: HttpRequest, bot: Bot, identity: WidgetIdentity) -> HttpResponse:
    """ "Talk to a person": the conversation waits for staff; the bot's handoff text comes back."""
    body = _json_body(request)
    conversation_, notice = widget_request_handoff(
        bot=bot, identity=identity, language=_language(body.get("language"), bot)
    )
    return JsonResponse(
        {
            "conversation": conversation_body(conversation_),
            "message": message_bodies([notice])[0] if notice else None,
        }
    )


@csrf_exempt
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    response = JsonResponse(error_body("not_found", f"No widget API endpoint at {request.path}."), status=404)
    return _with_cors(response, ANY_ORIGIN)


def demo(request: HttpRequest) -> HttpResponse:
    """A shop page embedding the demo bot's widget with the one script tag."""
    bot = Bot.objects.filter(slug=DEMO_BOT_SLUG).first()
    if bot is None:
        raise Http404(
            f"The demo bot (slug {DEMO_BOT_SLUG!r}) does not exist: run `manage.py seed_demo` "
            "(or `make run`, which seeds it)."
        )
    language = request.GET.get("lang")
    language = language if language in LANGUAGES else "vi"
    return render(request, "widget/demo.html", {"bot": bot, "language": language})


def _allowed_origin(request: HttpRequest, bot: Bot) -> str | None:
    """The origin to echo in Access-Control-Allow-Origin; None for a same-origin read."""
    try:
        origin = origin_of_request(request)
    except InvalidOrigin as error:
        raise WidgetError(
            status=403, code="origin_not_allowed", message=f"Refused origin: {error}."
        ) from None
    if origin is None:
        # Browsers leave Origin out of same-origin GETs only; a write always carries it.
        if request.method in ("GET", "HEAD"):
            return None
        raise WidgetError(
            status=403, code="origin_required", message="The widget API answers web pages, which send Origin."
        )
    if origin == origin_of_server(request) or origin in origins_allowed(bot.widget_allowed_origins):
        return origin
    raise WidgetError(
        status=403,
        code="origin_not_allowed",
        message=f"This chat is not enabled on {origin}: add it to the bot's allowed origins.",
    )


def _preflight(origin: str | None, method: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = f"{method}, OPTIONS"
    response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return _with_cors(response, origin)


def _with_cors(response: HttpResponse, origin: str | None) -> HttpResponse:
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "Retry-After"
    response["Vary"] = "Origin"
    if "Cache-Control" not in response:
        response["Cache-Control"] = "no-store"  # conversations are private; config follows the admin
    return response


def _error_response(error: WidgetError) -> JsonResponse:
    extra = {"retry_after": error.retry_after} if error.retry_after else {}
    response = JsonResponse(error_body(error.code, error.message, **extra), status=error.status)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


def _check_body_size(request: HttpRequest) -> None:
    length = declared_body_length(request)
    if length > MAX_BODY_BYTES:
        raise WidgetError(
            status=413,
            code="body_too_large",
            message=f"The body is {length} bytes; the limit is {MAX_BODY_BYTES}.",
        )


def _json_body(request: HttpRequest) -> dict:
    if request.content_type != "application/json":
        raise WidgetError(
            status=415, code="unsupported_media_type", message="Send the body as application/json."
        )
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise WidgetError(status=400, code="invalid_json", message="The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise WidgetError(status=400, code="invalid_json", message="The body must be a JSON object.")
    return data


def _identity(request: HttpRequest, bot: Bot) -> WidgetIdentity:
    # Header values are ASCII: the widget percent-encodes the user id and name (UTF-8).
    try:
        user_id = unquote(request.headers.get("X-Widget-User", ""), errors="strict")
        display_name = unquote(request.headers.get("X-Widget-User-Name", ""), errors="strict")
    except UnicodeDecodeError:
        raise WidgetError(
            status=400, code="invalid_user_id", message="X-Widget-User must be percent-encoded UTF-8."
        ) from None
    return identity_resolve(
        bot=bot,
        visitor_id=request.headers.get("X-Widget-Visitor", ""),
        user_id=user_id,
        user_hash=request.headers.get("X-Widget-User-Hash", ""),
        display_name=display_name,
    )


def _language(value: object, bot: Bot) -> str:
    return value if isinstance(value, str) and value in bot.languages else bot.default_language


def _done_body(answer: pipeline.Answer) -> dict:
    return {
        "conversation": conversation_body(answer.conversation),
        "question_id": answer.question.pk,
        "message": message_bodies([answer.reply])[0] if answer.reply is not None else None,
    }
