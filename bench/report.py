"""One row per figure: printed as a table, written as JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Result:
    """One figure of one scenario: the raw baseline, the project, their ratio and the target."""

    scenario: str
    figure: str
    unit: str
    baseline: float | None
    project: float | None
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def rate_ratio(project: float, baseline: float) -> float | None:
    return project / baseline if baseline else None


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("events/s", "rows/s", "jobs/s", "messages/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "% of a core":
        return f"{value:.0f}% of a core"
    if unit == "fetches":
        return f"{value:,.0f} fetches"
    return f"{value:g} {unit}"


def table(results: list[Result]) -> str:
    """A markdown table: readable in a terminal, pasteable into the README."""
    header = ["scenario", "baseline (raw, same run)", "project", "ratio", "target", "met?"]
    rows = []
    for r in results:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        if r.note and r.project is None:
            met = r.note
        rows.append(
            [
                f"{r.scenario}: {r.figure}" if r.figure else r.scenario,
                _number(r.baseline, r.unit),
                _number(r.project, r.unit),
                "-" if r.ratio is None else f"{r.ratio:.2f}",
                r.target,
                met,
            ]
        )
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i]) for i in range(6)
    ]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def peer_table(results: list[Result]) -> str:
    """The peer comparison: one row per system and shape, with what "acknowledged" means there.

    Empty when no peer row ran. "Acknowledged" is the rate the producers got their durable acks
    at, "delivered" the rate the consumer's handler got the events at (the two differ when the
    consumer falls behind). "Ack wait" is a producer's write to its acknowledgement; p50/p99 run
    from the start of that write to the handler call. The ratio is the project's delivered
    events/s at the same shape divided by the system's.
    """
    peers = [r for r in results if "peer" in r.details]
    if not peers:
        return ""
    header = [
        "system",
        "shape",
        "acknowledged means",
        "events/s acknowledged",
        "events/s delivered",
        "ack wait p50",
        "p50",
        "p99",
        "lag trend",
        "project / system",
    ]
    rows = []
    for r in peers:
        d = r.details
        if "skipped" in d:
            rows.append([d["peer"], d["shape"], r.note, "-", "-", "-", "-", "-", "-", "-"])
            continue
        trend = f"{d['lag_growth_events_per_s']:+,.0f} events/s"
        trend += " (growing)" if d["lag_growing"] else " (flat)"
        rows.append(
            [
                d["peer"],
                d["shape"],
                d["acknowledged"],
                _number(d["acknowledged_to_producers_per_s"], "events/s").removesuffix(" events/s"),
                _number(r.baseline, "events/s").removesuffix(" events/s"),
                _number(d.get("ack_wait_p50_ms"), "ms"),
                _number(d["p50_ms"], "ms"),
                _number(d["p99_ms"], "ms"),
                trend,
                "-" if r.ratio is None else f"{r.ratio:.2f}",
            ]
        )
    return _markdown(header, rows)


def header_lines(machine: dict[str, Any], server: dict[str, Any], mode: str) -> list[str]:
    return [
        f"machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}, psycopg {machine['psycopg']}",
        f"server: {server.get('postgresql', '?').split(' on ')[0]}, fsync={server.get('fsync')}, "
        f"synchronous_commit={server.get('synchronous_commit')}, "
        f"shared_buffers={server.get('shared_buffers')}",
        f"mode: {mode}",
    ]


def write_json(results_dir: Path, document: dict[str, Any]) -> Path:
    """Write ``latest.json`` and a timestamped copy; return the path of ``latest.json``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results_dir / f"{stamp}.json").write_text(text)
    latest = results_dir / "latest.json"
    latest.write_text(text)
    return latest


def as_json(results: list[Result]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
