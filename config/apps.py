from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConfigConfig(AppConfig):
    name = "config"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from config.roles import sync_role_permissions_after_migrate

        # Models added by later migrations get their role permissions here, since a
        # data migration runs before Django creates the new models' permissions.
        post_migrate.connect(sync_role_permissions_after_migrate, dispatch_uid="config.roles.sync")
