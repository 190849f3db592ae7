from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from pgsubscriber import Event
from pgsubscriber.events import trusted_event


def test_a_trusted_event_is_the_same_object_as_a_validated_one():
    fields = {
        "id": 7,
        "topic": "courses",
        "payload": {"a": [1, 2]},
        "created_at": datetime.now(UTC),
        "key": "k",
        "raw_payload": None,
    }
    fast, checked = trusted_event(**fields), Event(**fields)
    assert fast == checked and repr(fast) == repr(checked)
    assert fast.model_dump() == checked.model_dump() == fields
    assert fast.model_fields_set == checked.model_fields_set
    with pytest.raises(pydantic.ValidationError):
        fast.id = 8  # frozen like any Event
