"""The suite's own MongoDB-protocol server (``mongod`` on PATH, else nx-27017) and a fresh database.

``mongo`` gives each test its own database on one shared server; ``own_mongo`` gives a test a
server of its own, for tests that stop or kill it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from webconsumer.embedded_mongo import EmbeddedMongo

_counter = itertools.count()


@dataclass
class MongoTarget:
    """A database on a running server."""

    server: EmbeddedMongo
    name: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> MongoClient[dict[str, Any]]:
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        return MongoClient(self.url, tz_aware=True, **kwargs)


@contextlib.contextmanager
def _running_mongo() -> Iterator[EmbeddedMongo]:
    server = EmbeddedMongo()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[EmbeddedMongo]:
    with _running_mongo() as server:
        yield server


@pytest.fixture
def mongo(mongo_server: EmbeddedMongo) -> Iterator[MongoTarget]:
    target = MongoTarget(mongo_server, f"consumer_{os.getpid()}_{next(_counter)}")
    yield target
    with target.client() as client:
        client.drop_database(target.name)


@pytest.fixture
def own_mongo() -> Iterator[EmbeddedMongo]:
    """A server of the test's own, for tests that stop or kill it."""
    with _running_mongo() as server:
        yield server


@pytest.fixture
def mongo_db(mongo: MongoTarget) -> Iterator[Database[dict[str, Any]]]:
    """A pymongo handle on the test's database."""
    with mongo.client() as client:
        yield client[mongo.name]
