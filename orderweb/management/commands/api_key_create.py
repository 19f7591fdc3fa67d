"""python manage.py api_key_create NAME [--scope create|read|act|label ...] [--rate-limit N]

Creates an API key for a client of the HTTP API (docs/api.md) and prints it once: the key
itself is alone on the last line, so a script can take it with ``| tail -n 1``. Only its hash
is stored; a lost key is revoked in the admin and replaced with a new one.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from orderweb.api.keys import api_key_create
from orderweb.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key and print it (alone on the last line); it is shown only once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="The client's name (the actor in the audit trail), unique.")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiKey.Scope.values,
            dest="scopes",
            help="create, read, act or label; repeat for several (default: read).",
        )
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            help="Requests per minute for this key (default: API_RATE_LIMIT_PER_MINUTE).",
        )

    def handle(self, *args, name: str, scopes: list[str] | None, rate_limit: int | None, **options) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be 1 or more.")
        try:
            row, key = api_key_create(name=name, scopes=scopes or [ApiKey.Scope.READ], rate_limit_per_minute=rate_limit)
        except ValidationError as err:
            raise CommandError(err.messages[0]) from None
        self.stdout.write(f"API key {row.name!r} created (scopes: {', '.join(row.scopes)}; prefix {row.prefix}).")
        self.stdout.write("Copy it now: it is not stored and cannot be shown again.")
        self.stdout.write(key)
