"""The admin's front page: what needs attention right now."""

from django.urls import reverse

from knowledge.selectors import knowledge_overview


def dashboard_callback(request, context: dict) -> dict:
    if request.user.has_perm("knowledge.view_document"):
        overview = knowledge_overview()
        documents_url = reverse("admin:knowledge_document_changelist")
        context["knowledge_cards"] = [
            {
                "title": "Documents ready",
                "value": overview["ready"],
                "href": f"{documents_url}?status__exact=ready",
            },
            {
                "title": "Indexing now",
                "value": overview["indexing"],
                "href": f"{documents_url}?status__in=queued,extracting,chunking,embedding",
            },
            {"title": "Failed", "value": overview["failed"], "href": f"{documents_url}?status__exact=failed"},
            {"title": "Chunks served", "value": overview["live_chunks"], "href": documents_url},
        ]
        context["recent_failures"] = overview["recent_failures"]
    return context
