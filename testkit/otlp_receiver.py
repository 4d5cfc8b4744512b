"""An OTLP/gRPC trace receiver built from the official OpenTelemetry
protocol definitions (PyPI `opentelemetry-proto`, served with `grpcio`).

Listens on 127.0.0.1 (an ephemeral port), prints `{"port": N}` once
serving, then one JSON line per span received: its service, ids, parent,
name, kind and attributes. With `--count`, only `{"received": N}` after
each export, N counting every span so far.
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, count_only):
        self.count_only = count_only
        self.received = 0
        self.lock = threading.Lock()

    def Export(self, request, context):
        if self.count_only:
            spans = sum(
                len(s.spans) for r in request.resource_spans for s in r.scope_spans
            )
            with self.lock:
                self.received += spans
                print(json.dumps({"received": self.received}), flush=True)
            return trace_service_pb2.ExportTraceServiceResponse()
        for resource_spans in request.resource_spans:
            resource = {
                a.key: value_of(a.value) for a in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "service": resource.get("service.name"),
                        "resource": resource,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "attributes": {
                            a.key: value_of(a.value) for a in span.attributes
                        },
                    }
                    with self.lock:
                        print(json.dumps(line), flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    receiver = Receiver(count_only="--count" in sys.argv[1:])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    bound = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": bound}), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
