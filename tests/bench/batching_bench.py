"""Micro-batching benchmark (make bench; docs/http.md "Batching", issue 20): what the
latency-vs-cost dial of a function URL's batching buys, measured.

On a private native stack (ports BENCH_BATCH_PORT_BASE, default 26000+) with the real gateway,
lambda-executor, build-master and one build-worker (-O2), one python function that answers
both forms — a single v2 event (the per-request path) and {"v":1,"batch":[...]} — behind a
public function URL. For each setting the same open-loop load (BENCH_BATCH_RATE requests/s,
default 200, for BENCH_BATCH_SECONDS, default 5; latency counted from each request's scheduled
send time, so queueing is not hidden; keep-alive connections over asyncio): first without
batching, then with max_wait_ms 2, 10 and 50 (max_batch_size 64, no key). Measured per
setting: invocations per request (the executor's minilambda_invocations_total over the
requests sent), the mean batch (the gateway's minilambda_gateway_batch_size), p50/p99/max
latency and errors. Appends a section to docs/benchmarks.md (BENCH_OUT overrides the file)."""
import asyncio, base64, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, ".run", "bench-batch-stack")
PORT_BASE = int(os.environ.get("BENCH_BATCH_PORT_BASE", "26000"))
os.environ.setdefault("ML_BIN_DIR", sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin"))
os.environ["ML_RUN_DIR"], os.environ["ML_ROOT"] = RUN, ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from benchmd import append_section  # noqa: E402  (tests/bench is the script's own folder)
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md"))
RATE = int(os.environ.get("BENCH_BATCH_RATE", 200))
SECONDS = float(os.environ.get("BENCH_BATCH_SECONDS", 5))
WAITS = (2, 10, 50)
MAX_BATCH = 64
PORTS = {"gateway": PORT_BASE + 280, "lambda-executor": PORT_BASE + 281, "build-master": PORT_BASE + 282,
         "build-worker": PORT_BASE + 292}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
APP = '''def one(e):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": e.get("body") or ""}

def handler(event, context):
    if "batch" in event:
        return {"v": 1, "responses": [dict(one(e), id=e["id"]) for e in event["batch"]]}
    return one(event)
'''


def stack_env():
    """Starts the private stack (Postgres, Redis, RabbitMQ, S3), migrates, exports stack.env."""
    env = dict(os.environ, ML_RUN_DIR=RUN, ML_PORT_BASE=str(PORT_BASE))
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            os.environ[k] = v.strip("'\"")
    for side in ("build", "lambda"):
        subprocess.run([os.path.join(os.environ["ML_BIN_DIR"], "ml-migrate"), os.environ[f"MINILAMBDA_{side.upper()}_DB_URL"],
                        os.path.join(ROOT, "migrations", side)], check=True, stdout=subprocess.DEVNULL)
    return env


async def request(conn, path, body):
    """One keep-alive POST; the status (the URL's answers carry Content-Length)."""
    r, w = conn
    w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await r.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    got = await r.readexactly(length)
    return int(head.split(b" ")[1]), got


async def open_loop(path, rate, total, conns=256):
    """Sends at a fixed rate (each body unique, checked on the way back); latency in ms from
    the scheduled time, and the number of wrong or failed answers."""
    pool = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", PORTS["gateway"]))
    lat, errors, t0 = [], 0, time.monotonic()

    async def one(i):
        nonlocal errors
        due, body = t0 + i / rate, f"req-{i}".encode()
        c = await pool.get()
        try:
            st, got = await request(c, path, body)
            errors += st != 200 or got != body
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            c = await asyncio.open_connection("127.0.0.1", PORTS["gateway"])
        finally:
            pool.put_nowait(c)
        lat.append((time.monotonic() - due) * 1000)
    tasks = []
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return lat, errors


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def counter(values, prefix):
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


def measure(S, scrape, fn, total):
    ex0, gw0 = scrape(S.url("lambda-executor"))[0], scrape(S.url("gateway"))[0]
    lat, errors = asyncio.run(open_loop(f"/fn/{fn}", RATE, total))
    time.sleep(0.5)  # the executor's counters settle after the last answer
    ex1, gw1 = scrape(S.url("lambda-executor"))[0], scrape(S.url("gateway"))[0]
    invokes = counter(ex1, "minilambda_invocations_total") - counter(ex0, "minilambda_invocations_total")
    batches = gw1.get("minilambda_gateway_batch_size_count", 0) - gw0.get("minilambda_gateway_batch_size_count", 0)
    items = gw1.get("minilambda_gateway_batch_size_sum", 0) - gw0.get("minilambda_gateway_batch_size_sum", 0)
    return {"per_request": invokes / total, "mean_batch": items / batches if batches else 1.0,
            "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat), "errors": errors}


def main():
    env = stack_env()
    from mlstack import Suite, jcall, scrape
    S = Suite("bench-batch", PORTS, {
        "MINILAMBDA_LOG_LEVEL": "warn", "MINILAMBDA_JWT_SECRET": JWT_SECRET,
        "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
        "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
        "MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS": "100",
        "MINILAMBDA_FNURL_IP_RPS": "1000000", "MINILAMBDA_FNURL_IP_BURST": "1000000"})
    total, rows, results = int(RATE * SECONDS), [], {}
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        token = subprocess.run([os.path.join(os.environ["ML_BIN_DIR"], "gateway"), "token", "--sub", "bench"],
                               capture_output=True, text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
        auth = {"Authorization": "Bearer " + token}
        fn = "batchbench"
        if (S.deploy(fn, {"app.py": APP}, timeout_s=10, rate_limit={"rps": 100000, "burst": 100000},
                        concurrency=200) or {}).get("state") != "active":
            raise RuntimeError("the function did not build")
        for label, batching in [("per request (no batching)", None)] + \
                [(f"batching, max_wait_ms {w}", {"max_wait_ms": w, "max_batch_size": MAX_BATCH}) for w in WAITS]:
            st, b = jcall(S.url("gateway"), "PUT", f"/functions/{fn}/url", auth, {"auth": "NONE", "batching": batching})
            if st not in (200, 201):
                raise RuntimeError(f"PUT url: {st} {b}")
            time.sleep(0.3)  # past the gateway's function cache TTL
            asyncio.run(open_loop(f"/fn/{fn}", 50, 50))  # warm: instances up, connections open
            results[label] = r = measure(S, scrape, fn, total)
            print(f"{label}: {r}", flush=True)
    finally:
        S.stop_all()
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"], env=env,
                       stdout=subprocess.DEVNULL)
    base = results["per request (no batching)"]
    for label, r in results.items():
        rows.append(f"| {label}: invocations per request; mean batch | {r['per_request']:.3f}; {r['mean_batch']:.1f} | "
                    f"{'1' if r is base else '< 1'} |")
        rows.append(f"| {label}: latency p50 / p99 / max | {r['p50']:.1f} / {r['p99']:.1f} / {r['max']:.1f} ms | "
                    f"{'—' if r is base else 'p50 ≲ per-request p50 + max_wait_ms'} |")
        if r["errors"]:
            rows.append(f"| {label}: wrong or failed answers | {r['errors']} of {total} | 0 |")
    append_section(OUT, "Micro-batching", [
        "Command: `make bench` → `tests/bench/batching_bench.py`: a private stack (ports "
        f"{PORT_BASE}+), the gateway, lambda-executor, build-master and a build-worker (`-O2`); one python",
        "function answering a single v2 event or a `{\"v\":1,\"batch\":[...]}` behind a public function URL",
        f"(`/fn/batchbench`). Open loop at {RATE} requests/s for {SECONDS:g} s per setting ({total} requests,",
        "each body unique and checked), latency from each request's scheduled send time; the same load",
        f"without batching, then with `max_wait_ms` {', '.join(map(str, WAITS))} (`max_batch_size` {MAX_BATCH},",
        "no key). Invocations per request: the executor's `minilambda_invocations_total` over the requests;",
        "mean batch: the gateway's `minilambda_gateway_batch_size`."], rows)


if __name__ == "__main__":
    main()
