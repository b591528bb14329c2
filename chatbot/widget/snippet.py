"""The tag a shop pastes into its pages, as the admin shows it."""

from django.conf import settings
from django.http import HttpRequest
from django.utils.html import format_html

from chatbot.models import Bot

SCRIPT_PATH = "chatbot/widget.js"


def widget_script_url(request: HttpRequest) -> str:
    # The plain name, never a hashed one: shops paste it once, and it must outlive deploys.
    # The widget calls the API on the origin it was loaded from, so this is the app's host.
    return request.build_absolute_uri(f"{settings.STATIC_URL}{SCRIPT_PATH}")


def widget_snippet(*, bot: Bot, request: HttpRequest) -> str:
    return f'<script src="{widget_script_url(request)}" data-bot="{bot.widget_key}" async></script>'


def secret_masked(secret: str) -> str:
    if not secret:
        return ""
    return f"{'•' * 12}{secret[-4:]}"


def widget_fieldset_description(*, bot: Bot | None, request: HttpRequest) -> str:
    if bot is None or not bot.pk:
        snippet = format_html("<p>{}</p>", "Save the bot to get its widget key and script tag.")
    else:
        snippet = format_html(
            "<p>Paste this tag into every page of the shop, before <code>&lt;/body&gt;</code>:</p>"
            '<pre class="widget-snippet" style="user-select: all; white-space: pre-wrap; '
            'padding: .5rem; border: 1px solid var(--color-base-300, #ccc); border-radius: .375rem">{}</pre>',
            widget_snippet(bot=bot, request=request),
        )
    return format_html(
        "{}<p>Only pages on the allowed origins below (and this server itself) can use it. "
        "For a logged-in customer, add <code>data-user-id</code> and <code>data-user-hash</code>: "
        "the hex HMAC-SHA256 of the user id under the identity secret, computed on the shop's server "
        "(never in the page). That customer is then the same contact on every device. "
        "See docs/widget.md.</p>",
        snippet,
    )
