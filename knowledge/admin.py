from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display

from knowledge import selectors, services
from knowledge.embedding import ProviderError
from knowledge.models import Chunk, Document, FaqEntry, KnowledgeBase
from knowledge.retrieval import retrieve

STATUS_COLOURS = {
    Document.Status.QUEUED: "info",
    Document.Status.EXTRACTING: "warning",
    Document.Status.CHUNKING: "warning",
    Document.Status.EMBEDDING: "warning",
    Document.Status.READY: "success",
    Document.Status.FAILED: "danger",
}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class AddDocumentsForm(forms.Form):
    knowledge_base = forms.ModelChoiceField(queryset=KnowledgeBase.objects.all())
    files = MultipleFileField(
        required=False,
        help_text="PDF, DOCX, HTML, Markdown, TXT, or a CSV/XLSX FAQ sheet with question and answer columns. "
        "Select several files at once if you like.",
    )
    title = forms.CharField(required=False, max_length=300, help_text="For pasted text or a web page.")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}), label="Or paste text")
    url = forms.URLField(required=False, label="Or a web page address", assume_scheme="https")

    def clean(self):
        data = super().clean()
        given = [bool(data.get("files")), bool((data.get("text") or "").strip()), bool(data.get("url"))]
        if sum(given) != 1:
            raise ValidationError("Give files, pasted text or a web page address (one of them).")
        if data.get("text") and not data.get("title"):
            raise ValidationError("Pasted text needs a title.")
        return data


