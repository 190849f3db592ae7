"""RabbitMQ in the peer comparison: a durable quorum queue (AMQP 0-9-1) and a stream.

Queue: persistent messages to a durable quorum queue on an aio-pika channel in publisher-confirm
mode; shape 1/commit awaits each message's confirm before the next publish, shape 100/commit
publishes a window of 100 and awaits all 100 confirms. A quorum queue confirms once the message is
in its Raft log, fsynced. The consumer (pika, prefetch 1000) acks each message after the handler
call.

Stream (rstream, the stream protocol on port 5552, plugin ``rabbitmq_stream``): shape 1/commit
awaits each message's confirm (``send_wait``), shape 100/commit sends 100 in one publish frame and
awaits the 100 confirms. A stream does not fsync: a confirm means written to the file (the OS page
cache) and, in a cluster, replicated. The consumer stores its offset on the server
(``store_offset``, kept in the stream itself) every 100 messages handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from bench.peering import PeerUnavailable, Shape, Sink

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_STREAM_URL = "rabbitmq-stream://guest:guest@127.0.0.1:5552/"
PREFETCH = 1000
STREAM_CREDIT = 10  # chunks in flight (rstream's default)
STORE_OFFSET_EVERY = 100  # messages handled between two stored offsets


def amqp_url() -> str:
    return os.environ.get("RABBITMQ_URL", DEFAULT_URL)


def stream_url() -> str:
    return os.environ.get("RABBITMQ_STREAM_URL", DEFAULT_STREAM_URL)


class _QueueProducer:
    def __init__(self, connection: Any, channel: Any, queue: str) -> None:
        self._connection = connection
        self._exchange = channel.default_exchange
        self._queue = queue

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        import aio_pika

        messages = [
            aio_pika.Message(
                orjson.dumps(p),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
            )
            for p in payloads
        ]
        if len(messages) == 1:
            await self._exchange.publish(messages[0], routing_key=self._queue)
        else:
            await asyncio.gather(*(self._exchange.publish(m, routing_key=self._queue) for m in messages))

    async def close(self) -> None:
        await self._connection.close()


@dataclass(frozen=True)
class RabbitQueuePeer:
    url: str = field(default_factory=amqp_url)
    queue: str = field(default_factory=lambda: f"bench-peer-{uuid.uuid4().hex[:8]}")
    queue_type: str = "quorum"

    @property
    def name(self) -> str:
        return f"RabbitMQ {self.queue_type} queue"

    def acknowledged(self, shape: Shape) -> str:
        unit = "each message's confirm" if shape.batch == 1 else "the 100 confirms of the window"
        return (
            f"producer: {unit} (quorum queue: in the Raft log, fsynced); consumer: basic.ack per "
            "message after the handler (no reply; the queue drops the message, logged and fsynced "
            "in batches)"
        )

    async def _connect(self) -> Any:
        try:
            import aio_pika
        except ImportError as exc:
            raise PeerUnavailable("aio-pika not installed (pip install -e '.[bench]')") from exc
        try:
            return await asyncio.wait_for(aio_pika.connect(self.url), 10)
        except Exception as exc:
            raise PeerUnavailable(f"RabbitMQ does not answer at RABBITMQ_URL ({exc})") from exc

    async def setup(self) -> dict[str, Any]:
        connection = await self._connect()
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(self.queue, durable=True, arguments={"x-queue-type": self.queue_type})
            server = connection.transport.connection.server_properties if connection.transport else {}
        version = server.get("version", b"?")
        return {
            "rabbitmq": version.decode() if isinstance(version, bytes) else str(version),
            "queue_type": self.queue_type,
            "prefetch": PREFETCH,
            "fsync": "quorum queue: Raft log fsynced before the confirm",
        }

    async def teardown(self) -> None:
        with contextlib.suppress(PeerUnavailable):
            connection = await self._connect()
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(self.queue)

    async def producer(self, shape: Shape) -> _QueueProducer:
        connection = await self._connect()
        channel = await connection.channel(publisher_confirms=True)
        return _QueueProducer(connection, channel, self.queue)

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        # pika's blocking consumer, in a thread: aio-pika starts a task per delivered message, which
        # made the consumer, not the queue, the limit on 2 shared cores.
        stopping = threading.Event()
        consumer = asyncio.ensure_future(asyncio.to_thread(self._consume_blocking, sink, stopping))
        await asyncio.wait([consumer, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED")
        stopping.set()
        await consumer

    def _consume_blocking(self, sink: Sink, stopping: threading.Event) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=PREFETCH)

            def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
                sink.received([orjson.loads(body)])
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(self.queue, on_message)
            sink.ready()
            while not stopping.is_set():
                connection.process_data_events(time_limit=0.1)
        finally:
            connection.close()


def _stream_endpoint(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5552,
        "username": unquote(parts.username or "guest"),
        "password": unquote(parts.password or "guest"),
    }


class _ConfirmWindow:
    """Resolves once ``count`` confirms arrived (rstream calls back once per message)."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self, status: Any) -> None:
        if not status.is_confirmed and not self.done.done():
            self.done.set_exception(RuntimeError(f"stream publish not confirmed: {status}"))
            return
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class _StreamProducer:
    def __init__(self, producer: Any, stream: str) -> None:
        self._producer = producer
        self._stream = stream

    async def send(self, payloads: Sequence[dict[str, Any]]) -> None:
        bodies = [orjson.dumps(p) for p in payloads]
        if len(bodies) == 1:
            await self._producer.send_wait(self._stream, bodies[0])
            return
        window = _ConfirmWindow(len(bodies))
        await self._producer.send_batch(self._stream, bodies, on_publish_confirm=window)
        await asyncio.wait_for(window.done, 30)

    async def close(self) -> None:
        await self._producer.close()


