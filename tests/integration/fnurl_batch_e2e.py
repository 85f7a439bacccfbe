"""Per-route micro-batching end to end (issue 20, part 2; docs/http.md "Batching"): the real
gateway, executor and build pipeline, python functions that take {"v":1,"batch":[...]}.

- `bat-*` answers {"v":1,"responses":[...]} echoing each request's body, with the batch's size
  and its number of distinct x-tenant-id values as response headers, and leaves out any
  request whose body starts with "fail-". Its URL batches by header:x-tenant-id (20 ms,
  32 at most). 1,000 concurrent requests over 10 tenants: every caller gets its own body back,
  from a batch of one tenant only, of at most 32; the one failing request alone gets 502
  batch_item_missing; the gateway's metrics count far fewer invokes than requests.
- `bst-*` is a generator: it yields one response record per request, 0.3 s apart. Three
  requests in one batch: each gets its own answer as its record is yielded (record-level
  streaming), the first long before the last.

Needs the function URL path (fnurl) and PUT /functions/{fn}/url (urlcfg). Prints ok/not ok."""
import base64, http.client, os, selectors, socket, sys, threading, time, uuid

from mlstack import Suite, jcall, jerr, scrape

BASE = int(os.environ.get("ML_PORT_BASE", "30000"))
# below the ephemeral range (32768+: a client socket could hold a port there), clear of the other tests
PORTS = {"gateway": BASE + 2320, "lambda-executor": BASE + 2321, "build-master": BASE + 2322,
         "build-worker": BASE + 2332}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
N, TENANTS, MAX_BATCH, FAIL_AT = 1000, 10, 32, 437
# The function's own budget counts every URL request; its concurrency (default 10) every batch
# invoke in flight, and 1,000 requests at once make dozens of batches at once.
UNLIMITED = {"rps": 100000, "burst": 100000}
S = Suite("test-fnurl-batch", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
    "MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS": "200",
    # one client IP sends all 1,000: the public URL's per-IP budget must not be what is tested
    "MINILAMBDA_FNURL_IP_RPS": "1000000", "MINILAMBDA_FNURL_IP_BURST": "1000000"})
ECHO = '''def handler(event, context):
    items = event.get("batch") or []
    tenants = {(i.get("headers") or {}).get("x-tenant-id") for i in items}
    out = []
    for i in items:
        body = i.get("body") or ""
        if body.startswith("fail-"):
            continue
        out.append({"id": i["id"], "statusCode": 200, "body": body,
                    "headers": {"content-type": "text/plain", "x-batch-size": str(len(items)),
                                "x-batch-tenants": str(len(tenants))}})
    return {"v": 1, "responses": out}
'''
STREAM = '''import time
def handler(event, context):
    batch = event.get("batch") or []
    for n, i in enumerate(batch):
        if n:
            time.sleep(0.3)
        yield {"id": i["id"], "statusCode": 200, "headers": {"content-type": "text/plain"},
               "body": "%s|%s|%d" % (i.get("body") or "", batch[0]["id"], n)}
'''


def post(path, body, headers=None, timeout=30, conn=None):
    """(status, lower-cased headers, body bytes, seconds) of one POST to the gateway (on conn,
    a connection opened beforehand, when given)."""
    t0 = time.time()
    c = conn or http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=timeout)
    try:
        c.request("POST", path, body=body, headers=dict({"Content-Type": "text/plain"}, **(headers or {})))
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), time.time() - t0
    except OSError as e:
        return None, {}, repr(e).encode(), time.time() - t0
    finally:
        c.close()


def concurrently(n, fn):
    """fn(i, conn) for i in [0, n) on n threads, each with its connection to the gateway
    already open, released together; the results in order."""
    out, gate = [None] * n, threading.Barrier(n)

    def run(i):
        conn = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=30)
        try:
            conn.connect()
            gate.wait(30)
        except (OSError, threading.BrokenBarrierError):
            pass
        out[i] = fn(i, conn)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def burst(path, bodies, headers_of, timeout=30):
    """Every request at once: all connections opened first, then every request written in
    one pass (a few ms for all: a thread per request would spread them over a second), then
    the answers read as they come. [(status, lower-cased headers, body, 0)] in order."""
    socks, sel = [], selectors.DefaultSelector()
    for _ in bodies:
        socks.append(socket.create_connection(("127.0.0.1", PORTS["gateway"]), timeout=timeout))
    for i, (s, body) in enumerate(zip(socks, bodies)):
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers_of(i).items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{extra}"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    got, out, end = [b""] * len(bodies), [None] * len(bodies), time.time() + timeout
    while sel.get_map() and time.time() < end:
        for key, _ in sel.select(1):
            i, chunk = key.data, key.fileobj.recv(65536)
            got[i] += chunk
            if not chunk:  # Connection: close: the answer is whole
                sel.unregister(key.fileobj)
                key.fileobj.close()
    for i, raw in enumerate(got):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        try:
            status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            status = None
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        out[i] = (status, hdrs, body, 0)
    for s in socks:
        s.close()
    return out


