"""System checks: a Temporal configuration that cannot work is reported by `manage.py check`
(and so by `migrate`, the release step), as one line, before anything tries to connect."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def temporal_configuration(app_configs, **kwargs):
    problem = getattr(settings, "TEMPORAL_CONFIG_PROBLEM", "")
    if not problem:
        return []
    return [Error(f"Temporal connection settings: {problem}", id="temporal_app.E001")]
