"""Support staff upload a file in a real browser and watch it index."""

import pytest
from django.contrib.auth.models import Group, User

from config.roles import SUPPORT_STAFF
from knowledge.models import Document
from tests.knowledge.helpers import make_knowledge_base


@pytest.mark.django_db(transaction=True)
def test_an_upload_moves_to_ready_in_the_document_list_without_reloading_by_hand(
    page, live_server, celery_worker_process, tmp_path
):
    user = User.objects.create_user("support", password="secret-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT_STAFF))
    knowledge_base = make_knowledge_base("Shop")
    upload = tmp_path / "giao-hang.md"
    upload.write_text("# Giao hàng\n\nMiễn phí giao hàng cho đơn từ 500.000đ.", encoding="utf-8")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "support")
    page.fill("#id_password", "secret-pw-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/admin/knowledge/document/add-documents/")
    page.select_option("#id_knowledge_base", str(knowledge_base.pk))
    page.set_input_files("#id_files", str(upload))
    page.click("#add-documents-submit")

    page.wait_for_url("**/admin/knowledge/document/")
    document = Document.objects.get()
    bar = page.locator(f'.kb-progress[data-document-id="{document.pk}"]')
    bar.and_(page.locator('[data-status="ready"]')).wait_for(timeout=60_000)
    assert page.get_by_role("link", name="Giao hang").count() == 1
    assert "100%" in bar.inner_text()
