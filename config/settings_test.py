"""Test settings: the same real PostgreSQL and Redis, with the suite's data kept apart.

pytest-django adds the test_ prefix to the database name; Redis gets its own
database number so a running `make run` and a test run never share keys or tasks.
TEST_RUN_SLOT=N (1-7) gives a run its own test database and Redis database, so
several suites can run side by side on one machine.
"""

from config.env import celery_broker_url, env_int, redis_db, redis_url_with_db
from config.settings import *  # noqa: F403
from config.settings import CACHES, DATABASES, REDIS_URL

TEST_RUN_SLOT = env_int("TEST_RUN_SLOT", 0, minimum=0, maximum=7)
if TEST_RUN_SLOT:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{TEST_RUN_SLOT}"}
TEST_REDIS_URL = redis_url_with_db(REDIS_URL, redis_db(REDIS_URL) + 1 + TEST_RUN_SLOT)
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
