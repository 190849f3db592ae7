"""The events schema this version of pgsubscriber needs."""

from __future__ import annotations

#: The newest migration in ``pgsubscriber/migrations`` the library relies on; a subscriber refuses to start
#: on an older schema and names the migrations missing. A test keeps this equal to the newest
#: migration file.
SCHEMA_VERSION = 8

#: The prefix of every topic's NOTIFY channel (``events_channel(topic)`` in SQL).
CHANNEL_PREFIX = "events:"
