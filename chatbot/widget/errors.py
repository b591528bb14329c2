"""The widget API's errors: an HTTP status and a stable code, shown to browsers as JSON.

The body has the REST API's shape, {"error": {"code", "message"}}, so one client
library can read both; the widget branches on `code`.
"""


class WidgetError(Exception):
    def __init__(self, *, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, for 429
