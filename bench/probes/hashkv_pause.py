# Run by probe.sh (see there).
# Probe: HashKV over N keys (256 B values, each written twice) beside a writer putting at a
# fixed rate on a connection of its own: the writer's put latency (from each put's due time)
# before and during three HashKVs, and how long each HashKV took.
import asyncio, multiprocessing, sys, time, grpc
import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from fixed_rate import channel, pct, writer

BASELINE_SECS = 3.0

async def load(addr, n):
    chans = [grpc.aio.insecure_channel(addr) for _ in range(4)]
    async def part(j):
        kv = rpc.KVStub(chans[j % 4])
        for i in range(j, n, 64):
            await kv.Put(pb.PutRequest(key=b"h/%08d" % i, value=b"x" * 256))
    t = time.time()
    for _ in range(2):
        await asyncio.gather(*[part(j) for j in range(64)])
    print(f"wrote {n} keys twice in {time.time() - t:.1f} s", flush=True)

def main(addr, n):
    asyncio.run(load(addr, n))
    mp = multiprocessing.get_context("spawn")
    stop, out = mp.Event(), mp.Queue()
    wp = mp.Process(target=writer, args=(addr, None, stop, out)); wp.start()
    time.sleep(BASELINE_SECS)
    m = rpc.MaintenanceStub(channel(addr))
    spans = []
    for _ in range(3):
        t0 = time.perf_counter()
        h = m.HashKV(pb.HashKVRequest(), timeout=300)
        spans.append((t0, time.perf_counter()))
        print(f"HashKV {h.hash} at revision {h.header.revision}: {1e3 * (spans[-1][1] - t0):.0f} ms", flush=True)
        time.sleep(0.5)
    time.sleep(0.5)
    stop.set(); lat = out.get(); wp.join()
    base = [l for d, l in lat if d < spans[0][0]]
    during = [l for d, l in lat if any(a <= d <= b for a, b in spans)]
    for name, xs in (("baseline", base), ("during HashKV", during)):
        print(f"writer {name}: {len(xs)} puts, p50 {1e3 * pct(xs, 0.5):.2f} ms, p99 {1e3 * pct(xs, 0.99):.2f} ms, "
              f"max {1e3 * max(xs, default=float('nan')):.2f} ms")

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