class ChunkInline(TabularInline):
    model = Chunk
    fields = ["position", "heading", "token_count", "preview"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    verbose_name = "chunk"
    verbose_name_plural = "Chunks (what retrieval sees)"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(is_live=True).select_related("knowledge_base")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @display(description="Heading")
    def heading(self, chunk: Chunk) -> str:
        return chunk.heading or "—"

    @display(description="Text")
    def preview(self, chunk: Chunk) -> str:
        return chunk.text[:400] + ("…" if len(chunk.text) > 400 else "")


class DocumentChangeForm(forms.ModelForm):
    replace_file = forms.FileField(required=False, help_text="Upload a new version of the file.")

    class Meta:
        model = Document
        fields = ["title", "knowledge_base", "enabled", "text"]


@admin.register(Document)
class DocumentAdmin(ModelAdmin):
    form = DocumentChangeForm
    list_display = [
        "title",
        "knowledge_base",
        "source",
        "status_badge",
        "progress_bar",
        "enabled",
        "chunk_count",
        "updated_at",
    ]
    list_filter = ["knowledge_base", "status", "source", "enabled", "file_type"]
    search_fields = ["title", "original_filename", "source_url"]
    list_select_related = ["knowledge_base"]
    readonly_fields = [
        "source",
        "original_filename",
        "source_url",
        "file_type",
        "page_count",
        "status_badge",
        "progress_bar",
        "error",
        "version",
        "live_version",
        "chunk_count",
        "embedded_chunk_count",
        "timings",
        "indexed_at",
        "created_by",
        "created_at",
    ]
    actions = ["reindex", "retry_failed", "enable", "disable"]
    inlines = [ChunkInline]
    list_per_page = 50
    change_list_template = "admin/knowledge/document/change_list.html"

    def get_fieldsets(self, request, obj=None):
        content = ["title", "knowledge_base", "enabled"]
        if obj and obj.source == Document.Source.TEXT:
            content.append("text")
        elif obj and obj.source in {Document.Source.UPLOAD, Document.Source.FAQ}:
            content.append("replace_file")
        return [
            (None, {"fields": content}),
            ("Indexing", {"fields": ["status_badge", "progress_bar", "error", "timings", "indexed_at"]}),
            (
                "Details",
                {
                    "fields": [
                        "source",
                        "original_filename",
                        "source_url",
                        "file_type",
                        "page_count",
                        "version",
                        "live_version",
                        "chunk_count",
                        "embedded_chunk_count",
                        "created_by",
                        "created_at",
                    ]
                },
            ),
        ]

    def get_urls(self):
        return [
            path(
                "add-documents/",
                self.admin_site.admin_view(self.add_documents_view),
                name="knowledge_add_documents",
            ),
            path(
                "progress/",
                self.admin_site.admin_view(self.progress_view),
                name="knowledge_document_progress",
            ),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return redirect("admin:knowledge_add_documents")

    def add_documents_view(self, request: HttpRequest):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AddDocumentsForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            created, refused = self._create_documents(request, form.cleaned_data)
            for name, reason in refused:
                messages.error(request, f"{name}: {reason}")
            if created:
                messages.success(request, f"{created} document(s) queued for indexing.")
                return redirect("admin:knowledge_document_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Add documents",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/knowledge/document/add_documents.html", context)

    def _create_documents(self, request, data) -> tuple[int, list[tuple[str, str]]]:
        knowledge_base = data["knowledge_base"]
        created, refused = 0, []
        if data["text"]:
            services.document_create_from_text(
                knowledge_base=knowledge_base, title=data["title"], text=data["text"], created_by=request.user
            )
            return 1, refused
        if data["url"]:
            services.document_create_from_url(
                knowledge_base=knowledge_base, url=data["url"], title=data["title"], created_by=request.user
            )
            return 1, refused
        for uploaded in data["files"]:
            try:
                services.document_create_from_upload(
                    knowledge_base=knowledge_base, uploaded=uploaded, created_by=request.user
                )
                created += 1
            except ValidationError as error:
                refused.append((uploaded.name, " ".join(error.messages)))
        return created, refused

    def progress_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.isdigit()][:200]
        return JsonResponse({"documents": selectors.document_progress(document_ids=ids)})

    def save_model(self, request, obj: Document, form, change: bool) -> None:
        if not change:
            return super().save_model(request, obj, form, change)
        changed = set(form.changed_data)
        if changed & {"title", "knowledge_base"}:
            Document.objects.filter(pk=obj.pk).update(title=obj.title, knowledge_base=obj.knowledge_base)
        if "enabled" in changed:
            services.document_set_enabled(document=obj, enabled=obj.enabled)
        if "text" in changed and obj.source == Document.Source.TEXT:
            services.document_update_text(document=obj, text=obj.text)
        replacement = form.cleaned_data.get("replace_file")
        if replacement:
            try:
                services.document_replace_file(document=obj, uploaded=replacement)
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))

    def delete_model(self, request, obj: Document) -> None:
        services.document_delete(document=obj)

    def delete_queryset(self, request, queryset) -> None:
        for document in queryset:
            services.document_delete(document=document)

    @display(description="Status", label=STATUS_COLOURS, ordering="status")
    def status_badge(self, document: Document):
        return document.status, document.get_status_display()

    @display(description="Progress")
    def progress_bar(self, document: Document) -> str:
        return format_html(
            '<div class="kb-progress" data-document-id="{}" data-status="{}" title="{}">'
            '<div class="kb-progress-track"><div class="kb-progress-fill" style="width: {}%"></div></div>'
            '<span class="kb-progress-label">{}%</span></div>',
            document.pk,
            document.status,
            document.error or document.get_status_display(),
            document.progress,
            document.progress,
        )

    @display(description="Stage timings")
    def timings(self, document: Document) -> str:
        if not document.stage_timings:
            return "—"
        return ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in document.stage_timings.items())

    @action(description="Re-index selected documents")
    def reindex(self, request, queryset) -> None:
        for document in queryset:
            services.document_reindex(document=document)
        messages.success(request, f"{queryset.count()} document(s) queued for re-indexing.")

    @action(description="Retry failed documents")
    def retry_failed(self, request, queryset) -> None:
        failed = list(queryset.filter(status=Document.Status.FAILED))
        for document in failed:
            services.document_reindex(document=document)
        messages.success(request, f"{len(failed)} failed document(s) queued again.")

    @action(description="Enable selected documents")
    def enable(self, request, queryset) -> None:
        for document in queryset:
            services.document_set_enabled(document=document, enabled=True)

    @action(description="Disable selected documents (never used in answers)")
    def disable(self, request, queryset) -> None:
        for document in queryset:
            services.document_set_enabled(document=document, enabled=False)


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(ModelAdmin):
    list_display = ["name", "default_language", "model_display", "documents_ready", "documents_indexing",
                    "documents_failed", "version", "test_link"]  # fmt: skip
    search_fields = ["name", "description"]
    readonly_fields = ["version", "pending_embedding_model", "created_at", "updated_at"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                ready_count=Count("documents", filter=Q(documents__status=Document.Status.READY)),
                indexing_count=Count("documents", filter=Q(documents__status__in=Document.IN_PROGRESS)),
                failed_count=Count("documents", filter=Q(documents__status=Document.Status.FAILED)),
            )
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/test-retrieval/",
                self.admin_site.admin_view(self.test_retrieval_view),
                name="knowledge_test_retrieval",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request, obj: KnowledgeBase, form, change: bool) -> None:
        if change and "embedding_model" in form.changed_data:
            new_model = obj.embedding_model
            obj.embedding_model = form.initial["embedding_model"]
            super().save_model(request, obj, form, change)
            services.knowledge_base_switch_embedding_model(knowledge_base=obj, model=new_model)
            messages.info(
                request,
                f"Re-embedding every document with {new_model} in the background; "
                "answers keep using the current vectors until it is done.",
            )
            return
        super().save_model(request, obj, form, change)

    @display(description="Embedding model")
    def model_display(self, knowledge_base: KnowledgeBase) -> str:
        if knowledge_base.pending_embedding_model:
            return f"{knowledge_base.embedding_model} → {knowledge_base.pending_embedding_model} (switching)"
        return knowledge_base.embedding_model

    @display(description="Ready", ordering="ready_count")
    def documents_ready(self, knowledge_base) -> int:
        return knowledge_base.ready_count

    @display(description="Indexing", ordering="indexing_count")
    def documents_indexing(self, knowledge_base) -> int:
        return knowledge_base.indexing_count

    @display(description="Failed", ordering="failed_count")
    def documents_failed(self, knowledge_base) -> int:
        return knowledge_base.failed_count

    @display(description="")
    def test_link(self, knowledge_base: KnowledgeBase) -> str:
        url = reverse("admin:knowledge_test_retrieval", args=[knowledge_base.pk])
        return format_html('<a href="{}" class="text-primary-600">Test retrieval</a>', url)

    def test_retrieval_view(self, request: HttpRequest, pk: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        knowledge_base = get_object_or_404(KnowledgeBase, pk=pk)
        query = request.GET.get("q", "").strip()[:1000]
        try:
            top_k = min(max(int(request.GET.get("k", 8)), 1), 50)
        except ValueError:
            top_k = 8
        result, error = None, ""
        if query:
            try:
                result = retrieve(knowledge_base=knowledge_base, query=query, top_k=top_k)
            except ProviderError as provider_error:
                error = f"The embedding service failed: {provider_error}"
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test retrieval: {knowledge_base.name}",
            "knowledge_base": knowledge_base,
            "query": query,
            "top_k": top_k,
            "result": result,
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/knowledge/knowledgebase/test_retrieval.html", context)


@admin.register(FaqEntry)
class FaqEntryAdmin(ModelAdmin):
    list_display = ["question", "answer_preview", "knowledge_base", "document"]
    list_filter = ["knowledge_base"]
    search_fields = ["question", "answer"]
    list_select_related = ["knowledge_base", "document"]
    readonly_fields = ["knowledge_base", "document", "question", "answer", "position"]

    # Entries come from FAQ sheets: edit the sheet and upload it again, so the answer
    # the bot retrieves and the entry shown here never disagree.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @display(description="Answer")
    def answer_preview(self, entry: FaqEntry) -> str:
        return entry.answer[:120]
