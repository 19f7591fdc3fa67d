"""Outcome labels (issue 21): how an order turned out after the decision (``OrderLabel``: a
chargeback, a confirmed fraud, a customer confirmed genuine), the timeline's event types for
setting and removing one, and the API keys' ``label`` scope. A new, empty table and a column with
a constant default: nothing is rewritten or locked for long."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orderweb", "0013_api_fingerprints_keyed_and_idempotency_expiry"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scope_label",
            field=models.BooleanField(default=False, verbose_name="set outcome labels"),
        ),
        migrations.AlterField(
            model_name="orderevent",
            name="type",
            field=models.CharField(
                choices=[
                    ("order_created", "Order created"),
                    ("status_changed", "Status changed"),
                    ("review_approved", "Review approved"),
                    ("payment_charged", "Payment charged"),
                    ("payment_refunded", "Payment refunded"),
                    ("dispatch_failed", "Dispatch failed"),
                    ("carrier_dispatched", "Dispatched to the carrier"),
                    ("order_completed", "Order completed"),
                    ("order_cancelled", "Order cancelled"),
                    ("order_failed", "Order failed"),
                    ("signal_applied", "Signal applied"),
                    ("signal_refused", "Signal refused"),
                    ("update_applied", "Update applied"),
                    ("update_refused", "Update refused"),
                    ("temporal_cancel_requested", "Cancel requested in Temporal"),
                    ("cancel_requested", "Cancellation requested"),
                    ("cancel_refused", "Cancellation refused"),
                    ("cancel_unanswered", "Cancellation not confirmed"),
                    ("address_change_requested", "Address change requested"),
                    ("address_change_refused", "Address change refused"),
                    ("address_change_unanswered", "Address change not confirmed"),
                    ("shipping_retry_requested", "Shipping retry requested"),
                    ("shipping_retry_refused", "Shipping retry refused"),
                    ("shipping_retry_unanswered", "Shipping retry not confirmed"),
                    ("review_decision_requested", "Decision sent"),
                    ("review_decision_refused", "Decision refused"),
                    ("review_decision_unanswered", "Decision not confirmed"),
                    ("review_claimed", "Review claimed"),
                    ("review_released", "Review released"),
                    ("review_escalated", "Escalated to the review leads"),
                    ("review_partly_approved", "Approved, 1 of 2"),
                    ("review_claim_extended", "Claim extended"),
                    ("review_claim_lapsed", "Claim lapsed"),
                    ("review_reassigned", "Review reassigned"),
                    ("note_added", "Note"),
                    ("label_added", "Label set"),
                    ("label_removed", "Label removed"),
                    ("attention_flagged", "Flagged for staff"),
                ],
                max_length=64,
            ),
        ),
        migrations.CreateModel(
            name="OrderLabel",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "label",
                    models.CharField(
                        choices=[
                            ("chargeback", "Chargeback"),
                            ("fraud_confirmed", "Fraud confirmed"),
                            ("genuine_confirmed", "Genuine confirmed"),
                        ],
                        max_length=32,
                    ),
                ),
                ("note", models.TextField(blank=True)),
                ("source_reference", models.CharField(blank=True, max_length=200)),
                ("actor", models.CharField(max_length=150)),
                (
                    "source",
                    models.CharField(
                        choices=[("admin", "Admin"), ("review", "Review UI"), ("api", "API")], max_length=16
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("removed_at", models.DateTimeField(blank=True, null=True)),
                ("removed_by", models.CharField(blank=True, max_length=150)),
                (
                    "order",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="labels", to="orderweb.order"
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "pk"],
                "indexes": [models.Index(fields=["label", "created_at"], name="order_label_kind_time")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("removed_at__isnull", True)),
                        fields=("order", "label"),
                        name="order_label_active_once",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("label__in", ["chargeback", "fraud_confirmed", "genuine_confirmed"])),
                        name="order_label_kind_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("source__in", ["admin", "review", "api"])), name="order_label_source_valid"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("removed_at__isnull", True), ("removed_by", "")),
                            models.Q(("removed_at__isnull", False), models.Q(("removed_by", ""), _negated=True)),
                            _connector="OR",
                        ),
                        name="order_label_removal_has_actor",
                    ),
                ],
            },
        ),
    ]
