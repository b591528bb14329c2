"""Admin for the Zalo channel: the OA connection (secrets never shown in full), its events and its outbox."""

import json

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminPasswordWidget

from chatbot.models import ZaloAccount, ZaloEvent, ZaloOutboundMessage
from chatbot.zalo.outbox import outbox_retry
from chatbot.zalo.selectors import secret_hint
from chatbot.zalo.services import zalo_events_retry

SECRETS = ("app_secret", "oa_secret_key", "access_token", "refresh_token")
SECRET_LABELS = {
    "app_secret": "App Secret Key",
    "oa_secret_key": "OA Secret Key",
    "access_token": "Access token",
    "refresh_token": "Refresh token",
}
NO_AUTOFILL = {"autocomplete": "new-password"}
REQUIRED_ON_ADD = ("app_secret", "oa_secret_key", "refresh_token")
STATUS_COLOURS = {
    "Connected": "success",
    "Refresh due": "info",
    "Needs reconnect": "danger",
    "Not connected": "warning",
}


class ZaloAccountForm(forms.ModelForm):
    """Secrets are write-only: the inputs start empty, and an empty input keeps the stored value."""

    # new-password: browsers must not fill in the staff member's own saved password.
    app_secret = forms.CharField(required=False, widget=UnfoldAdminPasswordWidget(NO_AUTOFILL))
    oa_secret_key = forms.CharField(required=False, widget=UnfoldAdminPasswordWidget(NO_AUTOFILL))
    access_token = forms.CharField(required=False, widget=UnfoldAdminPasswordWidget(NO_AUTOFILL))
    refresh_token = forms.CharField(required=False, widget=UnfoldAdminPasswordWidget(NO_AUTOFILL))

    class Meta:
        model = ZaloAccount
        fields = ["bot", "app_id", "oa_id", *SECRETS, "access_token_expires_at", "needs_reconnect"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRETS:
            self.initial.pop(name, None)  # nothing can render a stored secret, not even by mistake
            field = self.fields[name]
            field.label = SECRET_LABELS[name]
            stored = getattr(self.instance, name, "")
            if stored:
                field.help_text = f"Stored: {secret_hint(stored)}. Leave empty to keep it."
            elif self.instance.pk is None and name in REQUIRED_ON_ADD:
                field.required = True
        self.fields["access_token"].help_text += " Optional: the worker gets one with the refresh token."

    def _keep_or_replace(self, name: str) -> str:
        value = self.cleaned_data.get(name) or ""
        return value or getattr(self.instance, name, "")

    def clean_app_secret(self) -> str:
        return self._keep_or_replace("app_secret")

    def clean_oa_secret_key(self) -> str:
        return self._keep_or_replace("oa_secret_key")

    def clean_access_token(self) -> str:
        return self._keep_or_replace("access_token")

    def clean_refresh_token(self) -> str:
        return self._keep_or_replace("refresh_token")

    def clean(self) -> dict:
        cleaned = super().clean()
        stored = ZaloAccount.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        self.new_refresh_token = bool(cleaned.get("refresh_token")) and (
            stored is None or cleaned["refresh_token"] != stored.refresh_token
        )
        self.new_access_token = bool(cleaned.get("access_token")) and (
            stored is None or cleaned["access_token"] != stored.access_token
        )
        return cleaned


@admin.register(ZaloAccount)
class ZaloAccountAdmin(ModelAdmin):
    form = ZaloAccountForm
    list_display = ["bot", "app_id", "oa_id", "status", "access_token_display", "access_token_expires_at",
                    "last_error_display", "updated_at"]  # fmt: skip
    list_filter = ["needs_reconnect"]
    search_fields = ["bot__name", "bot__slug", "app_id", "oa_id"]
    list_select_related = ["bot"]
    connection_fields = [
        "status",
        "webhook_url",
        "refresh_token_issued_at",
        "last_error",
        "activity",
        "updated_at",
    ]

    def get_fieldsets(self, request: HttpRequest, obj: ZaloAccount | None = None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only pages show every field as text: secrets only as their hints.
            return [
                ("Zalo app", {"fields": ["bot", "app_id", "oa_id"]}),
                (
                    "Secrets and tokens",
                    {
                        "fields": [
                            "app_secret_display",
                            "oa_secret_key_display",
                            "access_token_display",
                            "access_token_expires_at",
                            "refresh_token_display",
                            "needs_reconnect",
                        ]
                    },
                ),
                ("Connection", {"fields": self.connection_fields}),
            ]
        fieldsets = [
            ("Zalo app", {"fields": ["bot", "app_id", "oa_id"]}),
            (
                "Secrets",
                {
                    "fields": ["app_secret", "oa_secret_key"],
                    "description": "Never shown in full. Type a new value to replace one; leave a box "
                    "empty to keep what is stored.",
                },
            ),
            (
                "Tokens",
                {
                    "fields": ["refresh_token", "access_token", "access_token_expires_at", "needs_reconnect"],
                    "description": "Usually set by `manage.py zalo_connect`. Zalo's refresh tokens are "
                    "single-use: paste a fresh one only (a new OAuth consent or the API Explorer).",
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(("Connection", {"fields": self.connection_fields}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: ZaloAccount | None = None):
        readonly = [*self.connection_fields, "app_secret_display", "oa_secret_key_display",
                    "access_token_display", "refresh_token_display"]  # fmt: skip
        if obj is not None:
            readonly.append("bot")  # an OA moves to another bot by connecting that bot
        return readonly

    def save_model(self, request: HttpRequest, obj: ZaloAccount, form: ZaloAccountForm, change: bool) -> None:
        if form.new_refresh_token:
            # A new grant: the account may be used again, and the pair is rotated on first use
            # unless a matching access token came with it.
            obj.refresh_token_issued_at = timezone.now()
            obj.needs_reconnect = False
            obj.last_error = ""
            if not form.new_access_token:
                obj.access_token_expires_at = None
        super().save_model(request, obj, form, change)

    @display(description="Status", label=STATUS_COLOURS)
    def status(self, account: ZaloAccount) -> str:
        if account.needs_reconnect:
            return "Needs reconnect"
        if not account.refresh_token:
            return "Not connected"
        expires = account.access_token_expires_at
        if not account.access_token or expires is None or expires <= timezone.now():
            return "Refresh due"
        return "Connected"

    @display(description="App Secret Key")
    def app_secret_display(self, account: ZaloAccount) -> str:
        return secret_hint(account.app_secret)

    @display(description="OA Secret Key")
    def oa_secret_key_display(self, account: ZaloAccount) -> str:
        return secret_hint(account.oa_secret_key)

    @display(description="Access token")
    def access_token_display(self, account: ZaloAccount) -> str:
        return secret_hint(account.access_token)

    @display(description="Refresh token")
    def refresh_token_display(self, account: ZaloAccount) -> str:
        return secret_hint(account.refresh_token)

    @display(description="Last error")
    def last_error_display(self, account: ZaloAccount) -> str:
        return account.last_error[:120] or "—"

    @display(description="Webhook URL (set it in the Zalo app's Webhook settings)")
    def webhook_url(self, account: ZaloAccount) -> str:
        return format_html(
            "<code>https://&lt;your domain&gt;{}</code>", reverse("zalo:webhook", args=[account.bot.slug])
        )

    @display(description="Events and outbox")
    def activity(self, account: ZaloAccount) -> str:
        events = reverse("admin:chatbot_zaloevent_changelist")
        outbound = reverse("admin:chatbot_zalooutboundmessage_changelist")
        return format_html(
            '<a href="{}?account__id__exact={}">Events received</a> · '
            '<a href="{}?account__id__exact={}">Messages sent</a> · '
            '<a href="{}?account__id__exact={}&status__exact=failed">Failed messages</a>',
            events, account.pk, outbound, account.pk, outbound, account.pk,
        )  # fmt: skip


class ReadOnlyAdmin(ModelAdmin):
    """Rows written by the channel itself: people read them and, with the right, retry them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm(f"chatbot.change_{self.model._meta.model_name}")


@admin.register(ZaloEvent)
class ZaloEventAdmin(ReadOnlyAdmin):
    list_display = ["event_name", "sender_id", "account", "status_display", "deliveries", "received_at",
                    "processed_at", "error_display"]  # fmt: skip
    list_filter = ["status", "event_name", "account"]
    search_fields = ["sender_id", "event_key"]
    list_select_related = ["account__bot"]
    date_hierarchy = "received_at"
    fields = ["account", "event_name", "event_key", "sender_id", "status", "error", "deliveries",
              "received_at", "processed_at", "payload_display"]  # fmt: skip
    readonly_fields = fields
    actions = ["process_again"]

    @display(description="Status", ordering="status", label={
        "pending": "info", "processed": "success", "ignored": "warning", "failed": "danger"})  # fmt: skip
    def status_display(self, event: ZaloEvent) -> str:
        return event.status

    @display(description="Note or error")
    def error_display(self, event: ZaloEvent) -> str:
        return event.error[:120] or "—"

    @display(description="Payload")
    def payload_display(self, event: ZaloEvent) -> str:
        pretty = json.dumps(event.payload, ensure_ascii=False, indent=2)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', pretty)

    @action(description="Process the failed events again", permissions=["retry"])
    def process_again(self, request: HttpRequest, queryset) -> None:
        with transaction.atomic():
            count = zalo_events_retry(event_ids=list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} failed event(s) queued again (others were left as they are).")


@admin.register(ZaloOutboundMessage)
class ZaloOutboundMessageAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "text_display", "part", "account", "status_display", "attempts", "error_code",
                    "error_display", "next_attempt_at", "created_at", "sent_at"]  # fmt: skip
    list_filter = ["status", "account"]
    search_fields = ["user_id", "text", "zalo_message_id"]
    list_select_related = ["account__bot"]
    date_hierarchy = "created_at"
    fields = ["account", "user_id", "message_id", "part", "text", "status", "attempts", "next_attempt_at",
              "error_code", "error", "zalo_message_id", "created_at", "sent_at"]  # fmt: skip
    readonly_fields = fields
    actions = ["retry_now"]

    @display(description="Status", ordering="status", label={
        "pending": "info", "sent": "success", "failed": "danger"})  # fmt: skip
    def status_display(self, row: ZaloOutboundMessage) -> str:
        return row.status

    @display(description="Text")
    def text_display(self, row: ZaloOutboundMessage) -> str:
        return row.text[:80]

    @display(description="Error")
    def error_display(self, row: ZaloOutboundMessage) -> str:
        return row.error[:120] or "—"

    @action(description="Retry the failed messages now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset) -> None:
        count = _retry(list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} failed message(s) queued to be sent again.")


def _retry(outbox_ids: list[int]) -> int:
    from chatbot.zalo.tasks import send_outbox

    with transaction.atomic():
        retried = outbox_retry(outbox_ids=outbox_ids)
        if retried:
            transaction.on_commit(lambda: send_outbox.delay(retried), robust=True)
    return len(retried)
