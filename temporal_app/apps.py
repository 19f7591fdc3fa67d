from django.apps import AppConfig


class TemporalAppConfig(AppConfig):
    name = "temporal_app"
    verbose_name = "Temporal"

    def ready(self) -> None:
        from temporal_app import (
            checks,  # noqa: F401  (registers the system check)
            tracing,
        )

        # Before any request or worker: Django's middleware list is read when the first request
        # handler is built. Does nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
        tracing.configure()
