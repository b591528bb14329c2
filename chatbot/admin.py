from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from chatbot.answer_cache import cache_flush_hits
from chatbot.api_keys import api_key_create, api_key_revoke
from chatbot.forms import LANGUAGE_NAMES, PROVIDER_NAMES, BotForm, TryBotForm
from chatbot.llm.registry import PROVIDERS, available_providers
from chatbot.models import AnswerCacheEntry, ApiKey, Bot
from chatbot.pipeline import Inbound, InvalidMessage, answer
from chatbot.widget.origins import InvalidOrigin, origins_parse
from chatbot.widget.services import widget_identity_secret_rotate
from chatbot.widget.snippet import secret_masked, widget_fieldset_description
from conversations.models import Channel, Message
from conversations.selectors import conversation_messages, conversation_open_of, conversation_totals
from conversations.services import conversations_close

OUTCOME_COLOURS = {
    Message.Outcome.ANSWERED: "success",
    Message.Outcome.CACHED: "success",
    Message.Outcome.FALLBACK: "warning",
    Message.Outcome.EXTRACTIVE: "info",
    Message.Outcome.DONT_KNOW: "warning",
    Message.Outcome.HANDOFF: "info",
    Message.Outcome.INTERRUPTED: "danger",
    Message.Outcome.FAILED: "danger",
}
TRANSCRIPT_MESSAGES = 60  # a test conversation can run long; the newest part is what matters
AVAILABLE_STYLE = "color: var(--color-green-700); margin-right: 1rem"
MISSING_STYLE = "color: var(--color-base-500); margin-right: 1rem"
PROVIDER_HINTS = {
    "gemini": "set GEMINI_API_KEY",
    "bedrock": "set BEDROCK_ENDPOINT_URL or AWS credentials",
}


