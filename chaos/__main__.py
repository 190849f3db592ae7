"""``python -m chaos --backend local|docker --scenario 1|2|3|4|5|all --duration S --cycles N``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from chaos.deployment import Deployment, DeploymentError
from chaos.runner import MIX, run_chaos
from chaos.services import Tuning


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Inject faults into the running system, then verify that the web consumer "
        "received every event exactly once and that its read model matches. Exit status 1 on any loss.",
    )
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument(
        "--scenario",
        choices=["1", "2", "3", "4", "5", "6", "7", "all", "groups"],
        action="append",
        help="1: consumer down; 2: producer stopped, database down; 3: database killed; "
        "4: consumer SIGKILLed repeatedly; 5: a random mix; 6: the active member of a group of "
        "three SIGKILLed repeatedly; 7: one of three members of a 3-partition group SIGKILLed "
        "repeatedly; groups: 6 and 7; all: 1-4 then 5 (repeatable; default all)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of production per phase")
    parser.add_argument("--cycles", type=int, default=5, help="scenarios in the random mix (5)")
    parser.add_argument("--seed", type=int, help="random seed, to replay a run")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (local backend)")
    parser.add_argument("--log-dir", type=Path, help="keep the services' logs here (local backend)")
    parser.add_argument("--project", default="pgsubscriber", help="compose project name (docker backend)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def scenario_numbers(chosen: list[str] | None) -> list[int]:
    numbers: list[int] = []
    for item in chosen or ["all"]:
        if item == "all":
            numbers.extend([1, 2, 3, 4, MIX])
        elif item == "groups":
            numbers.extend([6, 7])
        else:
            numbers.append(int(item))
    return numbers


def make_deployment(args: argparse.Namespace) -> Deployment:
    if args.backend == "docker":
        from chaos.compose import DockerDeployment

        return DockerDeployment(project=args.project)
    from chaos.local import LocalDeployment

    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    return LocalDeployment(tuning=Tuning(producer_rate=args.rate), log_dir=args.log_dir, fsync_off=True)


def main() -> int:
    args = parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        deployment = make_deployment(args)
    except DeploymentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_chaos(
        deployment,
        scenario_numbers(args.scenario),
        duration=args.duration,
        cycles=args.cycles,
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
