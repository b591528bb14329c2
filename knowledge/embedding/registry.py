"""The embedding models a knowledge base can use, by a stable key stored on the row.

Keys are stored in the database and name partial HNSW indexes, so never rename or
reuse one: add a new key for a new model or dimension. Vendor modules are imported
only when an embedder is first built, so loading the models stays cheap.
"""

import threading
from dataclasses import dataclass

from django.conf import settings

from knowledge.embedding.base import Embedder

# pgvector's HNSW index refuses vectors of more than 2,000 dimensions.
HNSW_MAX_DIMENSIONS = 2000


@dataclass(frozen=True)
class EmbeddingModel:
    key: str
    label: str
    provider: str  # "local" | "gemini" | "bedrock"
    model: str  # vendor model id
    dimensions: int
    # Cosine similarity below which a passage is unrelated to a question. Each model
    # spreads similarities differently (e5 rarely scores unrelated text under 0.7).
    relevance_floor: float


EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    entry.key: entry
    for entry in (
        EmbeddingModel(
            key="local-e5-small",
            label="multilingual-e5-small on this server (384 dimensions, free)",
            provider="local",
            model="multilingual-e5-small",
            dimensions=384,
            relevance_floor=0.80,  # demo shop: related questions 0.81-0.92, unrelated 0.72-0.87
        ),
        EmbeddingModel(
            key="gemini-embedding-001-768",
            label="Google Gemini embedding 001 (768 dimensions)",
            provider="gemini",
            model="gemini-embedding-001",
            dimensions=768,
            relevance_floor=0.55,  # not calibrated here (no network); tune per bot
        ),
        EmbeddingModel(
            key="bedrock-titan-v2-512",
            label="Amazon Titan Text Embeddings V2 on Bedrock (512 dimensions)",
            provider="bedrock",
            model="amazon.titan-embed-text-v2:0",
            dimensions=512,
            relevance_floor=0.30,  # not calibrated here (no network); tune per bot
        ),
    )
}

for _entry in EMBEDDING_MODELS.values():
    if not 0 < _entry.dimensions <= HNSW_MAX_DIMENSIONS:
        raise ValueError(f"{_entry.key}: {_entry.dimensions} dimensions cannot have an HNSW index")

EMBEDDING_DIMENSIONS: dict[str, int] = {key: entry.dimensions for key, entry in EMBEDDING_MODELS.items()}

_embedders: dict[str, Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(key: str) -> Embedder:
    """The embedder for a registry key, built once per process."""
    try:
        entry = EMBEDDING_MODELS[key]
    except KeyError:
        known = ", ".join(EMBEDDING_MODELS)
        raise KeyError(f"unknown embedding model {key!r}; known models: {known}") from None
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = _embedders[key] = _build(entry)
    return embedder


def _build(entry: EmbeddingModel) -> Embedder:
    if entry.provider == "local":
        from knowledge.embedding.local import LocalEmbedder

        return LocalEmbedder(key=entry.key, model=entry.model, dimensions=entry.dimensions)
    if entry.provider == "gemini":
        from knowledge.embedding.gemini import GeminiEmbedder

        return GeminiEmbedder(key=entry.key, model=entry.model, dimensions=entry.dimensions)
    if entry.provider == "bedrock":
        from knowledge.embedding.bedrock import TitanEmbedder

        return TitanEmbedder(key=entry.key, model=entry.model, dimensions=entry.dimensions)
    raise ValueError(f"{entry.key}: unknown provider {entry.provider!r}")


def embedding_model_choices() -> list[tuple[str, str]]:
    """(key, label) pairs for a model field's choices."""
    return [(key, entry.label) for key, entry in EMBEDDING_MODELS.items()]


def default_embedding_model() -> str:
    """Gemini when a key is configured, otherwise the local model, which needs nothing."""
    return "gemini-embedding-001-768" if settings.GEMINI_API_KEY else "local-e5-small"
