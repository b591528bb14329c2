from django.core.management.base import BaseCommand

from config.demo import demo_password, seed_demo


class Command(BaseCommand):
    help = "Load the demo data (safe to run again): staff logins and each app's demo content."

    def handle(self, *args, **options) -> None:
        logins = seed_demo()
        password = demo_password()
        self.stdout.write(self.style.SUCCESS("Demo logins (admin at /admin/):"))
        for login in logins:
            shown = password if login.password_is_current else "(changed since it was created)"
            self.stdout.write(f"  {login.username:<8} {login.role:<14} password: {shown}")
