"""Run PostgreSQL, the migrations, the producer, the web consumer, MongoDB and the purger until Ctrl-C.

Everything is local and temporary: a throwaway PostgreSQL cluster, an embedded MongoDB-protocol
server unless ``MONGO_URL`` is given, and the same ``python -m ...`` services as docker-compose.yml.
It prints the variables of the README's examples (``export`` lines to paste in another terminal).
Enter pauses the producer and says when the web consumer has received every event, so counts can
be compared; Enter again resumes it. SIGINT or SIGTERM stops the services (producer first), the
servers, and deletes every file made. A start that fails removes the same and says why in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import shlex
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any, TextIO

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from chaos.deployment import DeploymentError
from chaos.local import LocalDeployment
from chaos.services import MONGO_DATABASE, Tuning
from chaos.verify import latest_produced_id, latest_received_id

logger = logging.getLogger(__name__)

#: Longest wait, after the producer paused, for the web consumer to receive the last event.
CATCH_UP_TIMEOUT = 30.0


def port_is_free(host: str, port: int) -> bool:
    """Whether the web consumer can listen on ``port``.

    Bound as uvicorn binds, with SO_REUSEADDR: connections of a previous run still in TIME_WAIT
    do not make the port "in use", a server listening on it does.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def environment(deployment: LocalDeployment) -> dict[str, str]:
    """The variables the README's examples read, pointing at this deployment."""
    return {
        "PGSUBSCRIBER_DSN": deployment.events_dsn,
        "PRODUCER_DSN": deployment.producer_dsn,
        "DATABASE_URL": deployment.admin_dsn,
        "MONGO_URL": deployment.mongo_url,
    }


def banner(deployment: LocalDeployment, mongo_embedded: bool, keys: bool = True) -> str:
    url = deployment.consumer_url.replace("127.0.0.1", "localhost")
    mongo = "embedded MongoDB-protocol server" if mongo_embedded else "MONGO_URL"
    pause = ["Press Enter to pause the producer (to compare counts), Enter again to resume."] if keys else []
    return "\n".join(
        [
            "",
            "pgsubscriber demo is running:",
            f"  courses (read model)  {url}/courses",
            f"  consumer health       {url}/health   metrics: {url}/metrics",
            f"  stream dashboard      {url}/dashboard/   (or: pgsubscriber status --watch)",
            f"  PostgreSQL            psql {deployment.admin_dsn}",
            f"  MongoDB ({mongo})  {deployment.mongo_url}  database {MONGO_DATABASE}",
            "",
            "Paste these lines in another terminal; the README's examples then run there as written:",
            "",
            *(f"export {name}={shlex.quote(value)}" for name, value in environment(deployment).items()),
            "",
            *pause,
            "Press Ctrl-C to stop; every process and temporary file goes away.",
            "",
        ]
    )


