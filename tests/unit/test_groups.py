"""Consumer group configuration and the partition function (no server)."""

from __future__ import annotations

import pytest

from pgsubscriber import ConfigurationError, GroupMember, SubscriberSettings, partition_of
from pgsubscriber._lease import group_id, lock_key
from tests.support.handlers import RecordingHandler

DSN = "postgresql://localhost/app"


def test_partitions_need_a_group():
    with pytest.raises(ConfigurationError, match="partitions needs a group"):
        SubscriberSettings(dsn=DSN, topics=["courses"], partitions=3)


def test_the_lease_timeout_leaves_room_for_the_checks():
    with pytest.raises(ConfigurationError, match="group_lease_timeout"):
        SubscriberSettings(dsn=DSN, topics=["courses"], group="g", group_lease_timeout=3, heartbeat_timeout=5)


def test_a_group_of_several_partitions_needs_a_handler_per_partition():
    settings = SubscriberSettings(dsn=DSN, topics=["courses"], group="g", partitions=2)
    with pytest.raises(ConfigurationError, match="factory"):
        GroupMember(RecordingHandler(), settings)
    GroupMember(lambda partition: RecordingHandler(), settings)


def test_a_group_member_needs_a_group():
    with pytest.raises(ConfigurationError, match="group"):
        GroupMember(RecordingHandler(), SubscriberSettings(dsn=DSN, topics=["courses"]))


def test_a_standby_reports_its_role_before_it_runs():
    st = GroupMember(RecordingHandler(), SubscriberSettings(dsn=DSN, topics=["courses"], group="g")).status
    assert (st.group, st.role, st.partitions_owned, st.partitions) == ("g", "standby", [], 1)
    assert st.mode == "disconnected" and not st.connected


def test_partitions_spread_ids_and_keep_a_key_in_one_place():
    assert [partition_of(None, i, 3) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert partition_of("course-7", 1, 4) == partition_of("course-7", 999, 4)
    # md5("course-7") starts with bee1a4dd; the SQL side computes the same (integration test).
    assert partition_of("course-7", 1, 1000) == int("bee1a4dd", 16) % 1000
    with pytest.raises(ValueError):
        partition_of("k", 1, 0)


def test_lock_keys_never_meet_the_writers_or_listeners_keys():
    key = lock_key("web_consumer", 1024, 1024)
    assert 0 <= group_id("any name") < 2**31 and key < 2**63
    assert key >> 32 == group_id("web_consumer")
