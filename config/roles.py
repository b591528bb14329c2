"""The two staff roles and what each may do, as one table.

The table is the source of truth: syncing sets each group's permissions to exactly
what it grants, for every model of the named apps, including models added later.
Teams that need other mixes create their own groups beside these.
"""

from django.contrib.auth.models import Group, Permission

SUPPORT_STAFF = "Support staff"
MANAGERS = "Managers"

ALL_ACTIONS = frozenset({"add", "change", "delete", "view"})
READ = frozenset({"view"})

# Keys are an app label or "app_label.model"; a model key wins over its app key.
ROLE_PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    SUPPORT_STAFF: {
        "knowledge": ALL_ACTIONS,
        "conversations": frozenset({"add", "change", "view"}),
        "chatbot": READ,
    },
    MANAGERS: {
        "billing": READ,
        "conversations": READ,
        "knowledge": READ,
        "chatbot": READ,
    },
}


def role_permissions(role: str) -> list[Permission]:
    grants = ROLE_PERMISSIONS[role]
    wanted = []
    for permission in Permission.objects.select_related("content_type"):
        content_type = permission.content_type
        actions = grants.get(f"{content_type.app_label}.{content_type.model}")
        if actions is None:
            actions = grants.get(content_type.app_label, frozenset())
        action = permission.codename.split("_", 1)[0]
        if action in actions:
            wanted.append(permission)
    return wanted


def sync_roles() -> None:
    for role in ROLE_PERMISSIONS:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(role_permissions(role))


def sync_role_permissions_after_migrate(sender, **kwargs) -> None:
    # post_migrate fires once per app with models (also after a test flush); the
    # last one is enough, since by then every app's permissions exist.
    from django.apps import apps as global_apps

    last = [config for config in global_apps.get_app_configs() if config.models_module][-1]
    if sender.label == last.label:
        sync_roles()
