"""Typed readers for environment variables.

Every reader fails with ImproperlyConfigured naming the variable, so a typo in a
deployment shows up at start as one clear line, not as a traceback from deep inside
a database driver.
"""

import os
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}; got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_base_url(name: str, default: str) -> str:
    """A base URL made of scheme and host (and port) only; paths are appended later."""
    raw = env_str(name, default)
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must look like https://host[:port]; got {raw!r}")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} must hold scheme and host only, no path; got {raw!r}")
    _port_of(name, parts)
    return f"{parts.scheme}://{parts.netloc}"


def env_optional_url(name: str) -> str | None:
    raw = env_str(name)
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http(s) URL; got {raw!r}")
    _port_of(name, parts)
    return raw.rstrip("/")


def _port_of(name: str, parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port; got {parts.netloc!r}") from None


DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql"}


def database_from_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Django DATABASES entry from postgres://user:pass@host:port/db?sslmode=require.

    A unix socket directory may be given as ?host=/path (as libpq does).
    """
    parts = urlsplit(url)
    if parts.scheme not in DATABASE_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} must start with postgres:// or postgresql://; got scheme {parts.scheme!r}"
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ImproperlyConfigured(f"{name} must name one database, as in postgres://host/dbname")
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or unquote(parts.hostname or "")
    if not host:
        raise ImproperlyConfigured(f"{name} must name a host or a socket directory (?host=/path)")
    port = _port_of(name, parts)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": dbname,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


def database_url_with_name(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


REDIS_SCHEMES = {"redis", "rediss", "unix"}


def check_redis_url(url: str, *, name: str = "REDIS_URL") -> str:
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} must start with redis://, rediss:// or unix://; got scheme {parts.scheme!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(f"{name} must give a socket path, as in unix:///path/redis.sock")
    elif not parts.hostname:
        raise ImproperlyConfigured(f"{name} must name a host, as in redis://host:6379/0")
    _port_of(name, parts)
    db = redis_db(url, name=name)
    if db < 0:
        raise ImproperlyConfigured(f"{name} database number must not be negative")
    return url


def redis_db(url: str, *, name: str = "REDIS_URL") -> int:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    raw = query.get("db") if parts.scheme == "unix" else (parts.path.lstrip("/") or query.get("db"))
    try:
        return int(raw or 0)
    except ValueError:
        raise ImproperlyConfigured(f"{name} database number must be an integer; got {raw!r}") from None


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        query["db"] = str(db)
        # urlunsplit would drop the empty authority ("unix:/path"), which redis-py refuses.
        return f"unix://{parts.path}?{urlencode(query)}"
    query.pop("db", None)
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a unix-socket Redis as redis+socket:// with virtual_host=db."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = {"virtual_host": str(redis_db(redis_url))}
    return f"redis+socket://{parts.path}?{urlencode(query)}"
