"""Web origins: the one place that reads, checks and normalises them.

A browser's `Origin` header is `scheme://host[:port]` with the host in lowercase
ASCII (punycode) and the port left out when it is the scheme's default; a bot's
allowed origins are stored in that same form, so checking one is a set lookup.
"""

from urllib.parse import urlsplit

from django.http import HttpRequest

DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidOrigin(ValueError):
    pass


def origin_normalize(value: str) -> str:
    """`value` as a browser would send it in `Origin`; InvalidOrigin says what is wrong with it."""
    text = value.strip()
    if not text:
        raise InvalidOrigin("empty")
    if "://" not in text:
        raise InvalidOrigin(f"{text!r} needs its scheme, e.g. https://{text}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:  # a port out of range or not a number
        raise InvalidOrigin(f"{text!r} is not a valid origin ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidOrigin(f"{text!r} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise InvalidOrigin(f"{text!r} must not contain a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOrigin(f"{text!r} must be only scheme://host[:port], without a path")
    host = parts.hostname or ""
    if not host or "*" in host:
        raise InvalidOrigin(f"{text!r} needs one exact host name (no wildcards)")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    else:
        try:
            host = host.encode("idna").decode("ascii")  # browsers send internationalised names as punycode
        except UnicodeError:
            raise InvalidOrigin(f"{text!r} has an invalid host name") from None
    if port is not None and port != DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def origins_parse(text: str) -> list[str]:
    """The origins of a one-per-line text, normalised and without repeats.

    Raises InvalidOrigin naming every bad line (for the admin form); see
    `origins_allowed` for reading stored text.
    """
    origins: list[str] = []
    problems: list[str] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            origin = origin_normalize(line)
        except InvalidOrigin as error:
            problems.append(f"line {number}: {error}")
            continue
        if origin not in origins:
            origins.append(origin)
    if problems:
        raise InvalidOrigin("; ".join(problems))
    return origins


def origins_allowed(text: str) -> frozenset[str]:
    """The valid origins of stored text; a bad line (set outside the admin form) allows nothing."""
    allowed = set()
    for line in (text or "").splitlines():
        try:
            allowed.add(origin_normalize(line))
        except InvalidOrigin:
            continue
    return frozenset(allowed)


def origin_of_server(request: HttpRequest) -> str:
    """This server's own origin as the browser sees it (scheme and Host, behind our proxy too)."""
    return origin_normalize(f"{request.scheme}://{request.get_host()}")


def origin_of_request(request: HttpRequest) -> str | None:
    """The normalised `Origin` header, None when there is none.

    "null" (sandboxed frames, file:// pages) and malformed values raise InvalidOrigin:
    they name no site that could be allowed.
    """
    value = request.headers.get("Origin")
    if value is None:
        return None
    if value.strip() == "null":
        raise InvalidOrigin("the page has an opaque origin (null)")
    return origin_normalize(value)
