"""`Authorization: Bearer sk_bot_...`: the API key decides the bot."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from chatbot.api.errors import ApiError
from chatbot.api_keys import api_key_authenticate
from chatbot.models import ApiKey, Bot

MAX_TOKEN_CHARS = 200


class BotApiKeyAuthentication(BaseAuthentication):
    """Sets request.auth to the ApiKey (its bot loaded); request.user stays anonymous."""

    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None  # the permission below answers 401 invalid_api_key
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationFailed("Send the API key as: Authorization: Bearer sk_bot_...")
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The API key is not valid.") from None
        api_key = api_key_authenticate(token=text)
        if api_key is None:
            raise AuthenticationFailed("The API key is not valid: unknown, mistyped or revoked.")
        return AnonymousUser(), api_key

    def authenticate_header(self, request) -> str:
        # Makes a missing or bad key a 401 (with WWW-Authenticate), not a 403.
        return 'Bearer realm="api"'


class KeyForThisBot(BasePermission):
    """A live key of an active bot; on /bots/{slug}/ routes, a key of that bot."""

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        bot = api_key.bot
        slug = view.kwargs.get("bot_slug")
        if slug and slug != bot.slug:
            if Bot.objects.filter(slug=slug).exists():
                raise ApiError(
                    status_code=403, code="wrong_bot", message=f"This API key is not a key of bot {slug!r}."
                )
            raise ApiError(status_code=404, code="bot_not_found", message=f"There is no bot {slug!r}.")
        if not bot.is_active:
            raise ApiError(status_code=403, code="bot_inactive", message=f"Bot {bot.slug!r} is switched off.")
        return True


class BotApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the bearer key in the OpenAPI schema."""

    target_class = BotApiKeyAuthentication
    name = "botApiKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_bot_<lookup>_<secret>",
            "description": "A bot's API key, created in the Django admin; the key decides the bot.",
        }