class ApiKeyInline(TabularInline):
    model = ApiKey
    fields = ["name", "token_prefix", "status", "created_by", "created_at", "last_used_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "API keys (create and revoke them under API keys)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @display(description="Key")
    def token_prefix(self, api_key: ApiKey) -> str:
        return _token_prefix(api_key)

    @display(description="Status", label={"Active": "success", "Revoked": "danger"})
    def status(self, api_key: ApiKey) -> str:
        return "Active" if api_key.is_active else "Revoked"


class BotAdminForm(BotForm):
    """The bot form plus the widget's allowed origins, checked and stored normalised."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "widget_allowed_origins" in self.fields:  # absent when the page is read-only
            field = self.fields["widget_allowed_origins"]
            field.label = "Allowed origins"
            field.help_text = (
                "One per line, e.g. https://shop.example.com. Pages on any other site are refused; "
                "this server's own pages (the demo page) always work."
            )
            field.widget.attrs["rows"] = 3

    def clean_widget_allowed_origins(self) -> str:
        try:
            origins = origins_parse(self.cleaned_data["widget_allowed_origins"])
        except InvalidOrigin as error:
            raise forms.ValidationError(f"Not an origin: {error}.") from None
        return "\n".join(origins)


@admin.register(Bot)
class BotAdmin(ModelAdmin):
    form = BotAdminForm
    list_display = ["name", "slug", "knowledge_base", "languages_display", "providers_display",
                    "cache_enabled", "is_active", "try_link"]  # fmt: skip
    list_filter = ["is_active", "cache_enabled", "knowledge_base"]
    search_fields = ["name", "slug", "persona"]
    list_select_related = ["knowledge_base"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["providers_here", "cached_answers", "created_at", "updated_at", "widget_key",
                       "widget_identity"]  # fmt: skip
    inlines = [ApiKeyInline]
    actions_detail = ["try_bot", "new_api_key", "rotate_widget_secret"]
    fieldsets = [
        (
            "Identity & knowledge",
            {"fields": ["name", "slug", "knowledge_base", "is_active", ("created_at", "updated_at")]},
        ),
        (
            "Voice & messages",
            {
                "fields": [
                    "persona",
                    ("languages", "default_language"),
                    ("greeting_vi", "greeting_en"),
                    ("dont_know_vi", "dont_know_en"),
                    ("handoff_vi", "handoff_en"),
                    "history_turns",
                ]
            },
        ),
        (
            "Model routing & providers",
            {
                "fields": [
                    "providers_here",
                    "provider_order",
                    "simple_max_words",
                    "strong_keywords",
                    ("gemini_simple_model", "gemini_strong_model"),
                    ("bedrock_simple_model", "bedrock_strong_model"),
                    ("max_output_tokens", "temperature"),
                    "answer_budget_seconds",
                ],
                "description": "Short, simple questions go to the simple model of each provider; long "
                "ones, follow-ups and questions with a strong keyword go to the strong model.",
            },
        ),
        ("Retrieval", {"fields": [("top_k", "min_relevance")]}),
        (
            "Answer cache",
            {"fields": ["cache_enabled", ("cache_similarity", "cache_ttl_hours"), "cached_answers"]},
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(cache_count=Count("cache_entries"))

    def get_fieldsets(self, request, obj=None):
        # The script tag names this server, so it is built from the request.
        widget = {
            "fields": ["widget_allowed_origins", ("widget_key", "widget_identity")],
            "description": widget_fieldset_description(bot=obj, request=request),
        }
        return [*super().get_fieldsets(request, obj), ("Web widget", widget)]

    @display(description="Identity secret")
    def widget_identity(self, bot: Bot) -> str:
        if not bot.widget_identity_secret:
            return "None: signed user ids are refused. Rotate to create one."
        return format_html(
            '<code class="widget-identity-secret">{}</code><br>Shown in full once, when rotated '
            '("Rotate widget identity secret" above).',
            secret_masked(bot.widget_identity_secret),
        )

    @display(description="Languages")
    def languages_display(self, bot: Bot) -> str:
        return ", ".join(LANGUAGE_NAMES.get(code, code) for code in bot.languages)

    @display(description="Providers")
    def providers_display(self, bot: Bot) -> str:
        return (
            " → ".join(PROVIDER_NAMES.get(name, name) for name in bot.provider_order)
            or "Quoted passages only"
        )

    @display(description="")
    def try_link(self, bot: Bot) -> str:
        url = reverse("admin:chatbot_bot_try_bot", args=[bot.pk])
        return format_html('<a href="{}" class="font-medium text-primary-600">Try the bot</a>', url)

    @display(description="Configured on this server")
    def providers_here(self, bot: Bot | None = None) -> str:
        return format_html_join(
            " ",
            '<span class="bot-provider" data-available="{}" title="{}" style="{}">{} {}</span>',
            (
                (
                    "yes" if p["available"] else "no",
                    p["hint"],
                    AVAILABLE_STYLE if p["available"] else MISSING_STYLE,
                    "✓" if p["available"] else "✗",
                    p["name"] if p["available"] else f"{p['name']} ({p['hint']})",
                )
                for p in _providers_here()
            ),
        )

    @display(description="Cached answers")
    def cached_answers(self, bot: Bot) -> str:
        if not bot.pk:
            return "—"
        url = reverse("admin:chatbot_answercacheentry_changelist")
        return format_html(
            '<a href="{}?bot__id__exact={}">{} cached answer(s)</a>', url, bot.pk, bot.cache_count
        )

    @action(description="Try the bot", url_path="try", icon="forum", permissions=["view"])
    def try_bot(self, request: HttpRequest, object_id: str) -> HttpResponse:
        bot = get_object_or_404(Bot.objects.select_related("knowledge_base"), pk=object_id)
        user_id = f"staff:{request.user.pk}"
        if request.method == "POST" and "start_over" in request.POST:
            if conversations_close(channel=Channel.ADMIN, external_user_id=user_id, bot_id=bot.pk):
                messages.info(request, "Conversation closed; the next question starts a new one.")
            return redirect("admin:chatbot_bot_try_bot", bot.pk)

        form = TryBotForm(request.POST or None, bot=bot)
        turn = None
        if request.method == "POST" and form.is_valid():
            try:
                result = answer(
                    Inbound(
                        bot=bot,
                        channel=Channel.ADMIN,
                        user_id=user_id,
                        text=form.cleaned_data["text"],
                        language=form.cleaned_data["language"],
                        display_name=request.user.get_username(),
                    )
                )
            except InvalidMessage as error:
                form.add_error("text", str(error))
            else:
                turn = _turn(result.reply, result.outcome, result.trace, result.sources)
                form = TryBotForm(bot=bot, initial={"language": form.cleaned_data["language"]})

        conversation = conversation_open_of(channel=Channel.ADMIN, external_user_id=user_id, bot_id=bot.pk)
        transcript = (
            conversation_messages(conversation=conversation, last=TRANSCRIPT_MESSAGES) if conversation else []
        )
        spent = conversation_totals(conversation=conversation).cost if conversation else 0
        if turn is None:
            # After a reload, the last reply's stored details still explain it (without the passages).
            last = next((m for m in reversed(transcript) if m.role == Message.Role.ASSISTANT), None)
            if last is not None:
                turn = _turn(last, last.outcome, last.details, None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Try {bot.name}",
            "opts": self.model._meta,
            "original": bot,
            "bot": bot,
            "form": form,
            "conversation": conversation,
            "transcript": [_bubble(message) for message in transcript],
            "spent": _usd(spent),
            "turn": turn,
            "providers_here": _providers_here(),
            "languages": ", ".join(LANGUAGE_NAMES.get(code, code) for code in bot.languages),
        }
        return TemplateResponse(request, "admin/chatbot/bot/try_bot.html", context)

    @action(description="New API key", url_path="new-api-key", icon="key", permissions=["add_api_key"])
    def new_api_key(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return redirect(f"{reverse('admin:chatbot_apikey_add')}?bot={object_id}")

    @action(
        description="Rotate widget identity secret", url_path="rotate-widget-secret", icon="key_vertical",
        permissions=["change"],
    )  # fmt: skip
    def rotate_widget_secret(self, request: HttpRequest, object_id: str) -> HttpResponse:
        bot = get_object_or_404(Bot, pk=object_id)
        if request.method != "POST":
            # A GET (a link followed, a prefetch) must never rotate: ask first.
            context = {
                **self.admin_site.each_context(request),
                "title": f"Rotate the widget identity secret of {bot.name}?",
                "opts": self.model._meta,
                "original": bot,
                "confirm_icon": "key_vertical",
                "back_url": reverse("admin:chatbot_bot_change", args=[bot.pk]),
            }
            return TemplateResponse(request, "admin/chatbot/bot/rotate_widget_secret.html", context)
        secret = widget_identity_secret_rotate(bot=bot)
        messages.success(
            request,
            format_html(
                "New identity secret; copy it to the shop's server now, it is not shown in full again: "
                '<code class="widget-new-secret" style="user-select: all">{}</code>. '
                "Customer ids signed with the old secret are refused from now on.",
                secret,
            ),
        )
        return redirect("admin:chatbot_bot_change", bot.pk)

    # A method rather than "chatbot.add_apikey" in the action: unfold's system check looks
    # dotted permissions up in the database, which does not exist yet before the first migrate.
    def has_add_api_key_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("chatbot.add_apikey")


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    list_display = ["name", "bot", "token_prefix", "status", "created_by", "created_at", "last_used_at"]
    list_filter = [KeyStatusFilter, "bot"]
    search_fields = ["name", "lookup", "bot__name"]
    list_select_related = ["bot", "created_by"]
    actions = ["revoke_keys"]
    actions_detail = ["revoke_key"]

    # The secret hash is never shown, not even read-only: it is only ever compared.
    def get_fields(self, request, obj=None):
        if obj is None:
            return ["bot", "name"]
        return ["name", *self.get_readonly_fields(request, obj)]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["bot", "token_prefix", "status", "created_by", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            return super().save_model(request, obj, form, change)
        created, token = api_key_create(bot=obj.bot, name=obj.name, created_by=request.user)
        # The admin goes on with `obj` (log entry, redirect), so it becomes the created row.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        messages.success(
            request,
            format_html(
                "Copy the new key now; it is not stored and will not be shown again: "
                '<code class="api-key-token" style="user-select: all">{}</code>',
                token,
            ),
        )

    @display(description="Key")
    def token_prefix(self, api_key: ApiKey) -> str:
        return _token_prefix(api_key)

    @display(description="Status", label={"Active": "success", "Revoked": "danger"})
    def status(self, api_key: ApiKey) -> str:
        return "Active" if api_key.is_active else "Revoked"

    @action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        messages.success(request, f"{len(keys)} key(s) revoked; requests with them are refused from now on.")

    @action(description="Revoke this key", icon="block", permissions=["change"])
    def revoke_key(self, request: HttpRequest, object_id: str) -> HttpResponse:
        api_key = get_object_or_404(ApiKey.objects.select_related("bot"), pk=object_id)
        if not api_key.is_active:
            messages.info(request, f"{api_key} was already revoked on {api_key.revoked_at:%Y-%m-%d %H:%M}.")
            return redirect("admin:chatbot_apikey_change", api_key.pk)
        if request.method != "POST":
            # A GET (a link followed, a prefetch) must never revoke: ask first.
            context = {
                **self.admin_site.each_context(request),
                "title": f"Revoke {api_key.name}?",
                "opts": self.model._meta,
                "original": api_key,
                "api_key": api_key,
                "token_prefix": _token_prefix(api_key),
                "confirm_icon": "block",
                "back_url": reverse("admin:chatbot_apikey_change", args=[api_key.pk]),
            }
            return TemplateResponse(request, "admin/chatbot/apikey/revoke.html", context)
        api_key_revoke(api_key=api_key)
        messages.success(request, f"{api_key} is revoked; requests with it are refused from now on.")
        return redirect("admin:chatbot_apikey_change", api_key.pk)


class CacheStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "Can be served"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(AnswerCacheEntry)
class AnswerCacheEntryAdmin(ModelAdmin):
    list_display = ["question_display", "language", "bot", "hits", "created_at", "last_hit_at", "expires_at"]
    list_filter = ["bot", "language", CacheStateFilter]
    search_fields = ["question", "answer"]
    list_select_related = ["bot"]
    actions = ["forget_answers"]
    fields = ["bot", "language", "question", "answer", "citation_list", "provider", "model", "hits",
              "created_at", "last_hit_at", "expires_at", "knowledge_base_version", "documents"]  # fmt: skip
    readonly_fields = fields

    # Entries are written by the answer pipeline only; people read them or forget them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # Hits are counted in Redis between purges; flushing them first shows today's numbers.
        cache_flush_hits()
        return super().changelist_view(request, extra_context)

    def get_actions(self, request):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # "forget" says what deleting does here
        return found

    @display(description="Question", ordering="question")
    def question_display(self, entry: AnswerCacheEntry) -> str:
        return entry.question[:120]

    @display(description="Citations")
    def citation_list(self, entry: AnswerCacheEntry) -> str:
        if not entry.citations:
            return "—"
        rows = [(c.get("number"), c.get("document_title", ""), c.get("heading", "")) for c in entry.citations]
        return format_html_join("", '<div>[{}] {} <span class="text-font-subtle-light">{}</span></div>', rows)

    @action(description="Forget these answers (the next asker gets a fresh one)", permissions=["delete"])
    def forget_answers(self, request: HttpRequest, queryset) -> None:
        count, _ = queryset.delete()
        messages.success(request, f"{count} cached answer(s) forgotten.")


def _token_prefix(api_key: ApiKey) -> str:
    return f"{ApiKey.PREFIX}{api_key.lookup}_…"


def _providers_here() -> list[dict]:
    available = available_providers()
    return [
        {
            "name": PROVIDER_NAMES[name],
            "available": name in available,
            "hint": "always available" if name == "extractive" else PROVIDER_HINTS.get(name, ""),
        }
        for name in PROVIDERS
    ]


def _usd(amount: Decimal | str | None) -> str:
    value = Decimal(str(amount or 0))
    if not value:
        return "$0"
    return f"${value.quantize(Decimal('0.00000001')).normalize():f}"


def _bubble(message: Message) -> dict:
    return {
        "message": message,
        "role": message.role,
        "outcome_label": message.get_outcome_display() if message.outcome else "",
        "outcome_colour": OUTCOME_COLOURS.get(message.outcome, "info"),
        "cost": _usd(message.cost),
    }


def _turn(reply: Message | None, outcome: str, trace: dict, sources) -> dict:
    """What the panel beside the chat shows about one answer."""
    trace = trace or {}
    cited = {citation.get("chunk_id") for citation in (reply.citations if reply else [])}
    stages = trace.get("stages_ms") or {}
    total = sum(stages.values()) or 1
    ranked = [
        {
            "rank": rank,
            "hit": hit,
            "cited": hit.chunk_id in cited,
            "fused_percent": round(max(0.0, min(hit.fused_score, 1.0)) * 100),
        }
        for rank, hit in enumerate(sources or [], start=1)
    ]
    return {
        "reply": reply,
        "outcome": outcome,
        "outcome_label": Message.Outcome(outcome).label if outcome in Message.Outcome.values else "No reply",
        "outcome_colour": OUTCOME_COLOURS.get(outcome, "info"),
        "cost": _usd(reply.cost if reply else 0),
        "cache": trace.get("cache"),
        "route": trace.get("route"),
        "prompt": trace.get("prompt"),
        "retrieval": trace.get("retrieval"),
        "attempts": trace.get("attempts") or [],
        "handled_by_person": trace.get("handled_by") == "person",
        "stages": [
            {
                "name": stage.replace("_", " "),
                "ms": ms,
                "percent": round(ms * 100 / total, 1),
                "colour": index % 10,
            }
            for index, (stage, ms) in enumerate(stages.items())
        ],
        "stages_total_ms": round(sum(stages.values()), 1),
        "sources": ranked,
        "sources_known": sources is not None,
    }


# The Zalo channel's pages live beside its code.
import chatbot.zalo.admin  # noqa: E402, F401
