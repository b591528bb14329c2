"""Small builders for knowledge tests: real services, real pipeline, real embedder."""

from dataclasses import dataclass, field

from knowledge import services
from knowledge.embedding import EmbeddingBatch, get_embedder
from knowledge.ingest.pipeline import IngestOutcome, document_ingest
from knowledge.models import Document, KnowledgeBase


def make_knowledge_base(name: str = "Shop", **fields) -> KnowledgeBase:
    fields.setdefault("embedding_model", "local-e5-small")
    return KnowledgeBase.objects.create(name=name, **fields)


def paste(knowledge_base: KnowledgeBase, text: str, title: str = "Pasted") -> Document:
    return services.document_create_from_text(knowledge_base=knowledge_base, title=title, text=text)


def ingest(document: Document, **options) -> IngestOutcome:
    document.refresh_from_db()
    outcome = document_ingest(document_id=document.pk, version=document.version, **options)
    document.refresh_from_db()
    return outcome


@dataclass
class CountingEmbedder:
    """Wraps the real embedder of a model and counts the texts sent to it."""

    model: str
    texts: list[str] = field(default_factory=list)
    calls: int = 0
    before_call: object = None

    def __post_init__(self) -> None:
        self.inner = get_embedder(self.model)
        self.key = self.inner.key
        self.provider = self.inner.provider
        self.dimensions = self.inner.dimensions
        self.max_batch = self.inner.max_batch

    def embed_documents(self, texts: list[str]) -> EmbeddingBatch:
        if self.before_call:
            self.before_call()
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> EmbeddingBatch:
        return self.inner.embed_query(text)


def count_embeddings(monkeypatch, model: str = "local-e5-small") -> CountingEmbedder:
    counter = CountingEmbedder(model)
    real = get_embedder

    def patched(key: str):
        return counter if key == model else real(key)

    monkeypatch.setattr("knowledge.ingest.pipeline.get_embedder", patched)
    return counter
