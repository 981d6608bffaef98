# Run by probe.sh (see there).
# Probe: a watcher far behind (from revision 2 over N revisions) is caught up while a reader
# does serial gets: time to catch up, and the reader's p50/p99/max latency meanwhile.
import asyncio, multiprocessing, sys, time, grpc
import rpc_pb2 as pb, rpc_pb2_grpc as rpc

# The reader runs in a process of its own: in the watcher's event loop, its gets would wait
# while python decodes the watch's large answers, which is the client's time, not the server's.
def reader(addr, stop, out):
    async def run():
        kv = rpc.KVStub(grpc.aio.insecure_channel(addr)); lat = []
        while not stop.is_set():
            t = time.perf_counter(); await kv.Range(pb.RangeRequest(key=b"h/0001")); lat.append(time.perf_counter() - t)
            await asyncio.sleep(0.002)
        out.put(lat)
    asyncio.run(run())

async def main(addr, n):
    chans = [grpc.aio.insecure_channel(addr) for _ in range(4)]
    async def writer(j, count):
        kv = rpc.KVStub(chans[j % 4])
        for i in range(count):
            await kv.Put(pb.PutRequest(key=b"h/%04d" % ((j * 7919 + i) % 1000), value=b"x" * 100))
    t = time.time()
    await asyncio.gather(*[writer(j, n // 64) for j in range(64)])
    print(f"wrote {n} revisions in {time.time()-t:.1f}s", flush=True)
    await asyncio.sleep(1)
    mp = multiprocessing.get_context("spawn")  # grpc's channels above do not survive a fork
    stop, out = mp.Event(), mp.Queue()
    rp = mp.Process(target=reader, args=(addr, stop, out)); rp.start()
    await asyncio.sleep(1)
    async def reqs():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"h/", range_end=b"h0", start_revision=2))
        await asyncio.sleep(3600)
    t = time.time(); got = 0; want = (n // 64) * 64
    stream = rpc.WatchStub(grpc.aio.insecure_channel(addr, options=[("grpc.max_receive_message_length", 1 << 30)])).Watch(reqs())
    async for r in stream:
        got += len(r.events)
        if got >= want: break
    el = time.time() - t
    stop.set(); lat = sorted(out.get()); rp.join()
    print(f"caught up {got} events in {el:.2f}s; reader gets {len(lat)}: p50 {lat[len(lat)//2]*1000:.2f} ms p99 {lat[int(len(lat)*.99)]*1000:.2f} ms max {lat[-1]*1000:.1f} ms", flush=True)
    stream.cancel()

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
