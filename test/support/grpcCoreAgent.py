# An agent served by gRPC's C-core (python3-grpcio), a gRPC implementation other than the
# grpc-js the SDK uses: the interop check of the proxy's own node:http2 gRPC client
# (test/agents/GrpcInterop.test.ts). Its stubs are generated from proto/ by the test.
#
#   python3 grpcCoreAgent.py STUB_DIR [PORT]      (PORT 0 or none: a free one)
#
# Prints one JSON object per line: {"event":"listening","port":N}, then what it received.
# Decisions, from the request's headers:
#   x-block: STATUS [x-block-size: N]  block with STATUS and a body of N bytes ("b"), default 16
#   otherwise                          allow; sets x-core-agent on the request to the origin and
#                                      adds x-core-agent-response to the response
# A request body event is answered allow, with x-core-body-bytes (its size) set upstream.
import json
import sys
import time
from concurrent import futures

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import zentinel_agent_v2_pb2 as pb  # noqa: E402
import zentinel_agent_v2_pb2_grpc as rpc  # noqa: E402


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def header(ev, name):
    for h in ev.headers:
        if h.name.lower() == name:
            return h.value
    return None


class Agent(rpc.AgentServiceV2Servicer):
    def ProcessStream(self, messages, context):
        for m in messages:
            kind = m.WhichOneof("message")
            if kind == "handshake":
                say(event="handshake", versions=list(m.handshake.supported_versions), proxy_id=m.handshake.proxy_id)
                caps = pb.AgentCapabilities(protocol_version=2, agent_id="core", name="grpc-core-agent", version="1",
                                            supported_events=[1, 2])
                yield pb.AgentToProxy(handshake=pb.HandshakeResponse(protocol_version=2, capabilities=caps, success=True))
            elif kind == "request_headers":
                ev = m.request_headers
                cid = ev.metadata.correlation_id
                say(event="request_headers", uri=ev.uri, method=ev.method, correlation_id=cid)
                status = header(ev, "x-block")
                if status is not None:
                    size = int(header(ev, "x-block-size") or "16")
                    d = pb.AgentResponse(correlation_id=cid, block=pb.BlockDecision(status=int(status), body="b" * size))
                else:
                    d = pb.AgentResponse(
                        correlation_id=cid,
                        allow=pb.AllowDecision(),
                        request_headers=[pb.HeaderOp(set=pb.Header(name="x-core-agent", value="seen " + ev.uri))],
                        response_headers=[pb.HeaderOp(add=pb.Header(name="x-core-agent-response", value="1"))],
                    )
                yield pb.AgentToProxy(response=d)
            elif kind == "request_body_chunk":
                ev = m.request_body_chunk
                say(event="request_body_chunk", size=len(ev.data), is_last=ev.is_last)
                ops = [pb.HeaderOp(set=pb.Header(name="x-core-body-bytes", value=str(len(ev.data))))]
                yield pb.AgentToProxy(response=pb.AgentResponse(correlation_id=ev.correlation_id, allow=pb.AllowDecision(), request_headers=ops))
            elif kind == "ping":
                yield pb.AgentToProxy(pong=pb.Pong(sequence=m.ping.sequence, ping_timestamp_ms=m.ping.timestamp_ms,
                                                   timestamp_ms=int(time.time() * 1000)))
            else:
                say(event="other", kind=kind)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
rpc.add_AgentServiceV2Servicer_to_server(Agent(), server)
port = server.add_insecure_port("127.0.0.1:" + (sys.argv[2] if len(sys.argv) > 2 else "0"))
server.start()
say(event="listening", port=port)
server.wait_for_termination()
