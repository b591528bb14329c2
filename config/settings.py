"""Settings, all driven by environment variables (see .env.example and the README).

A malformed value raises ImproperlyConfigured naming the variable. When
DATABASE_URL or REDIS_URL is unset, embedded servers are started under var/.
"""

import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config import embedded
from config.env import (
    celery_broker_url,
    check_redis_url,
    database_from_url,
    env_base_url,
    env_bool,
    env_int,
    env_list,
    env_optional_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    # A laptop run keeps working without configuration: generate a key once and keep
    # it under var/ so sessions survive restarts. Production sets SECRET_KEY.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS entries must start with http:// or https://; got {_origin!r}"
        )

# Production security: HTTPS=1 behind a TLS-terminating proxy turns these on.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
if env_bool("SECURE_PROXY_SSL_HEADER", HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Messages can carry a new API key's token once: keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

INSTALLED_APPS = [
    "unfold",
    "unfold.contrib.filters",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "config",
    "conversations",
    "billing",
    "knowledge",
    "chatbot",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL, or the embedded PostgreSQL with pgvector.
DATABASE_URL = embedded.ensure_database_url(VAR_DIR)
DATABASES = {"default": database_from_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: cache, quotas and the Celery broker. REDIS_URL, or the embedded Redis.
REDIS_URL = check_redis_url(embedded.ensure_redis_url(VAR_DIR))
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cb",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Ho_Chi_Minh")
try:
    import zoneinfo

    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"TIME_ZONE must be an IANA zone such as Asia/Ho_Chi_Minh; got {TIME_ZONE!r}"
    ) from None
USE_I18N = True
USE_TZ = True

# Third-party services. Base URLs are overridable so tests (and proxies) can point
# the real client libraries at other servers.
GEMINI_API_KEY = env_str("GEMINI_API_KEY")
GEMINI_BASE_URL = env_optional_url("GEMINI_BASE_URL")
AWS_REGION = env_str("AWS_REGION", "ap-southeast-1")
AWS_ENDPOINT_URL_S3 = env_optional_url("AWS_ENDPOINT_URL_S3")
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
BEDROCK_ENDPOINT_URL = env_optional_url("BEDROCK_ENDPOINT_URL")
ZALO_OPENAPI_URL = env_base_url("ZALO_OPENAPI_URL", "https://openapi.zalo.me")
ZALO_OAUTH_URL = env_base_url("ZALO_OAUTH_URL", "https://oauth.zaloapp.com")

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
# Uploaded originals: S3 (django-storages on boto3) when a bucket is configured,
# the local media folder otherwise.
DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if AWS_STORAGE_BUCKET_NAME:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "region_name": AWS_REGION,
            "endpoint_url": AWS_ENDPOINT_URL_S3,
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
            "location": env_str("AWS_STORAGE_PREFIX", "media"),
        },
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
KNOWLEDGE_MAX_UPLOAD_BYTES = env_int("KNOWLEDGE_MAX_UPLOAD_MB", 20, minimum=1) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=1024)
# Admin uploads of several files at once stay within Django's file-count guard.
DATA_UPLOAD_MAX_NUMBER_FILES = 50

# Celery: Redis broker, three queues, JSON only.
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Unacknowledged (acks_late) tasks are redelivered after this; it must exceed the
    # longest task so a slow ingestion is not run twice at once.
    "visibility_timeout": 2 * 60 * 60,
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = [
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("chat", Exchange("chat"), routing_key="chat"),
    Queue("ingest", Exchange("ingest"), routing_key="ingest"),
]
CELERY_TASK_ROUTES = {
    "knowledge.tasks.*": {"queue": "ingest"},
    "chatbot.tasks.*": {"queue": "chat"},
    "chatbot.zalo.tasks.*": {"queue": "chat"},
}
# acks_late is opted into per task, only where the task is idempotent.
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# One task at a time per process: ingestion tasks are long, and a prefetched chat
# task must not wait behind one. Dedicated ingest workers run with the same value.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360, minimum=1)
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-documents": {"task": "knowledge.tasks.requeue_stuck_documents", "schedule": 120.0},
    "purge-answer-cache": {"task": "chatbot.tasks.purge_answer_cache", "schedule": 15 * 60.0},
    "zalo-send-due-outbox": {"task": "chatbot.zalo.tasks.send_due_outbox", "schedule": 10.0},
    "zalo-requeue-pending-events": {"task": "chatbot.zalo.tasks.requeue_pending_events", "schedule": 60.0},
    "zalo-refresh-expiring-tokens": {"task": "chatbot.zalo.tasks.refresh_expiring_tokens", "schedule": 600.0},
    "zalo-purge-old-events": {"task": "chatbot.zalo.tasks.purge_old_events", "schedule": 60 * 60.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "chatbot.api.errors.api_exception_handler",
}
# REST API (/api/v1/, docs/api.md): request body cap (checked from Content-Length before
# reading) and fixed one-minute windows per API key and per client address; 0 turns a limit off.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
API_RATE_LIMIT_PER_KEY_PER_MINUTE = env_int("API_RATE_LIMIT_PER_KEY_PER_MINUTE", 600, minimum=0)
API_RATE_LIMIT_PER_IP_PER_MINUTE = env_int("API_RATE_LIMIT_PER_IP_PER_MINUTE", 1200, minimum=0)
# Web widget (/widget/api/, docs/widget.md): messages, ratings and handoffs per visitor, and
# every request per client address (many shoppers can share one mobile-carrier address).
WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE = env_int("WIDGET_RATE_LIMIT_PER_VISITOR_PER_MINUTE", 20, minimum=0)
WIDGET_RATE_LIMIT_PER_IP_PER_MINUTE = env_int("WIDGET_RATE_LIMIT_PER_IP_PER_MINUTE", 120, minimum=0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Support Bot API",
    "DESCRIPTION": (
        "Send a customer's message to a bot and get its answer (blocking JSON or server-sent "
        "events), read a conversation, rate an answer.\n\n"
        "Authenticate with `Authorization: Bearer sk_bot_...`: the key decides the bot. "
        'Every error is JSON: `{"error": {"code": "<stable_snake_case>", "message": "..."}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from drf-spectacular-sidecar's static files, so /api/docs/ needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

UNFOLD = {
    "SITE_TITLE": "Support Bot admin",
    "SITE_HEADER": "Support Bot",
    "SITE_SYMBOL": "support_agent",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "config.dashboard.dashboard_callback",
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL; got {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # The HTTP clients under google-genai log every request at INFO: two lines per answer.
    "loggers": {name: {"level": "WARNING"} for name in ("pgserver", "httpx", "httpx2", "httpcore")},
}
