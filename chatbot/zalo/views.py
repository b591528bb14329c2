"""The Zalo webhook: verify, store, enqueue, answer 200. Never the LLM in the request."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from chatbot.api.errors import error_body
from chatbot.http import declared_body_length
from chatbot.zalo.selectors import zalo_account_for_webhook
from chatbot.zalo.services import MAX_BODY_BYTES, WebhookRefused, zalo_event_receive
from chatbot.zalo.signature import HEADER


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


@csrf_exempt
def webhook(request: HttpRequest, bot_slug: str) -> JsonResponse:
    if request.method != "POST":
        response = _refuse(405, "method_not_allowed", "Zalo events are POSTed.")
        response["Allow"] = "POST"
        return response
    too_big = f"Bodies over {MAX_BODY_BYTES} bytes are refused."
    if declared_body_length(request) > MAX_BODY_BYTES:  # refused before reading it
        return _refuse(413, "body_too_large", too_big)
    account = zalo_account_for_webhook(bot_slug=bot_slug)
    if account is None:
        return _refuse(404, "bot_not_found", "No bot with a Zalo account at this address.")
    try:
        raw_body = request.body
    except RequestDataTooBig:
        return _refuse(413, "body_too_large", too_big)
    if len(raw_body) > MAX_BODY_BYTES:
        return _refuse(413, "body_too_large", too_big)
    try:
        receipt = zalo_event_receive(
            account=account, raw_body=raw_body, signature=request.headers.get(HEADER)
        )
    except WebhookRefused as refused:
        return _refuse(refused.status, refused.code, refused.message)
    return JsonResponse({"ok": True, "duplicate": receipt.duplicate})
