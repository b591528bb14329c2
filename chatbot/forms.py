"""Admin forms for bots: plain choices where the model stores JSON lists."""

from itertools import permutations

from django import forms
from unfold.widgets import (
    UnfoldAdminCheckboxSelectMultipleWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextareaWidget,
)

from chatbot.llm.registry import available_providers
from chatbot.models import LANGUAGES, Bot

LANGUAGE_NAMES = {"vi": "Vietnamese", "en": "English"}
PROVIDER_NAMES = {"gemini": "Gemini", "bedrock": "Bedrock", "extractive": "Quoted passages (no LLM)"}
LLM_PROVIDERS = ("gemini", "bedrock")
NO_LLM = "none"  # the choice value of an empty order (set outside this form): quoting only


def provider_order_key(order: list[str]) -> str:
    return ",".join(order) if order else NO_LLM


def provider_order_label(order: list[str], available: list[str]) -> str:
    if not order or order == ["extractive"]:
        return "No LLM: quote the best passages"
    names = []
    for name in order:
        label = PROVIDER_NAMES.get(name, name)
        names.append(label if name in available else f"{label} (not configured here)")
    return ", then ".join(names)


def provider_order_choices(current: list[str] | None, available: list[str]) -> list[tuple[str, str]]:
    orders = [list(order) for size in (2, 1) for order in permutations(LLM_PROVIDERS, size)]
    orders.append(["extractive"])
    # An order set outside this form (the shell, an older release) stays selectable.
    if isinstance(current, list) and current not in orders:
        orders.insert(0, current)
    return [(provider_order_key(order), provider_order_label(order, available)) for order in orders]


def _order_from_key(value: str | list[str]) -> list[str]:
    if isinstance(value, list):
        return value
    return [] if value == NO_LLM else [name for name in value.split(",") if name]


class ProviderOrderField(forms.TypedChoiceField):
    """A select of provider orders that cleans to the JSON list `Bot.provider_order` stores."""

    def __init__(self, **kwargs) -> None:
        super().__init__(coerce=_order_from_key, empty_value=[], **kwargs)

    def prepare_value(self, value):
        return provider_order_key(value) if isinstance(value, list) else value


class BotForm(forms.ModelForm):
    languages = forms.MultipleChoiceField(
        choices=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="The bot answers in the customer's language when it is one of these, "
        "otherwise in the default language.",
    )
    default_language = forms.ChoiceField(
        choices=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        widget=UnfoldAdminSelectWidget,
        help_text="For greetings, and for questions in a language the bot does not speak.",
    )
    provider_order = ProviderOrderField(
        widget=UnfoldAdminSelectWidget,
        label="Providers",
        help_text="Tried in this order, each with its own retries, within the answer budget. "
        "Quoting the best passages always comes last, so a customer gets an answer even when every "
        "LLM fails.",
    )

    class Meta:
        model = Bot
        fields = "__all__"  # noqa: DJ007 - BotAdmin's fieldsets choose the fields shown
        # Canned messages are a sentence or two: short boxes keep the form readable.
        widgets = {
            "persona": UnfoldAdminTextareaWidget(attrs={"rows": 4}),
            "strong_keywords": UnfoldAdminTextareaWidget(attrs={"rows": 3}),
            **{
                f"{what}_{language}": UnfoldAdminTextareaWidget(attrs={"rows": 3})
                for what in ("greeting", "dont_know", "handoff")
                for language in LANGUAGES
            },
        }
        labels = {
            "is_active": "Active",
            "greeting_vi": "Greeting (Vietnamese)",
            "greeting_en": "Greeting (English)",
            "dont_know_vi": "When it does not know (Vietnamese)",
            "dont_know_en": "When it does not know (English)",
            "handoff_vi": "Handing over to a person (Vietnamese)",
            "handoff_en": "Handing over to a person (English)",
            "history_turns": "Earlier turns sent",
            "simple_max_words": "Simple questions: up to (words)",
            "strong_keywords": "Strong-model keywords",
            "gemini_simple_model": "Gemini: simple model",
            "gemini_strong_model": "Gemini: strong model",
            "bedrock_simple_model": "Bedrock: simple model",
            "bedrock_strong_model": "Bedrock: strong model",
            "answer_budget_seconds": "Answer budget (seconds)",
            "top_k": "Passages (top k)",
            "cache_enabled": "Cache answers",
            "cache_ttl_hours": "Keep answers for (hours)",
        }
        help_texts = {
            "slug": "Names the bot in the widget snippet and the API; changing it breaks existing embeds.",
            "knowledge_base": "Where its answers come from.",
            "greeting_vi": "First message of the web widget.",
            "greeting_en": "First message of the web widget.",
            "dont_know_vi": "When no passage is relevant enough.",
            "dont_know_en": "When no passage is relevant enough.",
            "handoff_vi": "When the customer asks for a person.",
            "handoff_en": "When the customer asks for a person.",
            "gemini_simple_model": "For short, simple questions.",
            "gemini_strong_model": "For long questions, follow-ups and the keywords above.",
            "bedrock_simple_model": "For short, simple questions.",
            "bedrock_strong_model": "For long questions, follow-ups and the keywords above.",
            "max_output_tokens": "Longest answer, in tokens (about ¾ of a word each in English).",
            "temperature": "0 keeps answers close to the passages; higher varies the wording.",
            "top_k": "Passages retrieved and shown to the model.",
            "cache_enabled": (
                "Reuse an earlier answer to the same question while its documents stay unchanged."
            ),
            "cache_ttl_hours": "How long a cached answer may be reused at most.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "provider_order" in self.fields:  # absent when the page is read-only
            current = self.instance.provider_order if self.instance.pk else None
            self.fields["provider_order"].choices = provider_order_choices(current, available_providers())


class TryBotForm(forms.Form):
    text = forms.CharField(
        label="Message",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Ask as a customer would…"}),
    )
    language = forms.ChoiceField(required=False, label="Language")

    def __init__(self, *args, bot: Bot, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [
            ("", "Detect"),
            *((code, LANGUAGE_NAMES[code]) for code in bot.languages),
        ]
