"""Demo data for a first run: staff logins for each role, then each app's demo content.

Everything here is idempotent, so `make run` can call it on every start.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils.module_loading import import_string

from config.roles import MANAGERS, SUPPORT_STAFF, sync_roles

# Each app's demo content, in ladder order.
DEMO_SEEDERS: list[str] = ["knowledge.demo.seed_demo_knowledge_base", "chatbot.demo.seed_demo_bot"]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    password_is_current: bool


def demo_password() -> str:
    """Generated once per installation and kept under var/, never in the repository."""
    path = Path(settings.VAR_DIR) / "demo-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def ensure_demo_staff(*, password: str) -> list[DemoLogin]:
    sync_roles()
    accounts = [
        ("admin", "Administrator", None),
        ("support", SUPPORT_STAFF, SUPPORT_STAFF),
        ("manager", MANAGERS, MANAGERS),
    ]
    logins = []
    for username, role, group_name in accounts:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, email=f"{username}@example.com", is_staff=True)
            user.is_superuser = group_name is None
            user.set_password(password)
            user.save()
            if group_name:
                user.groups.add(Group.objects.get(name=group_name))
        logins.append(DemoLogin(username, role, user.check_password(password)))
    return logins


def seed_demo() -> list[DemoLogin]:
    logins = ensure_demo_staff(password=demo_password())
    for dotted in DEMO_SEEDERS:
        import_string(dotted)()
    return logins
