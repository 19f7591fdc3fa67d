"""The order system's contracts: names, states, inputs, refusal codes and the input rules.

Imported by workflow code, by outside Temporal clients and by Django code, so it stays pure:
standard library only, no Django, no I/O. Renaming a registered name (task queues, signals,
updates, activities, search attributes, states) breaks clients that integrate with the workflows.

No ``from __future__ import annotations`` here: the SDK turns every payload into these
dataclasses with ``typing.get_type_hints``, which compiles string annotations again on each call
(about 5 % of a loaded worker's time, by py-spy; docs/benchmarks.md).
"""

# The contracts live in three parts, by concern; this module is the one every caller imports
# (``from temporal_app.contracts import X``: workflows, activities, Django code, outside clients,
# migrations), so it re-exports each part's public names:
#   contracts_names.py     task queues, search attributes, states, activity/signal/update names,
#                          actors, error types, refusal codes and messages, the input limits
#   contracts_payloads.py  the dataclasses (inputs and outputs), workflow ids
#   contracts_rules.py     the input rules (order id, address, amount, lines, customer details)
# The workflow sandbox passes all four through (temporal_app/worker.py) and the build id covers
# all four (temporal_app/versioning.py). A new name goes into its part; nothing to add here.
from temporal_app.contracts_names import *  # noqa: F403 -- the re-export described above
from temporal_app.contracts_payloads import *  # noqa: F403 -- the re-export described above
from temporal_app.contracts_rules import *  # noqa: F403 -- the re-export described above
