from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"
    verbose_name = "Manual review"

    def ready(self) -> None:
        from reviews import metrics  # noqa: F401  (the review backlog gauges, on /metrics)
