from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import VectorField

from knowledge.embedding.registry import default_embedding_model, embedding_model_choices


class Language(models.TextChoices):
    VIETNAMESE = "vi", "Tiếng Việt"
    ENGLISH = "en", "English"


class KnowledgeBase(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    default_language = models.CharField(max_length=5, choices=Language.choices, default=Language.VIETNAMESE)
    embedding_model = models.CharField(
        max_length=64,
        choices=embedding_model_choices,
        default=default_embedding_model,
        help_text="The model whose vectors answer questions. Changing it re-embeds every document "
        "in the background; the current vectors keep serving until the new ones are complete.",
    )
    pending_embedding_model = models.CharField(max_length=64, blank=True, editable=False)
    chunk_tokens = models.PositiveIntegerField(default=350, help_text="Target chunk size in tokens.")
    chunk_overlap_tokens = models.PositiveIntegerField(
        default=50, help_text="Tokens repeated between chunks."
    )
    # Bumped whenever what retrieval can return changes, so answer caches can tell.
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def embedding_models_in_use(self) -> list[str]:
        models_ = [self.embedding_model]
        if self.pending_embedding_model and self.pending_embedding_model != self.embedding_model:
            models_.append(self.pending_embedding_model)
        return models_


class Document(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded file"
        TEXT = "text", "Pasted text"
        URL = "url", "Web page"
        FAQ = "faq", "FAQ sheet"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        EXTRACTING = "extracting", "Extracting"
        CHUNKING = "chunking", "Chunking"
        EMBEDDING = "embedding", "Embedding"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    IN_PROGRESS = (Status.QUEUED, Status.EXTRACTING, Status.CHUNKING, Status.EMBEDDING)

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=300)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    file = models.FileField(upload_to="knowledge/%Y/%m/", blank=True, max_length=500)
    original_filename = models.CharField(max_length=300, blank=True)
    source_url = models.URLField(blank=True, max_length=1000)
    text = models.TextField(blank=True, help_text="The document's text, for pasted text.")
    enabled = models.BooleanField(default=True, help_text="Disabled documents are never used in answers.")

    # version: the latest content asked for; live_version: the one retrieval serves.
    version = models.PositiveIntegerField(default=1, editable=False)
    live_version = models.PositiveIntegerField(default=0, editable=False)
    content_hash = models.CharField(max_length=64, blank=True, editable=False)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0, editable=False)
    error = models.TextField(blank=True, editable=False)
    stage_timings = models.JSONField(default=dict, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    status_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    indexed_at = models.DateTimeField(null=True, blank=True, editable=False)

    file_type = models.CharField(max_length=12, blank=True, editable=False)
    page_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    chunk_count = models.PositiveIntegerField(default=0, editable=False)
    embedded_chunk_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Chunks embedded by the last run (the rest came from the cache)."
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["status", "status_changed_at"])]

    def __str__(self) -> str:
        return self.title

    @property
    def is_indexing(self) -> bool:
        return self.status in self.IN_PROGRESS


class Chunk(models.Model):
    """A piece of a document version, embedded with one model.

    `embedding` has no fixed dimension so several models can coexist; each model has
    its own partial HNSW index on `embedding::vector(N)` (see the migrations).
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    document_version = models.PositiveIntegerField()
    position = models.PositiveIntegerField()
    text = models.TextField()
    heading_path = models.JSONField(default=list, blank=True)
    token_count = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    embedding_model = models.CharField(max_length=64)
    embedding = VectorField()
    # Serving flag: the document is enabled and this is its live version.
    is_live = models.BooleanField(default=True)
    # Folded text (no case, no diacritics) for keyword search; see knowledge.textnorm.
    search_text = models.TextField()
    search_vector = models.GeneratedField(
        expression=SearchVector("search_text", config="simple"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document_id", "position"]
        indexes = [
            models.Index(fields=["document", "embedding_model", "position"]),
            models.Index(fields=["knowledge_base", "embedding_model", "is_live"]),
            GinIndex(fields=["search_vector"], name="knowledge_chunk_search_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)


class EmbeddingCacheEntry(models.Model):
    """Vectors by (model, content hash): unchanged text is never embedded twice."""

    model = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    embedding = VectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "content_hash"], name="knowledge_embedding_cache_key")
        ]

    def __str__(self) -> str:
        return f"{self.model}:{self.content_hash[:12]}"


class FaqEntry(models.Model):
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="faq_entries")
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.CASCADE, related_name="faq_entries"
    )
    question = models.TextField()
    answer = models.TextField()
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["knowledge_base_id", "document_id", "position"]
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ entries"

    def __str__(self) -> str:
        return self.question[:80]
