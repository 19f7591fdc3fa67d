"""The review team (issue 20): the audit event types of escalations, first approvals, claims that
lapse, are extended or reassigned, and notes; the permission to add notes to orders."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orderweb", "0009_webhook_delivery_plural"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="order",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    ("cancel_order", "Can cancel orders"),
                    ("change_order_address", "Can change an order's shipping address"),
                    ("retry_shipping", "Can retry a failed shipment"),
                    ("decode_payloads", "Can see decrypted workflow payloads"),
                    ("add_order_note", "Can add notes to orders"),
                ],
            },
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
                    ("attention_flagged", "Flagged for staff"),
                ],
                max_length=64,
            ),
        ),
    ]
