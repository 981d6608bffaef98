# Run by probe.sh (see there).
# Probe: N idle single-key watchers, then closed-loop puts on other keys; puts/s and p50/p99.
import asyncio, sys, time, grpc
import rpc_pb2 as pb, rpc_pb2_grpc as rpc

async def main(addr, n, secs, conc):
    ch_w = grpc.aio.insecure_channel(addr)
    q = asyncio.Queue()
    async def reqs():
        for i in range(n):
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"idle/%08d" % i))
        while True:
            await asyncio.sleep(3600)
            yield pb.WatchRequest(progress_request=pb.WatchProgressRequest())
    created = 0
    async def watch():
        nonlocal created
        async for r in rpc.WatchStub(ch_w).Watch(reqs()):
            if r.created: created += 1
    wt = asyncio.create_task(watch())
    t0 = time.time()
    while created < n and time.time() - t0 < 120:
        await asyncio.sleep(0.1)
    print(f"created {created} in {time.time()-t0:.1f}s", flush=True)
    chans = [grpc.aio.insecure_channel(addr) for _ in range(4)]
    lat = []; stop = time.time() + secs
    async def putter(j):
        kv = rpc.KVStub(chans[j % 4]); i = 0
        while time.time() < stop:
            t = time.perf_counter()
            await kv.Put(pb.PutRequest(key=b"load/%d/%d" % (j, i % 100), value=b"x" * 256))
            lat.append(time.perf_counter() - t); i += 1
    t1 = time.time()
    await asyncio.gather(*[putter(j) for j in range(conc)])
    el = time.time() - t1
    lat.sort()
    print(f"watchers {n}: {len(lat)/el:.0f} puts/s p50 {lat[len(lat)//2]*1000:.2f} ms p99 {lat[int(len(lat)*.99)]*1000:.2f} ms", flush=True)
    wt.cancel()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
