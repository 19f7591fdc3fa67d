from django.urls import path

from reviews import risk_views, views

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
    path("insights/", views.insights, name="insights"),
    path("bulk/", views.bulk, name="bulk"),
    path("bulk/<uuid:batch>/", views.bulk_result, name="bulk_result"),
    # The leads' risk pages (issue 21): the allow/block lists, the policy's versions, backtests.
    path("lists/", risk_views.lists, name="risk_lists"),
    path("lists/<int:entry_id>/remove/", risk_views.list_remove, name="risk_list_remove"),
    path("orders/<str:order_id>/list/", risk_views.order_list_add, name="order_list_add"),
    path("policy/", risk_views.policies, name="risk_policies"),
    path("policy/draft/", risk_views.policy_draft, name="risk_policy_draft"),
    path("policy/v<int:version>/", risk_views.policy, name="risk_policy"),
    path("policy/v<int:version>/activate/", risk_views.policy_activate, name="risk_policy_activate"),
    path("policy/v<int:version>/backtest/", risk_views.policy_backtest, name="risk_policy_backtest"),
    path("backtests/<int:pk>/", risk_views.backtest, name="risk_backtest"),
    path("backtests/<int:pk>/export.csv", risk_views.backtest_export, name="risk_backtest_csv"),
]
