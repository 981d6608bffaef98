# Run by probe.sh with TLS=1 (see there).
# Probe: a reconnect storm on a TLS client URL (N clients open a connection each at once, as
# they do when a load balancer or an apiserver restarts) beside a writer putting at a fixed
# rate on a connection of its own: the writer's put latency (from each put's due time, so a
# stall is not hidden) before and during the storm, and how long the storm's handshakes took.
import multiprocessing, os, sys, time
import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from fixed_rate import channel, pct, writer

BASELINE_SECS = 5.0
AFTER_SECS = 2.0      # the writer goes on this long after the storm's last answer
STORM_PROCS = 8       # processes opening the storm's connections, n / 8 threads each
# The storm's processes run at nice 19, so that on a small machine the writer's own process gets
# a CPU when it needs one and its latency is the server's, not the load generator's.
STORM_NICE = 19

def one_client(addr, ca):
    t = time.perf_counter()
    ch = channel(addr, ca)
    rpc.KVStub(ch).Range(pb.RangeRequest(key=b"w/warm"), timeout=60)
    ch.close()
    return time.perf_counter() - t

def clients(args):
    # One of the storm's processes: its share of the clients, each on a thread of its own.
    addr, ca, n = args
    if os.getpriority(os.PRIO_PROCESS, 0) < STORM_NICE:
        os.setpriority(os.PRIO_PROCESS, 0, STORM_NICE)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(lambda _: one_client(addr, ca), range(n)))

def main(addr, ca, n):
    mp = multiprocessing.get_context("spawn")
    procs = STORM_PROCS
    with mp.Pool(procs) as pool:
        pool.map(clients, [(addr, ca, 1)] * procs, chunksize=1)  # started and warm before the writer
        stop, out = mp.Event(), mp.Queue()
        wp = mp.Process(target=writer, args=(addr, ca, stop, out)); wp.start()
        time.sleep(BASELINE_SECS)
        t0 = time.perf_counter()
        took = sum(pool.map(clients, [(addr, ca, n // procs)] * procs, chunksize=1), [])
        t1 = time.perf_counter()
        time.sleep(AFTER_SECS)
    stop.set(); lat = out.get(); wp.join()
    base = [l for d, l in lat if d < t0]
    storm = [l for d, l in lat if t0 <= d <= t1]
    print(f"storm: {n} TLS clients connected and answered in {t1 - t0:.2f} s "
          f"(one client p50 {1e3 * pct(took, 0.5):.1f} ms, max {1e3 * max(took):.1f} ms)")
    for name, xs in (("baseline", base), ("during storm", storm)):
        print(f"writer {name}: {len(xs)} puts, p50 {1e3 * pct(xs, 0.5):.2f} ms, p99 {1e3 * pct(xs, 0.99):.2f} ms, "
              f"max {1e3 * max(xs, default=float('nan')):.2f} ms")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
