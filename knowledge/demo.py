"""The demo knowledge base: a small bilingual retail shop, indexed through the real
pipeline (the files in demo_data/ are uploaded as support staff would)."""

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge import services
from knowledge.models import KnowledgeBase

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_KNOWLEDGE_BASE = "Sao Mai demo shop"


def seed_demo_knowledge_base() -> KnowledgeBase:
    knowledge_base, _ = KnowledgeBase.objects.get_or_create(
        name=DEMO_KNOWLEDGE_BASE,
        defaults={"description": "Opening hours, delivery, returns, payment, membership and a product FAQ."},
    )
    present = set(knowledge_base.documents.values_list("original_filename", flat=True))
    for path in sorted(DEMO_DATA.iterdir()):
        if path.name in present or not path.is_file():
            continue
        services.document_create_from_upload(
            knowledge_base=knowledge_base,
            uploaded=SimpleUploadedFile(path.name, path.read_bytes()),
        )
    return knowledge_base
