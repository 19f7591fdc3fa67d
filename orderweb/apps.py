from django.apps import AppConfig


class OrderwebConfig(AppConfig):
    name = "orderweb"
    verbose_name = "Orders"
