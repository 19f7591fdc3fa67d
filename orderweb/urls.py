from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from orderweb.api.endpoints import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="reviews:queue", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("reviews/", include("reviews.urls")),
    path("api/v1/", api.urls),
]
