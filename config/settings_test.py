"""Test settings: the same real PostgreSQL and Redis, with the suite's data kept apart.

pytest-django adds the test_ prefix to the database name; Redis gets its own
database number so a running `make run` and a test run never share keys or tasks.
"""

from config.env import celery_broker_url, redis_db, redis_url_with_db
from config.settings import *  # noqa: F403
from config.settings import CACHES, REDIS_URL

TEST_REDIS_URL = redis_url_with_db(REDIS_URL, redis_db(REDIS_URL) + 1)
CACHES["default"]["LOCATION"] = TEST_REDIS_URL
CACHES["default"]["KEY_PREFIX"] = "cbtest"
CELERY_BROKER_URL = celery_broker_url(TEST_REDIS_URL)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = VAR_DIR / "test-media"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - whitenoise warns when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
