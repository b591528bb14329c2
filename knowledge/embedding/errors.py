"""The only errors an embedder raises; each vendor module maps its SDK's exceptions into these."""


class ProviderError(Exception):
    """Base class: something went wrong talking to an embedding provider."""


class TransientError(ProviderError):
    """Worth retrying later: timeouts, connection failures, 5xx."""


class RateLimited(TransientError):
    """The provider throttled us (HTTP 429 or a throttling code); back off longer."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """Retrying will not help: bad key, unknown model, invalid input, unexpected response."""
