"""Run chosen scenarios on a deployment, print the report, and say by the exit status if any failed."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import psycopg
from pymongo.errors import PyMongoError

from chaos.deployment import Deployment, DeploymentError
from chaos.scenarios import Chaos, ScenarioResult, format_report

logger = logging.getLogger(__name__)

MIX = 5
"""Scenario number of the random mix."""


def run_chaos(
    deployment: Deployment,
    scenarios: Sequence[int],
    *,
    duration: float,
    cycles: int = 5,
    seed: int | None = None,
    out: TextIO = sys.stdout,
    before_verify: Callable[[Deployment], None] | None = None,
) -> int:
    """Bring ``deployment`` up, run ``scenarios`` (1-5), bring it down; print the report.

    Returns 0 when every event was received exactly once and the read model matches after every
    scenario, 1 on any loss, duplicate or mismatch, 2 when the deployment could not be run.
    """
    chaos = Chaos(deployment, duration=duration, seed=seed, before_verify=before_verify)
    results: list[ScenarioResult] = []
    try:
        deployment.up()
        for number in scenarios:
            results.extend(chaos.mix(cycles) if number == MIX else [chaos.run(number)])
    except (DeploymentError, psycopg.Error, PyMongoError, OSError) as exc:
        logger.error("the %s deployment failed: %s", deployment.name, exc)
        print(format_report(results, deployment.name), file=out)
        print(f"error: {exc}", file=out)
        return 2
    finally:
        deployment.down()
    print(format_report(results, deployment.name), file=out)
    return 0 if all(r.ok for r in results) else 1