def thousand(fn, run):
    before, _ = scrape(S.url("gateway"))
    t0 = time.time()
    bodies = [("fail-" if i == FAIL_AT else "") + f"{run}-{i}" for i in range(N)]
    res = burst(f"/fn/{fn}", [b.encode() for b in bodies], lambda i: {"X-Tenant-Id": f"t{i % TENANTS}"})
    took = time.time() - t0
    after, lint = scrape(S.url("gateway"))
    wrong = [(i, r[0], r[2][:120]) for i, r in enumerate(res) if i != FAIL_AT and
             (r[0] != 200 or r[2].decode(errors="replace") != bodies[i])]
    S.check(f"{N} concurrent requests, {TENANTS} keys: each caller gets its own answer", not wrong,
            f"{len(wrong)} wrong, e.g. {wrong[:3]}")
    st, _, b, _ = res[FAIL_AT]
    S.check("the item the function left out fails alone: 502 batch_item_missing JSON",
            st == 502 and jerr(b).get("code") == "batch_item_missing", (st, b[:200]))
    sizes = [int(r[1].get("x-batch-size", 0)) for r in res if r[0] == 200]
    mixed = [r[1].get("x-batch-tenants") for r in res if r[0] == 200 and r[1].get("x-batch-tenants") != "1"]
    S.check("every batch held one tenant's requests only (the key)", not mixed, mixed[:5])
    S.check(f"no batch over max_batch_size {MAX_BATCH}", sizes and max(sizes) <= MAX_BATCH, max(sizes or [0]))
    invokes = after.get("minilambda_gateway_batch_size_count", 0) - before.get("minilambda_gateway_batch_size_count", 0)
    items = after.get("minilambda_gateway_batch_size_sum", 0) - before.get("minilambda_gateway_batch_size_sum", 0)
    S.check("batched: the metrics count every request once, in far fewer invokes",
            items == N and 0 < invokes <= N / 4, (invokes, items))
    S.check("gateway /metrics passes promtool", lint[0] == 200 and lint[1] == 0, lint)
    print(f"# {N} requests in {invokes:.0f} invokes ({invokes / N:.3f} per request), {took:.1f} s; "
          f"mean batch {sum(sizes) / max(len(sizes), 1):.1f}", flush=True)


def streamed(fn, run):
    """6 requests, batches of 3 at most: the gateway's loops each batch their own requests, so
    at least one batch holds 2 or more; in each, the records come 0.3 s apart and so must the
    answers."""
    bodies = [f"{run}-s{i}" for i in range(6)]
    res = concurrently(6, lambda i, c: post(f"/fn/{fn}", bodies[i].encode(), conn=c))
    parts = [r[2].decode(errors="replace").split("|") for r in res]
    S.check("streamed batch: each caller gets its own record",
            all(r[0] == 200 for r in res) and [p[0] for p in parts] == bodies, [(r[0], r[2][:80]) for r in res])
    batches = {}
    for r, p in zip(res, parts):
        if len(p) == 3:
            batches.setdefault(p[1], []).append((int(p[2]), r[3]))
    spread = [(max(b)[0], max(b)[1] - min(b)[1]) for b in batches.values() if len(b) >= 2]
    S.check("record-level: in a batch each caller is answered as its record is yielded (0.3 s apart)",
            spread and all(gap >= 0.3 * last - 0.1 for last, gap in spread), (spread, sorted(batches.values())))


def main():
    run = uuid.uuid4().hex[:8]
    t0 = time.time()
    try:
        auth = S.start_platform("batch")
        echo, stream = f"bat-{run}", f"bst-{run}"
        states = {}
        ts = [threading.Thread(target=lambda n=n, code=code: states.__setitem__(
                  n, (S.deploy(n, {"app.py": code}, timeout_s=10, rate_limit=UNLIMITED,
                                   concurrency=200) or {}).get("state")))
              for n, code in ((echo, ECHO), (stream, STREAM))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if not S.check("functions deployed", all(v == "active" for v in states.values()), states):
            return
        print(f"# deployed after {time.time() - t0:.1f} s", flush=True)
        gw = S.url("gateway")
        st, b = jcall(gw, "PUT", f"/functions/{echo}/url", auth,
                      {"auth": "NONE", "batching": {"max_wait_ms": 20, "max_batch_size": MAX_BATCH,
                                                    "key": ["header:x-tenant-id"], "dynamic": False}})
        S.check("PUT /functions/{fn}/url with batching by tenant", st in (200, 201), (st, b))
        st, b = jcall(gw, "PUT", f"/functions/{stream}/url", auth,
                      {"auth": "NONE", "batching": {"max_wait_ms": 200, "max_batch_size": 3}})
        S.check("PUT /functions/{fn}/url with batching (streaming function)", st in (200, 201), (st, b))
        time.sleep(0.3)  # past the gateway's function cache TTL
        st, h, b, _ = post(f"/fn/{echo}", b"warm", {"X-Tenant-Id": "t0"})
        S.check("one request alone: its own answer after the window", st == 200 and b == b"warm" and
                h.get("x-batch-size") == "1", (st, h, b[:200]))
        thousand(echo, run)
        streamed(stream, run)
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
