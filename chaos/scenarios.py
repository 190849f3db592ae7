"""The chaos scenarios, written once against :class:`~chaos.deployment.Deployment`.

1. the consumer is down for a while, then started;
2. the producer stops, the database is down for a while, the database starts, the producer starts;
3. the database is killed abruptly while the producer and the consumer run;
4. the consumer is killed with SIGKILL repeatedly, at random moments;
5. a random mix of 1-4, for a number of cycles;
6. a group of one partition, three web consumers: the active one is killed with SIGKILL repeatedly
   (and started again, as a standby);
7. a group of three partitions, three web consumers: one of them, drawn at random, is killed with
   SIGKILL repeatedly (and started again).

In 6 and 7 the failover time is from the kill until the group has received an event produced after
it (a standby took over and caught up).

After each scenario the producer stops, the consumer catches up, and :func:`chaos.verify.verify`
compares what it received with PostgreSQL.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.deployment import Deployment
from chaos.verify import Verification, latest_produced_id, verify, wait_until_received

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """One fault and how long the consumer took, from the repair, to receive what was produced."""

    fault: str
    seconds: float


@dataclass
class ScenarioResult:
    number: int
    title: str
    recoveries: list[Recovery] = field(default_factory=list)
    verification: Verification | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.verification is not None and self.verification.ok


class Chaos:
    """Runs scenarios on one deployment; ``duration`` scales every phase (seconds of production)."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        duration: float = 10.0,
        seed: int | None = None,
        catch_up_timeout: float | None = None,
        before_verify: Callable[[Deployment], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.duration = duration
        self.random = random.Random(seed)
        self.catch_up_timeout = catch_up_timeout or max(60.0, 6 * duration)
        self.before_verify = before_verify
        self._result: ScenarioResult | None = None
        self.scenarios: dict[int, tuple[str, Callable[[], None]]] = {
            1: ("consumer down for a while, then started", self.consumer_down),
            2: ("producer stopped, database down, database started, producer started", self.database_down),
            3: ("database killed abruptly while producer and consumer run", self.database_killed),
            4: ("consumer killed with SIGKILL repeatedly at random moments", self.consumer_killed),
        }
        #: Consumer groups: not in the random mix (each replaces the web consumer for its duration).
        self.group_scenarios: dict[int, tuple[str, Callable[[], None]]] = {
            6: (
                "group of one partition: the active member killed with SIGKILL repeatedly",
                self.active_killed,
            ),
            7: (
                "group of three partitions: one of three members killed with SIGKILL repeatedly",
                self.member_killed,
            ),
        }

    # Running and checking ------------------------------------------------------------------
    def run(self, number: int) -> ScenarioResult:
        """Run scenario ``number`` (1-4, 6, 7), then wait for the consumer and verify."""
        title, body = {**self.scenarios, **self.group_scenarios}[number]
        result = self._result = ScenarioResult(number, title)
        started = time.monotonic()
        logger.info("scenario %d: %s", number, title)
        try:
            self.deployment.start_producer()
            body()
            self.deployment.stop_producer()
            target = latest_produced_id(self.deployment.events_dsn)
            wait_until_received(
                self.deployment.mongo_url, self.deployment.mongo_database, target, self.catch_up_timeout
            )
            if self.before_verify is not None:
                self.before_verify(self.deployment)
            result.verification = verify(
                self.deployment.events_dsn, self.deployment.mongo_url, self.deployment.mongo_database
            )
        except TimeoutError as exc:
            result.error = str(exc)
            self.deployment.stop_producer()
            result.verification = verify(
                self.deployment.events_dsn, self.deployment.mongo_url, self.deployment.mongo_database
            )
        finally:
            result.seconds = time.monotonic() - started
            self._result = None
        return result

    def mix(self, cycles: int) -> list[ScenarioResult]:
        """Scenario 5: ``cycles`` scenarios drawn at random from 1-4."""
        results = []
        for cycle in range(1, cycles + 1):
            result = self.run(self.random.choice(sorted(self.scenarios)))
            result.title = f"(mix {cycle}/{cycles}) {result.title}"
            results.append(result)
        return results

    def run_for(self, seconds: float) -> None:
        """Let the system work (the producer produces) for ``seconds``."""
        time.sleep(seconds)

    def produced(self) -> int:
        """The greatest "courses" id produced so far."""
        return latest_produced_id(self.deployment.events_dsn, timeout=self.catch_up_timeout)

    def recovered(self, fault: str, since: float, beyond: int) -> None:
        """Wait until an event newer than ``beyond`` (the last before the fault) is produced and the
        consumer has every event up to it; record the seconds from ``since`` (the repair)."""
        deadline = time.monotonic() + self.catch_up_timeout
        target = self.produced()
        while target <= beyond:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event produced after {fault} within {self.catch_up_timeout:.0f}s")
            time.sleep(0.05)
            target = self.produced()
        wait_until_received(
            self.deployment.mongo_url, self.deployment.mongo_database, target, self.catch_up_timeout
        )
        seconds = time.monotonic() - since
        logger.info("recovered from %s in %.1fs (event %d received)", fault, seconds, target)
        assert self._result is not None
        self._result.recoveries.append(Recovery(fault, seconds))

    # The scenarios -------------------------------------------------------------------------
    def consumer_down(self) -> None:
        d = self.deployment
        self.run_for(self.duration / 2)
        d.stop_consumer()
        before = self.produced()
        self.run_for(self.duration)
        repaired = time.monotonic()
        d.start_consumer()
        self.recovered("consumer down", repaired, before)
        self.run_for(self.duration / 2)

    def database_down(self) -> None:
        d = self.deployment
        self.run_for(self.duration / 2)
        d.stop_producer()
        before = self.produced()
        d.stop_db("fast")
        self.run_for(self.duration / 2)
        repaired = time.monotonic()
        d.start_db()
        d.start_producer()
        self.recovered("database down (clean stop)", repaired, before)
        self.run_for(self.duration / 2)

    def database_killed(self) -> None:
        d = self.deployment
        self.run_for(self.duration / 2)
        before = self.produced()
        d.stop_db("immediate")
        self.run_for(min(2.0, self.duration / 4))
        repaired = time.monotonic()
        d.start_db()
        self.recovered("database killed", repaired, before)
        self.run_for(self.duration / 4)

    def consumer_killed(self) -> None:
        d = self.deployment
        kills = max(2, round(self.duration / 2))
        for n in range(1, kills + 1):
            self.run_for(self.random.uniform(0.1, self.duration / kills))
            before = self.produced()
            d.kill_consumer(signal.SIGKILL)
            repaired = time.monotonic()
            d.start_consumer()
            self.recovered(f"consumer SIGKILL #{n}", repaired, before)

    def _group_kills(self, partitions: int, pick: Callable[[list[int]], int]) -> None:
        d = self.deployment
        members = 3
        d.start_group(members, partitions)
        try:
            self.run_for(self.duration / 4)
            kills = max(2, round(self.duration / 2))
            for n in range(1, kills + 1):
                self.run_for(self.random.uniform(0.5, max(0.5, self.duration / kills)))
                active = [i for i in range(members) if _owns_partitions(d.member_health(i))]
                victim = pick(active or list(range(members)))
                before = self.produced()
                killed = time.monotonic()
                d.kill_member(victim, signal.SIGKILL)
                self.recovered(f"member {victim} SIGKILL #{n} (failover)", killed, before)
                d.start_member(victim)
            self.run_for(self.duration / 4)
            self.deployment.stop_producer()
            wait_until_received(d.mongo_url, d.mongo_database, self.produced(), self.catch_up_timeout)
        finally:
            d.end_group()

    def active_killed(self) -> None:
        self._group_kills(1, lambda active: active[0])

    def member_killed(self) -> None:
        self._group_kills(3, self.random.choice)


def _owns_partitions(health: dict[str, object] | None) -> bool:
    group = health.get("group") if health else None
    return isinstance(group, dict) and bool(group.get("partitions_owned"))


def format_report(results: list[ScenarioResult], deployment: str) -> str:
    """The short report: per scenario the counts, the problems and the recovery times."""
    lines = [f"chaos report ({deployment} deployment)"]
    for r in results:
        status = "OK" if r.ok else "FAILED"
        lines.append(f"scenario {r.number}: {r.title} [{status}, {r.seconds:.1f}s]")
        v = r.verification
        if v is not None:
            model = "DIFFERS" if v.read_model_differences else "matches"
            lines.append(
                f"  events produced {v.produced}, received {v.received}, duplicates {v.duplicates}, "
                f"missing {len(v.missing)}, read model {model}"
            )
            lines.extend(f"  problem: {p}" for p in v.problems())
        for rec in r.recoveries:
            lines.append(f"  recovered from {rec.fault} in {rec.seconds:.1f}s")
        if r.error:
            lines.append(f"  error: {r.error}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results)} scenario(s), {failed} failed")
    return "\n".join(lines)
