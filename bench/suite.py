"""Run the scenarios on one throwaway cluster, print the table, write the JSON."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.cluster import BenchCluster, machine_info
from bench.context import FULL, QUICK, Context
from bench.report import Result, as_json, header_lines, peer_table, table, write_json
from bench.scenarios import OPT_IN, SCENARIOS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    quick: bool = False
    only: list[str] = field(default_factory=list)
    results_dir: Path = Path("bench/results")
    log_level: int = logging.WARNING
    peer_seconds: float | None = None  # overrides the profile's seconds per peer row


def run_suite(options: Options) -> int:
    """Run the selected scenarios; return 0 when every scenario ran (targets met or not)."""
    profile = QUICK if options.quick else FULL
    if options.peer_seconds is not None:
        profile = replace(profile, peer_seconds=options.peer_seconds)
    names = options.only or [name for name in SCENARIOS if name not in OPT_IN]
    machine = machine_info()
    started_at = datetime.now(UTC)
    started = time.monotonic()
    cluster = BenchCluster()
    failures: list[str] = []
    timings: dict[str, float] = {}
    try:
        cluster.start()
        server = cluster.server_info()
        ctx = Context(cluster=cluster, profile=profile, log_level=options.log_level)
        for name in names:
            logger.info("scenario %s: starting", name)
            scenario_started = time.monotonic()
            try:
                ctx.results.extend(SCENARIOS[name](ctx))
            except Exception as exc:
                logger.error("scenario %s failed: %s", name, exc)
                traceback.print_exc()
                failures.append(name)
                ctx.results.append(Result(name, "", "", None, None, None, "", False, note=f"failed: {exc}"))
                cluster.ensure_running()
            timings[name] = round(time.monotonic() - scenario_started, 1)
            logger.info("scenario %s: done in %.0f s", name, timings[name])
    finally:
        cluster.cleanup()
    total = time.monotonic() - started
    lines = header_lines(
        machine, server, f"{profile.name} (peer rows {profile.peer_seconds:g} s), {total:.0f} s in all"
    )
    print()
    print("\n".join(lines))
    print()
    print(table(ctx.results))
    peers = peer_table(ctx.results)
    if peers:
        print()
        print(peers)
    document = {
        "started_at": started_at.isoformat(),
        "mode": profile.name,
        "total_seconds": round(total, 1),
        "machine": machine,
        "server": server,
        "profile": profile.__dict__,
        "scenario_seconds": timings,
        "results": as_json(ctx.results),
        "table": table(ctx.results),
        "peer_table": peers,
    }
    path = write_json(options.results_dir, document)
    print(f"\nwritten: {path}", file=sys.stderr)
    return 1 if failures else 0
