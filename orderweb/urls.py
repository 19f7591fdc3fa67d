from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from orderweb import codec_server, views
from orderweb.api.endpoints import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="reviews:queue", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("reviews/", include("reviews.urls")),
    # A person's own settings: time zone, shortcuts (orderweb/preferences.py).
    path("preferences/", views.preferences, name="preferences"),
    path("preferences/time-zone", views.preferences_time_zone, name="preferences_time_zone"),
    path("preferences/shortcuts", views.preferences_shortcuts, name="preferences_shortcuts"),
    # The Temporal Web UI's codec server (staff only; orderweb/codec_server.py). /healthz,
    # /readyz and /metrics are served by orderweb.health.OperationalEndpointsMiddleware.
    path("temporal-codec/decode", codec_server.decode, name="temporal_codec_decode"),
    path("temporal-codec/encode", codec_server.encode, name="temporal_codec_encode"),
    # The HTTP API for other services (orderweb/api/, docs/api.md).
    path("api/v1/", api.urls),
]
