import datetime
from decimal import Decimal

from django.db import migrations

# USD per million tokens from the provider price table compiled on 2026-11-23 from
# dated transcriptions of the vendors' pages (see docs/operations.md, "Prices").
# Staff correct or add prices in the admin; a new row with a later date supersedes.
SINCE = datetime.date(2026, 11, 1)
PRICES = [
    # provider, model, effective from, input, output, cached input, note
    ("gemini", "gemini-2.5-flash", SINCE, "0.30", "2.50", None, "shutdown scheduled 2026-10-16"),
    ("gemini", "gemini-2.5-flash-lite", SINCE, "0.10", "0.40", None, ""),
    ("gemini", "gemini-3-flash-preview", SINCE, "0.50", "3.00", "0.05", "preview"),
    ("gemini", "gemini-3.1-flash-lite", SINCE, "0.25", "1.50", None, ""),
    ("gemini", "gemini-3.5-flash", SINCE, "1.50", "9.00", None, ""),
    ("gemini", "gemini-3.5-flash-lite", SINCE, "0.30", "2.50", None, ""),
    ("gemini", "gemini-3.8-flash", SINCE, "0.75", "3.75", None, "introductory price through 2026-12-31"),
    ("gemini", "gemini-3.8-flash", datetime.date(2027, 1, 1), "1.50", "7.50", None, ""),
    ("gemini", "gemini-embedding-001", SINCE, "0.15", "0", None, "embeddings"),
    ("gemini", "gemini-embedding-2", SINCE, "0.20", "0", None, "embeddings, text input"),
    ("bedrock", "amazon.nova-micro-v1:0", SINCE, "0.035", "0.14", None, "us-east-1 on-demand"),
    ("bedrock", "amazon.nova-lite-v1:0", SINCE, "0.06", "0.24", None, "us-east-1 on-demand"),
    ("bedrock", "amazon.nova-pro-v1:0", SINCE, "0.80", "3.20", None, "us-east-1 on-demand"),
    ("bedrock", "amazon.nova-2-lite-v1:0", SINCE, "0.30", "2.50", None, "unverified listing"),
    (
        "bedrock",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        SINCE,
        "1.00",
        "5.00",
        "0.10",
        "global endpoint; regional endpoints +10%",
    ),
    ("bedrock", "amazon.titan-embed-text-v2:0", SINCE, "0.02", "0", None, "embeddings, unverified"),
    ("local", "multilingual-e5-small", SINCE, "0", "0", None, "runs on this server"),
    ("extractive", "extractive", SINCE, "0", "0", None, "no model call"),
]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    for provider, model, since, input_, output, cached, note in PRICES:
        ModelPrice.objects.get_or_create(
            provider=provider,
            model=model,
            effective_from=since,
            defaults={
                "input_per_million": Decimal(input_),
                "output_per_million": Decimal(output),
                "cached_input_per_million": None if cached is None else Decimal(cached),
                "note": note,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_price_list_and_ledger_fields")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
