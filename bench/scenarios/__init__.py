"""The scenarios, in the order they run. Each measures its raw baseline first, then the project."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Context
from bench.report import Result
from bench.scenarios import (
    catch_up,
    dead_connection,
    end_to_end,
    gap_free_cost,
    groups,
    latency,
    peers,
    publish,
    purge,
    recovery,
    registry_cost,
    topics,
)

Scenario = Callable[[Context], list[Result]]

SCENARIOS: dict[str, Scenario] = {
    "publish-single": publish.run_single,
    "publish-batch": publish.run_batch,
    "end-to-end": end_to_end.run,
    "latency": latency.run,
    "catch-up": catch_up.run,
    "recovery": recovery.run,
    "dead-connection": dead_connection.run,
    "purge": purge.run,
    "gap-free-cost": gap_free_cost.run,
    "topics": topics.run,
    "peers": peers.run,
    "registry-cost": registry_cost.run,
    "groups": groups.run,
}

SCENARIO_NAMES = list(SCENARIOS)

#: Run only when named with ``--only``: each takes minutes of its own, and the default run keeps
#: under 10 minutes on 2 cores.
OPT_IN = frozenset({"registry-cost", "groups"})
