from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_save


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and reports"

    def ready(self) -> None:
        from billing.models import ModelPrice

        post_save.connect(_price_list_changed, sender=ModelPrice, dispatch_uid="billing-price-saved")
        post_delete.connect(_price_list_changed, sender=ModelPrice, dispatch_uid="billing-price-deleted")


def _price_list_changed(**_) -> None:
    from billing.selectors import price_list_forget

    price_list_forget()
    # Again once the change commits: a lookup meanwhile may have copied the old list.
    transaction.on_commit(price_list_forget)
