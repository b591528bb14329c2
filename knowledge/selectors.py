from knowledge.models import Document


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
