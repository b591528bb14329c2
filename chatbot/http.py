"""Request helpers the channels' views share (REST API, widget, Zalo webhook)."""

from django.http import HttpRequest


def declared_body_length(request: HttpRequest) -> int:
    """The body's size from Content-Length, before a byte is read.

    Django reads at most Content-Length bytes, so refusing on this number bounds the
    memory a request can make us spend. A malformed header counts as 0: Django reads
    such a body as empty too.
    """
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0
