"""The knowledge admin as support staff and managers use it."""

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from config.roles import MANAGERS, SUPPORT_STAFF
from knowledge.models import Document
from tests.accounts import login_as
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = pytest.mark.django_db


@pytest.fixture
def indexed_document():
    knowledge_base = make_knowledge_base("Demo")
    document = paste(knowledge_base, "# Giờ mở cửa\n\nMở cửa từ 8 giờ đến 21 giờ.", title="Store hours")
    ingest(document)
    return document


def test_support_staff_see_documents_with_status_and_a_progress_bar(client, indexed_document):
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:knowledge_document_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Store hours" in page
    assert 'class="kb-progress"' in page and 'data-status="ready"' in page
    assert "Add documents" in page


def test_the_document_list_filters_by_status_and_searches_titles(client, indexed_document):
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:knowledge_document_changelist")

    assert "Store hours" in client.get(url, {"status__exact": "ready"}).content.decode()
    assert "Store hours" not in client.get(url, {"status__exact": "failed"}).content.decode()
    assert "Store hours" in client.get(url, {"q": "hours"}).content.decode()


def test_support_staff_upload_several_files_at_once(client):
    login_as(client, SUPPORT_STAFF)
    knowledge_base = make_knowledge_base("Uploads")

    response = client.post(
        reverse("admin:knowledge_add_documents"),
        {
            "knowledge_base": knowledge_base.pk,
            "files": [
                SimpleUploadedFile("hours.md", b"# Hours\n\n8 am to 9 pm."),
                SimpleUploadedFile("faq.csv", b"question,answer\nDo you ship?,Yes.\n"),
            ],
        },
    )

    assert response.status_code == 302
    documents = Document.objects.filter(knowledge_base=knowledge_base).order_by("title")
    assert [(doc.title, doc.source, doc.status) for doc in documents] == [
        ("Faq", "faq", "queued"),
        ("Hours", "upload", "queued"),
    ]


def test_an_empty_upload_is_refused_with_a_message_and_nothing_is_created(client):
    login_as(client, SUPPORT_STAFF)
    knowledge_base = make_knowledge_base("Uploads")

    response = client.post(
        reverse("admin:knowledge_add_documents"),
        {"knowledge_base": knowledge_base.pk, "files": [SimpleUploadedFile("empty.txt", b"")]},
        follow=True,
    )

    assert "empty" in response.content.decode().lower()
    assert not Document.objects.exists()


def test_the_document_page_previews_its_chunks(client, indexed_document):
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:knowledge_document_change", args=[indexed_document.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Chunks (what retrieval sees)" in page
    assert "Mở cửa từ 8 giờ đến 21 giờ." in page


def test_the_progress_endpoint_reports_live_status(client, indexed_document):
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:knowledge_document_progress"), {"ids": str(indexed_document.pk)})

    assert response.json()["documents"] == [
        {
            "id": indexed_document.pk,
            "status": "ready",
            "status_label": "Ready",
            "progress": 100,
            "error": "",
            "chunk_count": 1,
        }
    ]


def test_the_test_retrieval_page_ranks_chunks_with_all_three_scores(client, indexed_document):
    login_as(client, SUPPORT_STAFF)
    url = reverse("admin:knowledge_test_retrieval", args=[indexed_document.knowledge_base_id])

    response = client.get(url, {"q": "gio mo cua"})

    assert response.status_code == 200
    hits = response.context["result"].hits
    assert hits[0].document_title == "Store hours"
    page = response.content.decode()
    assert 'id="hits"' in page and "Store hours" in page and 'id="timings"' in page


def test_reindex_action_queues_a_new_version(client, indexed_document):
    login_as(client, SUPPORT_STAFF)

    client.post(
        reverse("admin:knowledge_document_changelist"),
        {"action": "reindex", "_selected_action": [indexed_document.pk]},
    )

    indexed_document.refresh_from_db()
    assert (indexed_document.version, indexed_document.status) == (2, "queued")
    assert indexed_document.live_version == 1


def test_managers_can_read_documents_but_not_upload_or_change_them(client, indexed_document):
    login_as(client, MANAGERS)

    assert client.get(reverse("admin:knowledge_document_changelist")).status_code == 200
    assert client.get(reverse("admin:knowledge_add_documents")).status_code == 403
    response = client.post(
        reverse("admin:knowledge_document_change", args=[indexed_document.pk]),
        {"title": "Hacked", "knowledge_base": indexed_document.knowledge_base_id, "enabled": "on"},
    )
    assert response.status_code == 403
    indexed_document.refresh_from_db()
    assert indexed_document.title == "Store hours"


def test_staff_without_a_role_cannot_open_the_test_retrieval_page(client, indexed_document):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))

    url = reverse("admin:knowledge_test_retrieval", args=[indexed_document.knowledge_base_id])

    assert client.get(url, {"q": "hours"}).status_code == 403


def test_the_admin_front_page_shows_indexing_counts_and_failures_to_support_staff(client, indexed_document):
    failed = paste(indexed_document.knowledge_base, "text", title="Broken sheet")
    Document.objects.filter(pk=failed.pk).update(status="failed", error="The sheet has no answer column.")
    login_as(client, SUPPORT_STAFF)

    response = client.get(reverse("admin:index"))

    cards = {card["title"]: card["value"] for card in response.context["knowledge_cards"]}
    assert cards["Documents ready"] == 1 and cards["Failed"] == 1
    page = response.content.decode()
    assert "Broken sheet" in page and "no answer column" in page


def test_the_front_page_shows_no_knowledge_figures_to_staff_without_a_role(client, indexed_document):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))

    response = client.get(reverse("admin:index"))

    assert "knowledge_cards" not in response.context
