"""The chaos run (``python manage.py chaos``): many orders through the real system while it is
being broken, then an audit. See docs/reliability.md."""
