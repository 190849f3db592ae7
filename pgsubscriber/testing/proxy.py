"""A TCP proxy that can cut connections or silently blackhole them (no error, no close)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType

from pgsubscriber.testing.postgres import free_port


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.blackholed = False
        self.hide_closes = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until told otherwise.

    * :meth:`blackhole` - the connections open now stop forwarding in both directions; bytes are
      read and dropped, so peers see neither an error nor a close. New connections work.
    * :meth:`partition` - blackhole every open and new connection, and pass no close on (a real
      network partition); :meth:`heal` ends it for new connections.
    * :meth:`cut` - close every open connection at once.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._partitioned = False
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)

    def start(self) -> FaultyProxy:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                link.hide_closes = link.blackholed = self._partitioned
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), name="proxy-pump", daemon=True).start()

    def _pump(self, link: _Link) -> None:
        peers = {link.client: link.upstream, link.upstream: link.client}
        try:
            while not link.closed and not self._stopping.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        if link.blackholed and link.hide_closes and len(peers) > 1:
                            del peers[sock]  # the other end stays open, and learns nothing
                            continue
                        link.close()
                        return
                    if not link.blackholed:
                        peers[sock].sendall(data)
        except OSError:
            link.close()

    def blackhole(self) -> int:
        """Silently stop forwarding on every open connection; return how many."""
        with self._lock:
            live = [link for link in self._links if not link.closed]
            for link in live:
                link.blackholed = True
            return len(live)

    def partition(self) -> int:
        """A network partition: every open connection and every new one is blackholed, and an end
        that closes its socket is not closed on the other side either (neither end learns
        anything). Returns how many connections were open. :meth:`heal` ends it for new ones."""
        with self._lock:
            self._partitioned = True
            live = [link for link in self._links if not link.closed]
            for link in live:
                link.hide_closes = link.blackholed = True
            return len(live)

    def heal(self) -> None:
        """New connections are forwarded again (those open during the partition stay silent)."""
        with self._lock:
            self._partitioned = False

    def cut(self) -> int:
        """Close every open connection; return how many."""
        with self._lock:
            live = [link for link in self._links if not link.closed]
            for link in live:
                link.close()
            return len(live)

    def connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed and not link.blackholed)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        self._acceptor.join(timeout=2)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
