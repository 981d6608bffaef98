"""etcd3gw (OpenStack's etcd client, which speaks only the JSON gateway) against a server:
a lease with keys, a lock, a watch. Usage: etcd3gw_client.py HOST PORT. Exits non-zero on
the first failed check; every wait is bounded."""
import sys
import threading

import etcd3gw


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    c = etcd3gw.client(host=host, port=port, timeout=10)

    check(c.api_path == "/v3/", f"api path {c.api_path}")
    check(c.status()["version"], "status has a version")
    check(len(c.members()) == 1, "one member")

    # Plain keys.
    check(c.put("greeting", "hello"), "put")
    check(c.get("greeting") == [b"hello"], f"get: {c.get('greeting')}")
    check(c.create("greeting", "again") is False, "create of an existing key fails")
    check(c.replace("greeting", "hello", "bye"), "replace")
    check(c.get("greeting") == [b"bye"], "replaced value")

    # A lease with keys.
    lease = c.lease(ttl=60)
    check(lease.id > 0, "lease id")
    check(c.put("leased/a", "1", lease=lease), "put with lease")
    check(c.put("leased/b", "2", lease=lease), "put with lease")
    check(sorted(lease.keys()) == [b"leased/a", b"leased/b"], f"lease keys: {lease.keys()}")
    check(0 < lease.ttl() <= 60, f"ttl {lease.ttl()}")
    check(lease.refresh() == 60, "refresh")
    check(sorted(v for v, _ in c.get_prefix("leased/")) == [b"1", b"2"], "prefix get")
    check(lease.revoke(), "revoke")
    check(c.get_prefix("leased/") == [], "keys gone with the lease")

    # A lock (etcd3gw's: a txn creating the key with a lease; a try-lock): a second holder
    # is refused while the first holds it, and gets it once released.
    first = c.lock("printer", ttl=30)
    check(first.acquire(), "acquire")
    check(first.is_acquired(), "acquired")
    second = c.lock("printer", ttl=30)
    check(not second.acquire(), "a second holder is refused")
    check(first.release(), "release")
    check(not first.is_acquired(), "released")
    check(second.acquire(), "the second holder acquires")
    check(second.refresh() == 30, "lock lease refreshed")
    check(second.release(), "second release")

    # A watch: events arrive in order, then cancel.
    events, cancel = c.watch_prefix("watched/")
    received = []

    def consume():
        for event in events:
            received.append(event)
            if event.get("type") == "DELETE" or len(received) >= 100:
                break

    t = threading.Thread(target=consume)
    t.start()
    # The watch is created asynchronously; put until the first event arrives (bounded).
    for i in range(50):
        c.put("watched/x", str(i))
        t.join(0.1)
        if received:
            break
    c.put("watched/y", "y")
    c.delete("watched/y")
    t.join(10.0)
    cancel()
    check(len(received) >= 3, f"three events: {received}")
    check(received[-2]["kv"]["key"] == b"watched/y", f"put event: {received[-2]}")
    check(received[-1].get("type") == "DELETE", f"delete event: {received[-1]}")
    print("ok")


if __name__ == "__main__":
    main()
