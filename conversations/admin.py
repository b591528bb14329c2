"""The admin support staff read conversations in: contacts, transcripts, and every message.

This app imports no other project app. Bot names come from `chatbot.Bot` looked up
by name through the app registry, inside the query (a subquery), never per row.
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Count, Exists, Model, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import display
from unfold.paginator import InfinitePaginator

from conversations.models import Contact, Conversation, Message
from conversations.selectors import conversation_messages, conversation_totals

TRANSCRIPT_MAX_MESSAGES = 500

STATUS_COLOURS = {
    Conversation.Status.BOT: "info",
    Conversation.Status.WAITING_FOR_HUMAN: "warning",
    Conversation.Status.HUMAN: "success",
    Conversation.Status.CLOSED: "",
}

OUTCOME_COLOURS = {
    Message.Outcome.ANSWERED: "success",
    Message.Outcome.CACHED: "info",
    Message.Outcome.FALLBACK: "warning",
    Message.Outcome.EXTRACTIVE: "warning",
    Message.Outcome.DONT_KNOW: "danger",
    Message.Outcome.HANDOFF: "primary",
    Message.Outcome.INTERRUPTED: "warning",
    Message.Outcome.FAILED: "danger",
}


def bot_model() -> type[Model] | None:
    """chatbot.Bot, looked up lazily: conversations sits below chatbot and never imports it."""
    try:
        return apps.get_model("chatbot", "Bot")
    except LookupError:
        return None


def with_bot_name(queryset: QuerySet) -> QuerySet:
    bot = bot_model()
    if bot is None:
        return queryset.annotate(bot_name=Value("", output_field=CharField()))
    # bot_id is a plain id (no foreign key up the ladder), so the name comes from a
    # correlated subquery: still one query per page, run only for the rows it shows.
    name = bot.objects.filter(pk=OuterRef("bot_id")).values("name")[:1]
    return queryset.annotate(bot_name=Coalesce(Subquery(name), Value("")))


def bot_label(conversation: Conversation) -> str:
    return getattr(conversation, "bot_name", "") or f"Bot #{conversation.bot_id}"


def usd(amount: Decimal | int) -> str:
    """Costs are fractions of a cent per answer: show them to the last significant digit."""
    amount = Decimal(amount)
    if not amount:
        return "$0"
    text = f"{amount:.8f}".rstrip("0").rstrip(".")
    return f"${text}"


def duration(milliseconds: int) -> str:
    return f"{milliseconds} ms" if milliseconds < 1000 else f"{milliseconds / 1000:.1f} s"


def document_url(document_id: int | None) -> str:
    """The knowledge admin page of a cited document, if that app is installed."""
    if not document_id:
        return ""
    try:
        return reverse("admin:knowledge_document_change", args=[document_id])
    except NoReverseMatch:
        return ""


def badge(text: str, variant: str) -> str:
    """Unfold's badge. `@display(label=...)` draws one in change lists only, and draws
    "None" for an empty value; this works in lists, forms and inlines alike."""
    return render_to_string("unfold/helpers/label.html", {"text": text, "variant": variant})


def status_badge_html(conversation: Conversation) -> str:
    return badge(conversation.get_status_display(), STATUS_COLOURS.get(conversation.status, ""))


def transcript_url(message: Message) -> str:
    url = reverse("admin:conversations_conversation_change", args=[message.conversation_id])
    return f"{url}#message-{message.pk}"


# Filters ---------------------------------------------------------------------------------


class LanguageFilter(admin.SimpleListFilter):
    """Fixed choices: a DISTINCT over 100K contacts on every page load buys nothing."""

    title = "language"
    parameter_name = "language"
    UNKNOWN = "unknown"

    def lookups(self, request, model_admin):
        return [*settings.LANGUAGES, (self.UNKNOWN, "Unknown")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.UNKNOWN:
            return queryset.filter(language="")
        if value:
            return queryset.filter(language=value)
        return queryset


class BotFilter(admin.SimpleListFilter):
    title = "bot"
    parameter_name = "bot"

    def lookups(self, request, model_admin):
        bot = bot_model()
        if bot is not None:
            return [(str(pk), name) for pk, name in bot.objects.order_by("name").values_list("pk", "name")]
        ids = Conversation.objects.order_by("bot_id").values_list("bot_id", flat=True).distinct()
        return [(str(bot_id), f"Bot #{bot_id}") for bot_id in ids]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(bot_id=int(value))
        return queryset


# Contacts --------------------------------------------------------------------------------


class ConversationInline(TabularInline):
    model = Conversation
    fields = ["started_at", "status_badge", "channel", "message_count", "last_message_at"]
    readonly_fields = fields
    ordering = ["-started_at", "-pk"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    per_page = 20
    verbose_name_plural = "Conversations"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @display(description="Status")
    def status_badge(self, conversation: Conversation) -> str:
        return status_badge_html(conversation)


@admin.register(Contact)
class ContactAdmin(ModelAdmin):
    list_display = ["name", "channel", "external_id", "language", "last_seen_at", "conversation_count"]
    list_filter = ["channel", LanguageFilter]
    search_fields = ["display_name", "external_id"]
    search_help_text = "Name or the channel's user id."
    show_full_result_count = False
    list_per_page = 50
    fields = ["display_name", "language", "channel", "external_id", "profile_display", "created_at",
              "last_seen_at"]  # fmt: skip
    readonly_fields = ["channel", "external_id", "profile_display", "created_at", "last_seen_at"]
    inlines = [ConversationInline]

    def get_queryset(self, request):
        # A correlated COUNT per shown row, not COUNT over a join grouped by contact:
        # the join would aggregate all 100K contacts before the page's LIMIT applies.
        count = (
            Conversation.objects.filter(contact=OuterRef("pk"))
            .order_by()
            .values("contact")
            .annotate(total=Count("pk"))
            .values("total")
        )
        return super().get_queryset(request).annotate(conversation_total=Coalesce(Subquery(count), Value(0)))

    # Contacts come from the channels; staff may only correct a name or language.
    def has_add_permission(self, request) -> bool:
        return False

    @display(description="Name", ordering="display_name")
    def name(self, contact: Contact) -> str:
        return contact.display_name or "—"

    @display(description="Conversations", ordering="conversation_total")
    def conversation_count(self, contact: Contact) -> int:
        return contact.conversation_total

    @display(description="Profile")
    def profile_display(self, contact: Contact) -> str:
        if not contact.profile:
            return "—"
        return format_html(
            '<pre class="whitespace-pre-wrap text-xs">{}</pre>',
            json.dumps(contact.profile, indent=2, ensure_ascii=False),
        )


# Conversations ---------------------------------------------------------------------------


@dataclass
class TranscriptEntry:
    """One bubble of the transcript, with what the template needs already worked out."""

    message: Message
    side: str  # "customer" | "bot" | "staff" | "system"
    author: str
    citations: list[dict] = field(default_factory=list)
    outcome_colour: str = ""
    usage: list[str] = field(default_factory=list)
    details_json: str = ""


def transcript_entries(*, conversation: Conversation, messages: list[Message]) -> list[TranscriptEntry]:
    customer = str(conversation.contact)
    bot = bot_label(conversation)
    entries = []
    for message in messages:
        if message.role == Message.Role.USER:
            entries.append(TranscriptEntry(message=message, side="customer", author=customer))
        elif message.role == Message.Role.STAFF:
            author = message.author
            name = (author.get_full_name() or author.get_username()) if author else "Staff"
            entries.append(TranscriptEntry(message=message, side="staff", author=name))
        elif message.role == Message.Role.SYSTEM:
            entries.append(TranscriptEntry(message=message, side="system", author="System"))
        else:
            entries.append(bot_entry(message, bot))
    return entries


def bot_entry(message: Message, bot: str) -> TranscriptEntry:
    citations = []
    for position, citation in enumerate(message.citations or [], start=1):
        if not isinstance(citation, dict):
            continue
        citations.append(
            {
                "number": citation.get("number") or position,
                "title": citation.get("document_title") or "Untitled document",
                "heading": citation.get("heading") or "",
                "url": document_url(citation.get("document_id")),
            }
        )
    usage = []
    if message.model:
        usage.append(f"{message.provider} · {message.model}" if message.provider else message.model)
    if message.input_tokens or message.output_tokens:
        tokens = f"{message.input_tokens:,} in · {message.output_tokens:,} out tokens"
        if message.cached_tokens:
            tokens += f" ({message.cached_tokens:,} cached)"
        usage.append(tokens)
    usage.append(usd(message.cost))
    if message.latency_ms:
        usage.append(duration(message.latency_ms))
    return TranscriptEntry(
        message=message,
        side="bot",
        author=bot,
        citations=citations,
        outcome_colour=OUTCOME_COLOURS.get(message.outcome, ""),
        usage=usage,
        details_json=json.dumps(message.details, indent=2, ensure_ascii=False) if message.details else "",
    )


@admin.register(Conversation)
class ConversationAdmin(ModelAdmin):
    list_display = ["contact_display", "channel", "bot_display", "status_badge", "message_total",
                    "last_message_at", "assigned_to"]  # fmt: skip
    list_filter = ["status", "channel", BotFilter]
    list_select_related = ["contact", "assigned_to"]
    search_fields = ["contact__display_name", "contact__external_id", "messages__text"]
    search_help_text = "Customer name, the channel's user id, or words from any message."
    show_full_result_count = False
    list_per_page = 50
    change_form_template = "admin/conversations/conversation/change_form.html"
    fieldsets = [
        (
            None,
            {"fields": ["contact_link", "channel", "bot_display", "status_label", "assigned_to", "language"]},
        ),
        ("Timeline", {"fields": ["started_at", "last_message_at", "handoff_requested_at", "closed_at"]}),
        ("Usage", {"fields": ["message_count", "answers", "tokens", "total_cost"]}),
    ]
    readonly_fields = ["contact_link", "channel", "bot_display", "status_label", "assigned_to", "language",
                       "started_at", "last_message_at", "handoff_requested_at", "closed_at",
                       "message_count", "answers", "tokens", "total_cost"]  # fmt: skip

    def get_queryset(self, request):
        return with_bot_name(super().get_queryset(request))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().strip("\"'")
        if not term:
            return queryset, False
        # EXISTS instead of a join on messages: no duplicate rows, so no DISTINCT over
        # the annotated page query.
        in_messages = Message.objects.filter(conversation=OuterRef("pk"), text__icontains=term)
        matches = (
            Q(contact__display_name__icontains=term)
            | Q(contact__external_id__icontains=term)
            | Exists(in_messages)
        )
        if term.isdigit():
            matches |= Q(pk=int(term))
        return queryset.filter(matches), False

    # Conversations start on the channels; taking one over and replying arrives with
    # the handoff workflow. Until then the transcript is for reading.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        conversation = self.get_object(request, object_id)
        if conversation is not None and self.has_view_permission(request, conversation):
            messages = conversation_messages(conversation=conversation, last=TRANSCRIPT_MAX_MESSAGES)
            extra_context["transcript"] = transcript_entries(conversation=conversation, messages=messages)
            extra_context["transcript_hidden"] = max(conversation.message_count - len(messages), 0)
            extra_context["messages_url"] = (
                reverse("admin:conversations_message_changelist") + f"?conversation={conversation.pk}"
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def totals(self, conversation: Conversation):
        if not hasattr(conversation, "_totals"):
            conversation._totals = conversation_totals(conversation=conversation)
        return conversation._totals

    @display(description="Contact", ordering="contact__display_name")
    def contact_display(self, conversation: Conversation) -> str:
        contact = conversation.contact
        if contact.display_name:
            return format_html(
                '{}<br><span class="text-xs opacity-70">{}</span>', contact.display_name, contact.external_id
            )
        return contact.external_id

    @display(description="Contact")
    def contact_link(self, conversation: Conversation) -> str:
        url = reverse("admin:conversations_contact_change", args=[conversation.contact_id])
        return format_html(
            '<a class="text-primary-600" href="{}">{}</a> <span class="opacity-70">{} · {}</span>',
            url,
            conversation.contact,
            conversation.contact.get_channel_display(),
            conversation.contact.external_id,
        )

    @display(description="Messages", ordering="message_count")
    def message_total(self, conversation: Conversation) -> int:
        return conversation.message_count

    @display(description="Bot", ordering="bot_name")
    def bot_display(self, conversation: Conversation) -> str:
        return bot_label(conversation)

    @display(description="Status", ordering="status")
    def status_badge(self, conversation: Conversation) -> str:
        return status_badge_html(conversation)

    @display(description="Status")
    def status_label(self, conversation: Conversation) -> str:
        return status_badge_html(conversation)

    @display(description="Bot answers")
    def answers(self, conversation: Conversation) -> int:
        return self.totals(conversation).answers

    @display(description="Tokens")
    def tokens(self, conversation: Conversation) -> str:
        totals = self.totals(conversation)
        text = f"{totals.input_tokens:,} in · {totals.output_tokens:,} out"
        if totals.cached_tokens:
            text += f" ({totals.cached_tokens:,} cached)"
        return text

    @display(description="Cost")
    def total_cost(self, conversation: Conversation) -> str:
        return usd(self.totals(conversation).cost)


# Messages --------------------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(ModelAdmin):
    list_display = ["created_at", "role", "text_preview", "question", "outcome_badge", "cached",
                    "feedback_display", "conversation_link"]  # fmt: skip
    list_display_links = None
    list_filter = ["role", "outcome", "cache_hit", "feedback", "conversation__channel"]
    list_select_related = ["conversation__contact", "in_reply_to"]
    search_fields = ["text"]
    search_help_text = "Words from the message."
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-pk"]
    # Millions of rows: never count them just to number the pages.
    paginator = InfinitePaginator
    show_full_result_count = False
    list_per_page = 50

    # The message log is a record of what was said: read it, never rewrite it here.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        """A message is read in its conversation: go to the transcript, scrolled to it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        message = self.get_object(request, object_id)
        if message is None:
            raise Http404("No such message.")
        return HttpResponseRedirect(transcript_url(message))

    @display(description="Text")
    def text_preview(self, message: Message) -> str:
        return format_html(
            '<a class="text-primary-600" href="{}">{}</a>',
            transcript_url(message),
            Truncator(message.text).chars(140),
        )

    @display(description="In reply to")
    def question(self, message: Message) -> str:
        if message.in_reply_to is None:
            return "—"
        return Truncator(message.in_reply_to.text).chars(100)

    @display(description="Outcome", ordering="outcome")
    def outcome_badge(self, message: Message) -> str:
        if not message.outcome:
            return ""
        return badge(message.get_outcome_display(), OUTCOME_COLOURS.get(message.outcome, ""))

    @display(description="Cache", ordering="cache_hit")
    def cached(self, message: Message) -> str:
        # A badge on the few hits rather than a red cross on every other row.
        return badge("Cached", "info") if message.cache_hit else ""

    @display(description="Feedback", ordering="feedback")
    def feedback_display(self, message: Message) -> str:
        if not message.feedback:
            return "—"
        icon = "thumb_up" if message.feedback == Message.Feedback.UP else "thumb_down"
        return format_html(
            '<span class="material-symbols-outlined text-base" title="{}">{}</span>',
            message.feedback_comment or message.get_feedback_display(),
            icon,
        )

    @display(description="Conversation")
    def conversation_link(self, message: Message) -> str:
        return format_html(
            '<a class="text-primary-600" href="{}">{}</a>',
            transcript_url(message),
            message.conversation.contact,
        )
