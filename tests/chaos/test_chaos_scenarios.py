"""The chaos scenarios 1-4, 6 and 7 on the local deployment (the compose services as processes), scaled down.

Each runs real faults (SIGTERM and SIGKILL of ``python -m webconsumer``, ``pg_ctl stop -m fast`` and
``-m immediate``) while ``python -m producer`` publishes, then checks that every "courses" event in
PostgreSQL is in MongoDB exactly once and that the read model is their replay.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from chaos import Chaos, Deployment, format_report, run_chaos
from chaos.local import LocalDeployment
from chaos.services import Tuning
from tests.support.processes import alive

pytestmark = [pytest.mark.chaos, pytest.mark.mongo]

ROOT = Path(__file__).resolve().parents[2]
DURATION = 3.0
TUNING = Tuning(producer_rate=25.0, producer_retry_max_delay=0.5, consumer_reconnect_max_delay=0.5)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    """One local system for the scenarios; everything it started is gone afterwards."""
    deployment = LocalDeployment(tuning=TUNING, log_dir=tmp_path_factory.mktemp("services"), fsync_off=True)
    pids: dict[str, int] = {}
    try:
        deployment.up()
        pids = deployment.pids()
        yield deployment
    finally:
        pids.update(deployment.pids())
        deployment.down()
    assert not [name for name, pid in pids.items() if alive(pid)], "processes left behind"
    assert not deployment.workdir.exists()


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_scenario_receives_every_event_exactly_once(system, number):
    before = system.pids()
    result = Chaos(system, duration=DURATION, seed=number, catch_up_timeout=60).run(number)
    report = format_report([result], system.name)
    print(report)
    assert result.ok, report
    assert result.verification is not None and result.verification.produced > 0, report
    assert result.recoveries and all(r.seconds < 30 for r in result.recoveries), report
    if number in (1, 4):
        assert system.pids()["web_consumer"] != before["web_consumer"], "the consumer was not restarted"
    if number in (2, 3):
        assert system.pids()["postgres"] != before["postgres"], "the database was not restarted"


@pytest.mark.parametrize("number", [6, 7])
def test_group_scenario_receives_every_event_exactly_once(system, number):
    """Three web consumers in a group (one partition, or three): members SIGKILLed repeatedly."""
    result = Chaos(system, duration=DURATION, seed=number, catch_up_timeout=60).run(number)
    report = format_report([result], system.name)
    print(report)
    assert result.ok, report
    assert result.verification is not None and result.verification.produced > 0, report
    failovers = [r for r in result.recoveries if "failover" in r.fault]
    assert len(failovers) >= 2 and all(r.seconds < 30 for r in failovers), report
    assert set(system.pids()) >= {"web_consumer"} and "web_consumer_1" not in system.pids()


def test_the_verification_reports_a_lost_event(tmp_path):
    """A received event deleted before the check: the run fails and the report names the event."""
    lost: list[int] = []

    def lose_one_event(deployment: Deployment) -> None:
        with MongoClient(deployment.mongo_url) as client:
            received = client[deployment.mongo_database]["receivedEvents"]
            ids = sorted(doc["event_id"] for doc in received.find({}, {"event_id": 1}))
            lost.append(ids[len(ids) // 2])
            received.delete_one({"event_id": lost[0]})

    deployment = LocalDeployment(tuning=TUNING, log_dir=tmp_path, fsync_off=True)
    report = tmp_path / "report.txt"
    with report.open("w") as out:
        status = run_chaos(deployment, [1], duration=1.0, out=out, before_verify=lose_one_event)
    text = report.read_text()
    assert status == 1, text
    assert lost, text
    assert f"1 event(s) never received: {lost[0]}" in text
    assert "missing 1" in text and "1 failed" in text
    assert not deployment.workdir.exists()


def test_the_chaos_command_runs_a_scenario_and_prints_the_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos",
            "--backend",
            "local",
            "--scenario",
            "1",
            "--duration",
            "2",
            "--rate",
            "25",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "chaos report (local deployment)" in done.stdout
    assert "duplicates 0, missing 0, read model matches" in done.stdout
    assert "recovered from consumer down in" in done.stdout
    assert "1 scenario(s), 0 failed" in done.stdout
