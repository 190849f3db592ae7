"""Retention for the events log: ``python -m purger`` deletes events older than their retention.

Deletes in bounded batches, each its own short transaction that also records, per topic, the
greatest id deleted (``events_purge_watermarks``), so a subscriber that falls behind the purger
notices the loss (:class:`~pgsubscriber.EventsPurgedError`) instead of skipping it.
"""

from __future__ import annotations

from purger.policy import RetentionPolicy, parse_duration
from purger.purge import PurgeReport, purge_once
from purger.service import Purger, run
from purger.settings import SAFETY_MINIMUM, PurgerSettings

__all__ = [
    "SAFETY_MINIMUM",
    "PurgeReport",
    "Purger",
    "PurgerSettings",
    "RetentionPolicy",
    "parse_duration",
    "purge_once",
    "run",
]
