"""A stand-in OpenTelemetry collector for benchmarks: accepts OTLP/HTTP trace exports and counts
the spans, so that tracing can be measured on this machine with its real cost (the spans built,
batched, encoded and sent over HTTP) and without a collector to install.

    python -m devtools.otlp_sink PORT     # then OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT

Prints one line when stopped (SIGINT or SIGTERM): the requests and spans it received.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0


def handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = ExportTraceServiceRequest.FromString(body)
            spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
            with counts.lock:
                counts.requests += 1
                counts.spans += spans
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    return Handler


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else 4318
    counts = Counts()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(counts))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"OTLP/HTTP sink on http://127.0.0.1:{port}", flush=True)
    stop.wait()
    server.shutdown()
    print(f"received {counts.spans} spans in {counts.requests} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
