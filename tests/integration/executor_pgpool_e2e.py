"""The lambda-executor's Postgres connections are bounded by its pool (issue 14).

One executor on the test stack, MINILAMBDA_DB_POOL_SIZE=POOL (default 8), under LOAD_CONNS
(default 96) concurrent clients sending Postgres-backed requests (GET /functions/{fn}, GET
/functions/{fn}/invocations, GET /functions) mixed with warm invokes:
  - connections of the executor in pg_stat_activity (application_name lambda-executor*,
    sampled every 50 ms) never exceed POOL + 2 (the audit writer's own and the health check's);
  - every request is answered 200 (or 503 with Retry-After, never another error);
  - with POOL=1 and MINILAMBDA_DB_POOL_TIMEOUT_MS=0, database reads that find the connection
    busy are 503 with Retry-After, while warm invokes (registry cache hits, no connection)
    all stay 200.
PGPOOL_E2E_EXPECT_FAIL=1 runs the first check with the pool off (MINILAMBDA_DB_POOL_SIZE=0,
one connection per worker thread) to show that it fails there.
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import asyncio, http.client, os, signal, subprocess, sys, threading, time
from mlstack import Suite, call
from loadgen import closed_loop, open_loop

PORTS = {"lambda-executor": 31885, "build-master": 31886, "build-worker": 31887}
POOL = int(os.environ.get("PGPOOL_E2E_POOL", "8"))
CONNS = int(os.environ.get("PGPOOL_E2E_CONNS", "96"))
SECONDS = float(os.environ.get("PGPOOL_E2E_SECONDS", "6"))
EXPECT_FAIL = os.environ.get("PGPOOL_E2E_EXPECT_FAIL") == "1"
APP = "def handler(event, context):\n    return {'ok': True}\n"
S = Suite("test-pgpool", PORTS, {"MINILAMBDA_LOG_LEVEL": "warn"})
COUNT_SQL = ("select count(*) from pg_stat_activity where datname = current_database()"
             " and application_name like 'lambda-executor%'")


def note(msg):
    print("# " + msg, flush=True)


class Sampler(threading.Thread):
    """Largest executor connection count seen until stopped (one psql session of its own)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.max, self.stop, self.samples = 0, threading.Event(), 0

    def run(self):
        p = subprocess.Popen(["psql", os.environ["MINILAMBDA_LAMBDA_DB_URL"], "-tAq"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, bufsize=1)
        while not self.stop.is_set():
            p.stdin.write(COUNT_SQL + ";\n")
            line = p.stdout.readline().strip()
            if line.isdigit():
                self.max, self.samples = max(self.max, int(line)), self.samples + 1
            time.sleep(0.05)
        p.stdin.close()
        p.wait()


def load(port, paths, seconds, conns):
    """conns threads, each with a keep-alive connection, cycling through paths (method,
    path). Returns {path kind: {status: count}} and the 503s without Retry-After."""
    stats, lock, bad_503 = {}, threading.Lock(), [0]
    end = time.time() + seconds

    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = k
        while time.time() < end:
            method, path, kind = paths[i % len(paths)]
            i += 1
            try:
                c.request(method, path, body=b'{}' if method == "POST" else None,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                st, retry = r.status, r.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                st, retry = 0, None
            with lock:
                stats.setdefault(kind, {}).setdefault(st, 0)
                stats[kind][st] += 1
                bad_503[0] += st == 503 and not retry
        c.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return stats, bad_503[0]


def restart_executor(**env):
    p = S.procs.get("lambda-executor")
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    S.start("lambda-executor", **env)


def run_load(fn, seconds, conns):
    port = PORTS["lambda-executor"]
    paths = [("GET", f"/functions/{fn}", "get"), ("GET", f"/functions/{fn}/invocations?limit=5", "list_inv"),
             ("POST", f"/functions/{fn}/invoke", "invoke"), ("GET", "/functions?limit=5", "list")]
    sampler = Sampler()
    sampler.start()
    t0 = time.time()
    stats, bad_503 = load(port, paths, seconds, conns)
    took = time.time() - t0
    sampler.stop.set()
    sampler.join()
    total = sum(sum(v.values()) for v in stats.values())
    note(f"{conns} clients for {took:.1f} s: {total / took:.0f} req/s; statuses {stats}; "
         f"executor connections at most {sampler.max} ({sampler.samples} samples)")
    return stats, bad_503, sampler.max


def bench(fn):
    """PGPOOL_E2E_BENCH=1: the executor benchmark's warm-invoke numbers (open loop 1,000
    req/s for 10 s; closed loop, 32 connections, 30,000 invokes) with connections sampled."""
    port, path = PORTS["lambda-executor"], f"/functions/{fn}/invoke"
    asyncio.run(closed_loop(port, path, 3000))
    sampler = Sampler()
    sampler.start()
    lat, err = asyncio.run(open_loop(port, path, 1000, 10000))
    lat.sort()
    note(f"bench warm invoke open loop 1000/s 10 s: p50 {lat[len(lat) // 2]:.2f} ms, p99 "
         f"{lat[int(len(lat) * 0.99)]:.2f} ms, {err} errors")
    rps, err = asyncio.run(closed_loop(port, path, 30000))
    sampler.stop.set()
    sampler.join()
    note(f"bench saturation closed loop 32 conns 30000 invokes: {rps:.0f} invokes/s, {err} errors;"
         f" executor connections at most {sampler.max}")


def main():
    fails = 0

    def check(cond, what):
        nonlocal fails
        print(("ok - " if cond else "not ok - ") + what, flush=True)
        fails += not cond
    try:
        for name in ("build-master", "build-worker"):
            S.start(name)
        pool = "0" if EXPECT_FAIL else str(POOL)
        restart_executor(MINILAMBDA_DB_POOL_SIZE=pool)
        fn = "pgpool-" + os.urandom(3).hex()
        doc = S.deploy(fn, {"app.py": APP}, concurrency=64)
        check(doc is not None and doc["state"] == "active", f"function {fn} deployed")
        if os.environ.get("PGPOOL_E2E_BENCH") == "1":
            bench(fn)
        stats, bad_503, peak = run_load(fn, SECONDS, CONNS)
        others = sum(n for k in stats.values() for st, n in k.items() if st not in (200, 503))
        check(peak <= POOL + 2, f"executor Postgres connections stay <= pool + 2 = {POOL + 2} under {CONNS}"
              f" concurrent clients (at most {peak}; MINILAMBDA_DB_POOL_SIZE={pool})")
        check(others == 0 and bad_503 == 0, f"every answer is 200 or 503 with Retry-After ({others} others,"
              f" {bad_503} 503s without Retry-After)")
        if EXPECT_FAIL:
            return fails
        restart_executor(MINILAMBDA_DB_POOL_SIZE="1", MINILAMBDA_DB_POOL_TIMEOUT_MS="0")
        for _ in range(5):  # warm: an instance and the registry caches
            call("POST", f"{S.url('lambda-executor')}/functions/{fn}/invoke", b"{}",
                 {"Content-Type": "application/json"})
        stats, bad_503, peak = run_load(fn, SECONDS / 2, 32)
        inv = stats.get("invoke", {})
        busy = sum(k.get(503, 0) for key, k in stats.items() if key != "invoke")
        check(peak <= 3, f"pool of 1: at most 3 executor connections (saw {peak})")
        check(set(inv) == {200} and inv.get(200, 0) > 0,
              f"pool of 1, no wait: warm invokes never need a connection, all 200 ({inv})")
        check(bad_503 == 0, f"pool exhausted: reads answered 503 with Retry-After ({busy} such 503s)")
        note(f"pool exhausted: {busy} database reads answered 503")
    finally:
        S.stop_all()
    return fails


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