@dataclass(frozen=True)
class RabbitStreamPeer:
    url: str = field(default_factory=stream_url)
    stream: str = field(default_factory=lambda: f"bench-peer-{uuid.uuid4().hex[:8]}")

    @property
    def name(self) -> str:
        return "RabbitMQ stream"

    def acknowledged(self, shape: Shape) -> str:
        unit = "each message's confirm" if shape.batch == 1 else "the 100 confirms of one publish frame"
        return (
            f"producer: {unit} (written to the stream's file, not fsynced: streams rely on "
            "replication); consumer: offset stored on the server (store_offset) every 100 messages handled"
        )

    async def _producer(self) -> Any:
        try:
            import rstream
        except ImportError as exc:
            raise PeerUnavailable("rstream not installed (pip install -e '.[bench]')") from exc
        producer = rstream.Producer(**_stream_endpoint(self.url))
        try:
            await asyncio.wait_for(producer.start(), 10)
        except Exception as exc:
            raise PeerUnavailable(
                f"no RabbitMQ stream port at RABBITMQ_STREAM_URL ({exc!r}); "
                "enable it with `rabbitmq-plugins enable rabbitmq_stream`"
            ) from exc
        return producer

    async def setup(self) -> dict[str, Any]:
        producer = await self._producer()
        try:
            await producer.create_stream(self.stream, exists_ok=True)
        finally:
            await producer.close()
        import rstream

        return {
            "client": f"rstream {getattr(rstream, '__version__', '')}".strip(),
            "fsync": "none (streams write to the OS page cache; safety comes from replication)",
            "store_offset_every": STORE_OFFSET_EVERY,
        }

    async def teardown(self) -> None:
        with contextlib.suppress(PeerUnavailable):
            producer = await self._producer()
            try:
                await producer.delete_stream(self.stream, missing_ok=True)
            finally:
                await producer.close()

    async def producer(self, shape: Shape) -> _StreamProducer:
        return _StreamProducer(await self._producer(), self.stream)

    async def consume(self, shape: Shape, sink: Sink, stop: asyncio.Event) -> None:
        import rstream

        consumer = rstream.Consumer(**_stream_endpoint(self.url))
        await consumer.start()
        name = "bench"
        handled = 0
        last_offset = -1

        async def on_message(body: bytes, context: Any) -> None:
            nonlocal handled, last_offset
            sink.received([orjson.loads(body)])
            handled += 1
            last_offset = context.offset
            if handled % STORE_OFFSET_EVERY == 0:
                await consumer.store_offset(self.stream, name, context.offset)

        await consumer.subscribe(
            self.stream,
            on_message,
            offset_specification=rstream.ConsumerOffsetSpecification(rstream.OffsetType.FIRST, None),
            subscriber_name=name,
            initial_credit=STREAM_CREDIT,
        )
        sink.ready()
        await stop.wait()
        if last_offset >= 0:
            await consumer.store_offset(self.stream, name, last_offset)
        await consumer.close()
