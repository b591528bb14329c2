"""Connect a bot to its Zalo Official Account (once, or again after Zalo refused the refresh token)."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse
from django.utils import timezone

from chatbot.models import Bot
from chatbot.zalo.client import ZaloError, ZaloRefreshRevoked
from chatbot.zalo.selectors import secret_hint
from chatbot.zalo.services import zalo_account_connect


class Command(BaseCommand):
    help = (
        "Store a bot's Zalo OA credentials and exchange the refresh token (from the OA's OAuth consent "
        "or Zalo's API Explorer) for the first access token. Zalo's refresh tokens are single-use: "
        "the one given here is spent, and the new pair is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot_slug", help="The bot's slug, e.g. demo.")
        parser.add_argument("--app-id", required=True, help="The Zalo App id.")
        parser.add_argument("--app-secret", required=True, help="The App Secret Key (token refresh).")
        parser.add_argument(
            "--oa-secret-key",
            required=True,
            help="The OA Secret Key from the app's Webhook page (signatures).",
        )
        parser.add_argument("--refresh-token", required=True, help="A fresh OA refresh token.")
        parser.add_argument("--oa-id", default="", help="The OA's id (optional, shown in the admin).")

    def handle(self, *args, **options) -> None:
        bot = Bot.objects.filter(slug=options["bot_slug"]).first()
        if bot is None:
            raise CommandError(f"No bot with the slug {options['bot_slug']!r}.")
        values = {
            name: options[name].strip() for name in ("app_id", "app_secret", "oa_secret_key", "refresh_token")
        }
        empty = [name.replace("_", "-") for name, value in values.items() if not value]
        if empty:
            raise CommandError(f"Empty value for --{', --'.join(empty)}.")
        try:
            account = zalo_account_connect(bot=bot, oa_id=options["oa_id"].strip(), **values)
        except ZaloRefreshRevoked as error:
            raise CommandError(
                f"Zalo refused the refresh token; nothing was stored. Get a new one (OA consent or the "
                f"API Explorer) and run this again. ({error})"
            ) from error
        except ZaloError as error:
            raise CommandError(
                f"Could not reach Zalo; nothing was stored ({error}). If the request got through, "
                "Zalo may have spent the refresh token: try again, and get a new one if it is refused."
            ) from error
        webhook = reverse("zalo:webhook", args=[bot.slug])
        self.stdout.write(self.style.SUCCESS(f"Connected {bot} to Zalo app {account.app_id}."))
        expires = timezone.localtime(account.access_token_expires_at)
        self.stdout.write(
            f"  access token   {secret_hint(account.access_token)}, expires {expires:%Y-%m-%d %H:%M %Z}"
        )
        self.stdout.write(f"  refresh token  {secret_hint(account.refresh_token)} (rotated, stored)")
        self.stdout.write(f"  webhook URL    https://<your domain>{webhook}")
        self.stdout.write(
            "Set that URL in the app's Webhook settings on developers.zalo.me and tick the events."
        )
