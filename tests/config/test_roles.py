"""What each staff role can and cannot see in the admin, page by page."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.urls import reverse

from config.roles import MANAGERS, ROLE_PERMISSIONS, SUPPORT_STAFF

pytestmark = pytest.mark.django_db


def staff_in(role: str) -> User:
    user = User.objects.create_user(f"{role.lower().replace(' ', '-')}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def allowed_actions(role: str, app_label: str, model_name: str) -> frozenset[str]:
    grants = ROLE_PERMISSIONS[role]
    return grants.get(f"{app_label}.{model_name}", grants.get(app_label, frozenset()))


def registered_models():
    return [(model._meta.app_label, model._meta.model_name) for model in admin.site._registry]


def test_both_roles_exist_after_migrations():
    assert set(Group.objects.filter(name__in=[SUPPORT_STAFF, MANAGERS]).values_list("name", flat=True)) == {
        SUPPORT_STAFF,
        MANAGERS,
    }


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_each_role_sees_exactly_the_admin_pages_its_table_grants(client, role):
    client.force_login(staff_in(role))

    assert client.get(reverse("admin:index")).status_code == 200
    for app_label, model_name in registered_models():
        actions = allowed_actions(role, app_label, model_name)
        changelist = client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
        add_page = client.get(reverse(f"admin:{app_label}_{model_name}_add"))

        can_see = bool(actions & {"view", "change"})
        assert changelist.status_code == (200 if can_see else 403), (role, app_label, model_name)
        if "add" not in actions:
            assert add_page.status_code == 403, (role, app_label, model_name)


@pytest.mark.parametrize("role", [SUPPORT_STAFF, MANAGERS])
def test_no_role_can_manage_users_or_groups(client, role):
    client.force_login(staff_in(role))

    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 403


def test_managers_cannot_change_anything():
    manager = staff_in(MANAGERS)

    codenames = manager.get_all_permissions()

    assert all(codename.split(".", 1)[1].startswith("view_") for codename in codenames)


def test_staff_without_a_role_see_an_empty_admin(client):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert response.context["app_list"] == []


def test_the_admin_asks_anonymous_visitors_to_log_in(client):
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
