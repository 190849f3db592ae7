"""The live web view of a stream (``pgsubscriber dashboard``; needs the ``web`` extra)."""

from __future__ import annotations

from pgsubscriber.dashboard.app import create_app

__all__ = ["create_app"]
