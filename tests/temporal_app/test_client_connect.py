"""The web's client thread connects once, even when its callers give up first (a readiness probe
with a 2 s budget against a server slow to answer): the attempt goes on for the next caller."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from devtools.supervise import free_port

pytestmark = pytest.mark.temporal


class SlowRelay:
    """A TCP relay to the dev server that holds each new connection for ``delay`` seconds before
    passing bytes either way, and counts the connections it was asked for."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target, self.delay, self.connections = (host, int(port)), delay, 0
        self.server = socket.create_server(("127.0.0.1", free_port()))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        time.sleep(self.delay)
        upstream = socket.create_connection(self.target)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.server.close()


@pytest.mark.django_db
def test_a_caller_that_gives_up_leaves_the_connection_attempt_to_the_next(temporal_server, settings):
    from temporal_app.client import TemporalUnavailable, client_thread, temporal_health_check

    relay = SlowRelay(temporal_server, delay=2.5)
    try:
        settings.TEMPORAL_ADDRESS = relay.address
        with pytest.raises(TemporalUnavailable):
            temporal_health_check(1.0)  # gives up while the connection is still being made
        temporal_health_check(5.0)  # the same attempt completes for this caller
        assert relay.connections == 1
        client_thread.run(lambda client: client.service_client.check_health(), timeout=5)
        assert relay.connections == 1  # and is kept
    finally:
        relay.close()
