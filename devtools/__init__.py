"""Dev and test tooling: the Temporal dev server, the embedded Postgres, process supervision,
the chaos run and the benchmarks.

Runtime code (``orderweb``, ``reviews``, ``temporal_app``) never imports this package; the only
exception is ``orderweb.settings``, which imports ``devtools.localdb`` lazily, when
``DATABASE_URL`` is unset. It is a Django app only so that its management commands
(``chaos``, ``bench_orders``, ``bench_review_queue``, ``record_histories``) are found.
Importing the package itself must not import Django: ``scripts/run_system.py`` uses it before
any settings exist.
"""