def one_line(exc: BaseException) -> str:
    """The first line of an error, with its kind unless it is a deployment error."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if isinstance(exc, DeploymentError) and text:
        return text.rstrip(":")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class KeyPresses:
    """Counts the Enter presses on standard input, in a thread that ends with ``stop``.

    It reads the file descriptor itself (no buffered stream whose lock a reader would hold at
    exit), and only while in the terminal's foreground: a background job that reads its terminal
    is stopped by SIGTTIN. Standard input at its end (``/dev/null``) simply gives no presses.
    """

    def __init__(self, fd: int, stop: threading.Event) -> None:
        self.fd, self.stop = fd, stop
        self._presses: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._read, name="demo-keys", daemon=True)

    def start(self) -> KeyPresses:
        self._thread.start()
        return self

    def take(self) -> int:
        """The presses since the last call."""
        count = 0
        with contextlib.suppress(queue.Empty):
            while True:
                self._presses.get_nowait()
                count += 1
        return count

    def _in_background(self) -> bool:
        try:
            return os.isatty(self.fd) and os.tcgetpgrp(self.fd) != os.getpgrp()
        except OSError:
            return False

    def _read(self) -> None:
        while not self.stop.is_set():
            if self._in_background():
                self.stop.wait(0.5)
                continue
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                data = os.read(self.fd, 1024) if ready else None
            except OSError:
                return
            if data == b"":
                return  # end of input
            for _ in range((data or b"").count(b"\n")):
                self._presses.put(None)


def pause_producer(deployment: LocalDeployment, stop: threading.Event, out: TextIO) -> None:
    """Stop the producer, then wait until the web consumer has received its last event."""
    deployment.stop_producer()
    newest = latest_produced_id(deployment.admin_dsn)
    print(f"producer paused after event {newest}; waiting for the web consumer ...", file=out, flush=True)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    position = 0
    client: MongoClient[dict[str, Any]]
    with MongoClient(deployment.mongo_url, serverSelectionTimeoutMS=2000) as client:
        while not stop.is_set():
            with contextlib.suppress(PyMongoError):
                position = latest_received_id(client, deployment.mongo_database)
            if position >= newest:
                print(
                    f"the web consumer has received every event (the newest is {newest}): "
                    "compare the counts now; Enter resumes the producer",
                    file=out,
                    flush=True,
                )
                return
            if time.monotonic() > deadline:
                print(
                    f"the web consumer has received events up to {position} of {newest} after "
                    f"{CATCH_UP_TIMEOUT:.0f}s: see {deployment.consumer_url}/health",
                    file=out,
                    flush=True,
                )
                return
            stop.wait(0.05)


def run_demo(
    *,
    port: int = 1337,
    rate: float = 5.0,
    mongo_url: str | None = None,
    out: TextIO = sys.stdout,
    keys: int | None = None,
) -> int:
    """Start everything, print where to look, wait for SIGINT/SIGTERM, stop and clean up.

    ``keys`` is the file descriptor whose Enter presses pause and resume the producer (None: none).
    Returns the exit status: 0 after a requested stop, 1 when the system could not start or a
    service ended by itself; either way every process it started has ended and its files are gone.
    """
    if not port_is_free("127.0.0.1", port):
        print(f"error: port {port} is in use; choose another with --port", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    deployment: LocalDeployment | None = None
    status = 0
    try:
        started = time.monotonic()
        try:
            deployment = LocalDeployment(
                http_port=port, tuning=Tuning(producer_rate=rate), mongo_url=mongo_url, forward_output=True
            )
            deployment.up()
        except Exception as exc:  # whatever it was, say it in one line; the traceback is at DEBUG
            logger.debug("the demo could not start", exc_info=True)
            if stop.is_set():
                print("stopped before the demo was running", file=sys.stderr)
            else:
                print(f"error: could not start the demo: {one_line(exc)}", file=sys.stderr)
                status = 1
            return status
        logger.info("started in %.1fs", time.monotonic() - started)
        presses = KeyPresses(keys, stop).start() if keys is not None else None
        print(banner(deployment, mongo_url is None, keys=presses is not None), file=out, flush=True)
        paused = False
        while not stop.wait(0.2):
            ended = [name for name in deployment.stopped_services() if not (paused and name == "producer")]
            if ended:
                described = ", ".join(
                    f"{name} (exit status {deployment.services[name].exit_status()})" for name in ended
                )
                print(f"error: {described} ended by itself; stopping everything", file=sys.stderr)
                status = 1
                break
            for _ in range(presses.take() if presses else 0):
                paused = not paused
                if paused:
                    try:
                        pause_producer(deployment, stop, out)
                    except Exception as exc:
                        print(f"error: could not pause the producer: {one_line(exc)}", file=sys.stderr)
                else:
                    deployment.start_producer()
                    print("producer resumed", file=out, flush=True)
    finally:
        stop.set()
        if deployment is not None:
            deployment.down()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logger.info("stopped; temporary files removed")
    return status
