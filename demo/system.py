"""Run PostgreSQL, the migrations, the producer, the web consumer, MongoDB and the purger until Ctrl-C.

Everything is local and temporary: a throwaway PostgreSQL cluster, an embedded MongoDB-protocol
server unless ``MONGO_URL`` is given, and the same ``python -m ...`` services as docker-compose.yml.
SIGINT or SIGTERM stops the services (producer first), the servers, and deletes every file made.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TextIO

from chaos.deployment import DeploymentError
from chaos.local import LocalDeployment
from chaos.services import DATABASE, MONGO_DATABASE, Tuning

logger = logging.getLogger(__name__)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def banner(deployment: LocalDeployment, mongo_embedded: bool) -> str:
    url = deployment.consumer_url.replace("127.0.0.1", "localhost")
    admin = deployment.admin_dsn.rsplit("/", 1)[0] + f"/{DATABASE}"
    mongo = "embedded MongoDB-protocol server" if mongo_embedded else "MONGO_URL"
    return "\n".join(
        [
            "",
            "pgsubscriber demo is running:",
            f"  courses (read model)  {url}/courses",
            f"  consumer health       {url}/health   metrics: {url}/metrics",
            f"  PostgreSQL            psql {admin}",
            f"  MongoDB ({mongo})  {deployment.mongo_url}  database {MONGO_DATABASE}",
            "Press Ctrl-C to stop; every process and temporary file goes away.",
            "",
        ]
    )


def run_demo(
    *,
    port: int = 1337,
    rate: float = 5.0,
    mongo_url: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Start everything, print where to look, wait for SIGINT/SIGTERM, stop and clean up.

    Returns the exit status: 0 after a requested stop, 1 when a service ended by itself or the
    system could not start.
    """
    if not port_is_free("127.0.0.1", port):
        print(f"error: port {port} is in use; choose another with --port", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    deployment = LocalDeployment(
        http_port=port, tuning=Tuning(producer_rate=rate), mongo_url=mongo_url, forward_output=True
    )
    status = 0
    try:
        started = time.monotonic()
        deployment.up()
        logger.info("started in %.1fs", time.monotonic() - started)
        print(banner(deployment, mongo_embedded=mongo_url is None), file=out, flush=True)
        while not stop.wait(0.5):
            ended = deployment.stopped_services()
            if ended:
                logger.error("%s ended by itself: stopping everything", ", ".join(ended))
                status = 1
                break
    except DeploymentError as exc:
        logger.error("could not start: %s", exc)
        status = 1
    finally:
        deployment.down()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    logger.info("stopped; temporary files removed")
    return status
