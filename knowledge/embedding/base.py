"""The one interface every embedding provider implements."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from knowledge.embedding.errors import PermanentError


@dataclass(frozen=True)
class EmbeddingBatch:
    vectors: list[list[float]]  # one per input text, in order, L2-normalised, len == dimensions
    input_tokens: int  # provider-reported when available, else counted or estimated (see each provider)
    model: str  # the provider's model id that produced the vectors


class Embedder(Protocol):
    # Plain attributes, so implementations are ordinary (not frozen) dataclasses: a type
    # checker only accepts settable attributes for these.
    key: str  # registry key, e.g. "local-e5-small"
    provider: str  # "local" | "gemini" | "bedrock"
    model: str  # vendor model id
    dimensions: int
    max_batch: int  # callers batch by this; the embedder still splits anything larger

    def embed_documents(self, texts: list[str]) -> EmbeddingBatch: ...

    def embed_query(self, text: str) -> EmbeddingBatch: ...


def unit_vector(values: Sequence[float], *, dimensions: int) -> list[float]:
    """`values` scaled to length 1, checked against the dimension the index expects.

    Cosine distance and the answer cache assume unit vectors, and some providers
    (Gemini at reduced dimensions) do not return them.
    """
    if len(values) != dimensions:
        raise PermanentError(f"expected a {dimensions}-dimensional vector, got {len(values)} dimensions")
    norm = math.sqrt(math.fsum(x * x for x in values))
    if not math.isfinite(norm) or norm == 0.0:
        raise PermanentError("the provider returned a zero or non-finite vector")
    return [float(x) / norm for x in values]
