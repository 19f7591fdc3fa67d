from django.apps import AppConfig


class TemporalAppConfig(AppConfig):
    name = "temporal_app"
    verbose_name = "Temporal"

    def ready(self) -> None:
        from temporal_app import checks  # noqa: F401  (registers the system check)
