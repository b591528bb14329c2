"""Signing staff in for admin tests."""

from django.contrib.auth.models import Group, User
from django.test import Client


def login_as(client: Client, role: str | None) -> User:
    """A staff user in the group `role` (None: a superuser), logged in on `client`."""
    if role is None:
        user = User.objects.create_superuser("root", password="pw")
    else:
        user = User.objects.create_user(role.replace(" ", "-").lower(), password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user
