from collections.abc import Iterable

from django.db.models import Count, Q

from knowledge.models import Chunk, Document


def document_progress(*, document_ids: list[int]) -> list[dict]:
    rows = Document.objects.filter(pk__in=document_ids).values(
        "pk", "status", "progress", "error", "chunk_count"
    )
    return [
        {
            "id": row["pk"],
            "status": row["status"],
            "status_label": Document.Status(row["status"]).label,
            "progress": row["progress"],
            "error": row["error"],
            "chunk_count": row["chunk_count"],
        }
        for row in rows
    ]


def knowledge_overview() -> dict:
    counts = Document.objects.aggregate(
        ready=Count("pk", filter=Q(status=Document.Status.READY)),
        indexing=Count("pk", filter=Q(status__in=Document.IN_PROGRESS)),
        failed=Count("pk", filter=Q(status=Document.Status.FAILED)),
    )
    counts["live_chunks"] = Chunk.objects.filter(is_live=True).count()
    counts["recent_failures"] = list(
        Document.objects.filter(status=Document.Status.FAILED)
        .order_by("-status_changed_at")
        .values("pk", "title", "error")[:5]
    )
    return counts


def document_live_versions(*, document_ids: Iterable[int]) -> dict[int, int | None]:
    """The version each document serves to retrieval now, by id.

    None when it serves nothing: deleted, disabled, or never indexed. A document being
    re-indexed still serves its previous version until the new one is swapped in.
    """
    ids = list(dict.fromkeys(document_ids))
    live = dict(
        Document.objects.filter(pk__in=ids, enabled=True, live_version__gt=0).values_list(
            "pk", "live_version"
        )
    )
    return {pk: live.get(pk) for pk in ids}


def document_source_urls(*, document_ids: Iterable[int]) -> dict[int, str]:
    """The web address of each of these documents that has one, by id (for citation links)."""
    rows = Document.objects.filter(pk__in=set(document_ids)).exclude(source_url="")
    return dict(rows.values_list("pk", "source_url"))
