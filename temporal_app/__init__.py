"""Temporal side of the order system: workflows (Django-free), activities, workers, client.

Importing this package must not import Django: outside clients import
``temporal_app.workflows`` without any Django settings.
"""
