# Shared by the probes (see probe.sh): a writer putting at a fixed rate on a connection of its
# own, run in a process of its own, and the percentile of a list.
import time, grpc
import rpc_pb2 as pb, rpc_pb2_grpc as rpc

RATE = 500  # the writer's puts per second

def channel(addr, ca=None):
    if ca is None:
        return grpc.insecure_channel(addr)
    return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read()))

def writer(addr, ca, stop, out):
    """Puts 256 B values at RATE until `stop` is set, then puts [(due time, latency)] on `out`:
    latency counts from each put's due time, so a stall is not hidden by the puts not sent."""
    kv = rpc.KVStub(channel(addr, ca))
    kv.Put(pb.PutRequest(key=b"w/warm", value=b"x"))
    start = time.perf_counter(); lat = []; i = 0
    while not stop.is_set():
        due = start + i / RATE
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        kv.Put(pb.PutRequest(key=b"w/%06d" % (i % 10000), value=b"v" * 256))
        lat.append((due, time.perf_counter() - due)); i += 1
    out.put(lat)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")
