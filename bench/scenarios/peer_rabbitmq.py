"""What teams pick instead: RabbitMQ, when ``RABBITMQ_URL`` points at a server (skipped otherwise).

The same shape as the end-to-end scenario: as many producer processes as there, publishing the
same payloads as persistent messages to a durable queue with publisher confirms (pika's blocking
connection waits for each confirm), and one consumer that acks every message. The ratio is the
project's end-to-end events/s (measured earlier in this run) divided by RabbitMQ's delivered
messages/s.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import orjson

from bench.context import Context
from bench.payloads import payload
from bench.processes import CTX
from bench.report import Result

logger = logging.getLogger(__name__)

PREFETCH = 500


def rabbit_producer_main(
    url: str, queue_name: str, slot: int, seconds: float, counts: Any, barrier: Any
) -> None:
    """Child entry point: publish persistent messages with confirms for ``seconds``."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    properties = pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
    )
    seq = slot * 1_000_000_000
    barrier.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seq += 1
        channel.basic_publish("", queue_name, orjson.dumps(payload(seq)), properties, mandatory=True)
        counts[slot] += 1
    connection.close()


def rabbit_consumer_main(url: str, queue_name: str, delivered: Any, ready: Any, stop: Any) -> None:
    """Child entry point: consume with manual acks, decode each message, count."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        orjson.loads(body)
        ch.basic_ack(method.delivery_tag)
        delivered.value += 1

    channel.basic_consume(queue_name, on_message)
    ready.set()
    while not stop.is_set():
        connection.process_data_events(time_limit=0.1)
    connection.close()


def run(ctx: Context) -> list[Result]:
    url = os.environ.get("RABBITMQ_URL")
    label = "peer: RabbitMQ end to end"
    if not url:
        return [
            Result(
                label,
                "",
                "messages/s",
                None,
                None,
                None,
                "report it",
                None,
                note="skipped: RABBITMQ_URL not set",
            )
        ]
    import pika

    p = ctx.profile
    producers = p.end_to_end_producers
    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = pika.BlockingConnection(pika.URLParameters(url))
    channel = admin.channel()
    channel.queue_declare(queue_name, durable=True)
    try:
        counts = CTX.Array("q", producers, lock=False)
        delivered = CTX.Value("q", 0, lock=False)
        barrier, ready, stop = CTX.Barrier(producers + 1), CTX.Event(), CTX.Event()
        consumer = CTX.Process(
            target=rabbit_consumer_main,
            args=(url, queue_name, delivered, ready, stop),
            name="rabbit-consumer",
            daemon=True,
        )
        consumer.start()
        if not ready.wait(60):
            raise RuntimeError("the RabbitMQ consumer did not start")
        procs = [
            CTX.Process(
                target=rabbit_producer_main,
                args=(url, queue_name, slot, p.peer_seconds, counts, barrier),
                name=f"rabbit-producer-{slot}",
                daemon=True,
            )
            for slot in range(producers)
        ]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=60)
        time.sleep(p.peer_seconds)
        consumed = delivered.value
        for proc in procs:
            proc.join(60)
        confirmed = int(sum(counts))
        stop.set()
        consumer.join(30)
    finally:
        channel.queue_delete(queue_name)
        admin.close()
    rate = consumed / p.peer_seconds
    end_to_end = ctx.figure("end to end", f"{p.end_to_end_producers} producers, {p.end_to_end_seconds:g} s")
    project = end_to_end.project if end_to_end else None
    logger.info("RabbitMQ: confirmed %.0f/s, delivered %.0f/s", confirmed / p.peer_seconds, rate)
    return [
        Result(
            scenario=label,
            figure=f"{producers} producers, confirms, acks",
            unit="events/s",
            baseline=rate,
            project=project,
            ratio=project / rate if project and rate else None,
            target="report it",
            met=None,
            note="" if project else "project end-to-end not run",
            details={
                "seconds": p.peer_seconds,
                "producers": producers,
                "confirmed_per_s": confirmed / p.peer_seconds,
                "delivered_per_s": rate,
                "confirm_mode": "one confirm awaited per message (pika BlockingConnection)",
                "prefetch": PREFETCH,
            },
        )
    ]
