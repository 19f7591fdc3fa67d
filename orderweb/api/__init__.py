"""The orders' HTTP API, version 1 (django-ninja), mounted at ``/api/v1/`` (docs/api.md).

- ``endpoints``: the operations, thin: check the input's shape, call one service or selector;
- ``keys``: API keys (hashed), scopes, the per-key rate limit;
- ``services``: order creation with its idempotency (order id, ``Idempotency-Key``);
- ``selectors``: an order as the API shows it, and the keyset-paged list;
- ``schemas``: requests and responses (amounts are decimal strings, never floats);
- ``errors``: every error is ``{code, message, details}``; ``middleware`` makes sure of it for
  answers that come from outside the API's own code (404 for an unknown path, 405, a NUL).
"""
