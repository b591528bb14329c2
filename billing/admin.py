import datetime
from decimal import Decimal

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display

from billing import selectors
from billing.models import ModelPrice, UsageEvent
from conversations.models import Channel

PRICE_STATUS_COLOURS = {"in_force": "success", "scheduled": "info", "superseded": "default"}
KIND_COLOURS = {
    UsageEvent.Kind.GENERATION: "primary",
    UsageEvent.Kind.EMBEDDING: "info",
    UsageEvent.Kind.CACHE_HIT: "success",
}


def usd(value: Decimal) -> str:
    """Dollars as stored, without trailing zeros past the cents: $0.035, $1.50, $0.00000123."""
    whole, _, fraction = format(value.normalize(), ",f").partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


@admin.register(ModelPrice)
class ModelPriceAdmin(ModelAdmin):
    list_display = [
        "provider",
        "model",
        "effective_from",
        "input_rate",
        "output_rate",
        "cached_rate",
        "status",
        "note",
    ]
    list_display_links = ["provider", "model"]
    list_filter = ["provider"]
    search_fields = ["model"]
    ordering = ["provider", "model", "-effective_from"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["provider", "model", "effective_from"]}),
        (
            "USD per 1M tokens",
            {"fields": ["input_per_million", "output_per_million", "cached_input_per_million"]},
        ),
        (None, {"fields": ["note", "created_at", "updated_at"]}),
    ]
    # A price change is a new dated row: open the current one, change the date and the
    # rates, and "Save as new", so the row that priced past calls stays as it was.
    save_as = True
    list_before_template = "admin/billing/modelprice/notice.html"

    def get_queryset(self, request: HttpRequest):
        return selectors.price_list_with_status(prices=super().get_queryset(request), on=timezone.localdate())

    @display(description="Input", ordering="input_per_million")
    def input_rate(self, price: ModelPrice) -> str:
        return usd(price.input_per_million)

    @display(description="Output", ordering="output_per_million")
    def output_rate(self, price: ModelPrice) -> str:
        return usd(price.output_per_million)

    @display(description="Cached input", ordering="cached_input_per_million")
    def cached_rate(self, price: ModelPrice) -> str:
        if price.cached_input_per_million is None:
            return "= input"
        return usd(price.cached_input_per_million)

    @display(description="Status", label=PRICE_STATUS_COLOURS)
    def status(self, price: ModelPrice) -> tuple[str, str]:
        if price.effective_from > timezone.localdate():
            return "scheduled", "Scheduled"
        if price.effective_from == price.in_force_from:
            return "in_force", "In force"
        return "superseded", "Superseded"


class ProviderFilter(admin.SimpleListFilter):
    title = "provider"
    parameter_name = "provider"

    # Choices come from the small price list, not SELECT DISTINCT over the ledger,
    # which would scan every row on each page load.
    def lookups(self, request, model_admin):
        return [(provider, provider) for provider in selectors.price_list_providers()]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        return [(model, model) for model in selectors.price_list_models()]

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


class ChannelFilter(admin.SimpleListFilter):
    title = "channel"
    parameter_name = "channel"
    NONE = "none"

    def lookups(self, request, model_admin):
        return [*Channel.choices, (self.NONE, "None (indexing)")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(channel="" if self.value() == self.NONE else self.value())


@admin.register(UsageEvent)
class UsageEventAdmin(ModelAdmin):
    list_display = [
        "time",
        "kind_label",
        "provider",
        "model",
        "tokens_in",
        "tokens_out",
        "tokens_cached",
        "cost_display",
        "cache_hit",
        "channel",
        "bot_id",
        "latency",
    ]
    list_display_links = ["time"]
    list_filter = [
        "kind",
        ProviderFilter,
        ModelFilter,
        "cache_hit",
        ChannelFilter,
        "priced",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["model", "idempotency_key"]
    date_hierarchy = "created_at"
    list_per_page = 100
    # The unfiltered total is a second COUNT over the whole ledger; the totals above
    # the list already say how many rows the filters selected.
    show_full_result_count = False
    actions = None
    list_before_template = "admin/billing/usageevent/totals.html"
    fieldsets = [
        (None, {"fields": ["created_at", "kind", "provider", "model", "cache_hit", "latency_ms"]}),
        ("Tokens", {"fields": ["input_tokens", "cached_tokens", "output_tokens", "thinking_tokens"]}),
        ("Cost (USD)", {"fields": ["cost", "priced"]}),
        (
            "For",
            {
                "fields": [
                    "channel",
                    "bot_id",
                    "contact_id",
                    "conversation_id",
                    "message_id",
                    "knowledge_base_id",
                    "document_id",
                ]
            },
        ),
        ("Idempotency", {"fields": ["idempotency_key"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    # The ledger is append-only: only usage_record writes it, and nobody, superusers
    # included, edits or deletes a row from here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageEvent | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context)
        # Totals over every row the filters, search and date drill-down selected, not
        # only this page; a redirect (bad filter) has no change list to total.
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            totals = selectors.usage_totals(events=changelist.queryset)
            response.context_data["usage_totals"] = {
                "cost": usd(totals.cost),
                "events": f"{totals.events:,}",
                "input_tokens": f"{totals.input_tokens:,}",
                "cached_tokens": f"{totals.cached_tokens:,}",
                "output_tokens": f"{totals.output_tokens:,}",
                "thinking_tokens": f"{totals.thinking_tokens:,}",
                "unpriced": totals.unpriced,
            }
        return response

    @display(description="Time", ordering="created_at")
    def time(self, event: UsageEvent) -> datetime.datetime:
        return event.created_at

    @display(description="Kind", label=KIND_COLOURS, ordering="kind")
    def kind_label(self, event: UsageEvent) -> tuple[str, str]:
        return event.kind, event.get_kind_display()

    @display(description="In", ordering="input_tokens")
    def tokens_in(self, event: UsageEvent) -> str:
        return f"{event.input_tokens:,}"

    @display(description="Out", ordering="output_tokens")
    def tokens_out(self, event: UsageEvent) -> str:
        if event.thinking_tokens:
            return f"{event.output_tokens:,} + {event.thinking_tokens:,} thinking"
        return f"{event.output_tokens:,}"

    @display(description="Cached", ordering="cached_tokens")
    def tokens_cached(self, event: UsageEvent) -> str:
        return f"{event.cached_tokens:,}"

    @display(description="Cost", ordering="cost")
    def cost_display(self, event: UsageEvent) -> str:
        if event.priced:
            return usd(event.cost)
        return format_html('<span class="font-medium text-red-600 dark:text-red-400">{}</span>', "no price")

    @display(description="Latency", ordering="latency_ms")
    def latency(self, event: UsageEvent) -> str:
        return f"{event.latency_ms:,} ms"
