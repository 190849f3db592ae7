"""Publishing events: ``publish`` / ``publish_many`` inside the caller's own transaction."""

from producer.publish import NewEvent, publish, publish_many

__all__ = ["NewEvent", "publish", "publish_many"]
