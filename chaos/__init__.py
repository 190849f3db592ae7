"""Chaos scenarios against the whole system, run as local processes or as the docker compose project.

``python -m chaos --backend local --scenario all --duration 10`` (see ``python -m chaos --help``).
"""

from chaos.deployment import Deployment, DeploymentError, StopMode
from chaos.runner import run_chaos
from chaos.scenarios import Chaos, Recovery, ScenarioResult, format_report
from chaos.verify import Verification, verify

__all__ = [
    "Chaos",
    "Deployment",
    "DeploymentError",
    "Recovery",
    "ScenarioResult",
    "StopMode",
    "Verification",
    "format_report",
    "run_chaos",
    "verify",
]
