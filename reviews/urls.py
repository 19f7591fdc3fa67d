from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("decided/", views.recent, name="recent"),
    path("orders/<str:order_id>/", views.order_detail, name="order"),
    path("orders/<str:order_id>/status/", views.order_status, name="order_status"),
    path("orders/<str:order_id>/claim/", views.claim, name="claim"),
    path("orders/<str:order_id>/release/", views.release, name="release"),
    path("orders/<str:order_id>/decide/", views.decide, name="decide"),
    path("orders/<str:order_id>/extend/", views.extend, name="extend"),
    path("orders/<str:order_id>/reassign/", views.reassign, name="reassign"),
    path("orders/<str:order_id>/note/", views.note, name="note"),
    path("orders/<str:order_id>/labels/", views.label, name="label"),
    path("bulk/", views.bulk, name="bulk"),
    path("bulk/<uuid:batch>/", views.bulk_result, name="bulk_result"),
]
