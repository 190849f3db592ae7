"""What every scenario receives: the cluster, the durations of this run, the results so far."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.cluster import BenchCluster
from bench.report import Result


@dataclass(frozen=True)
class Profile:
    """Durations and sizes. ``FULL`` stays under 10 minutes on 2 cores, with a margin for a slow
    day (the three 1,000,000-event loads alone moved from about 220 to 290 s between two runs);
    ``QUICK`` under 2."""

    name: str
    publish_seconds: float
    single_producers: tuple[int, ...]
    batch_producers: int
    batch_size: int
    end_to_end_seconds: float
    end_to_end_producers: int
    latency_rate: float
    latency_seconds: float
    backlog: int
    recovery_rounds: int
    purge_rows: int
    peer_seconds: float  # per row of the peer comparison (7 systems x 2 shapes)
    peer_drain_seconds: float  # at most, after the producers stop, for the last events to arrive
    topics_backlog: int
    topics_many_backlog: int
    topics_seconds: float


FULL = Profile(
    name="full",
    publish_seconds=6.0,
    single_producers=(1, 4, 8),
    batch_producers=4,
    batch_size=100,
    end_to_end_seconds=60.0,
    end_to_end_producers=4,
    latency_rate=200.0,
    latency_seconds=10.0,
    backlog=1_000_000,
    recovery_rounds=3,
    purge_rows=1_000_000,
    peer_seconds=3.0,
    peer_drain_seconds=2.0,
    topics_backlog=1_000_000,
    topics_many_backlog=10_000,
    topics_seconds=15.0,
)

# A smoke run under 2 minutes on 2 cores: every scenario once, at the smallest size that still
# exercises it (one producer count for the single-event rows, 1 s per peer row).
QUICK = Profile(
    name="quick",
    publish_seconds=1.0,
    single_producers=(4,),
    batch_producers=4,
    batch_size=100,
    end_to_end_seconds=5.0,
    end_to_end_producers=4,
    latency_rate=200.0,
    latency_seconds=2.0,
    backlog=50_000,
    recovery_rounds=1,
    purge_rows=50_000,
    peer_seconds=1.0,
    peer_drain_seconds=0.5,
    topics_backlog=100_000,
    topics_many_backlog=1_000,
    topics_seconds=3.0,
)


@dataclass
class Context:
    cluster: BenchCluster
    profile: Profile
    log_level: int
    results: list[Result] = field(default_factory=list)

    def figure(self, scenario: str, figure: str) -> Result | None:
        """A result measured earlier in this run (e.g. the end-to-end rate for the peer ratios)."""
        for result in self.results:
            if result.scenario == scenario and result.figure == figure:
                return result
        return None
