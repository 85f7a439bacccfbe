"""Executor benchmark (make bench): a trivial python3 handler invoked directly on the
lambda-executor, against a fresh python3 process per invocation as the baseline, in one run.
Appends a section to docs/benchmarks.md.

  - warm invoke latency, open loop at 1,000 req/s (latency counted from each request's
    scheduled send time, so a stall is not hidden);
  - saturation throughput (closed loop, 32 connections) with every audit row written;
  - cold start through HTTP (a config change forces a new instance) and in the sandbox alone;
  - the baseline: spawn /usr/bin/python3, import the handler, run it, per invocation;
  - executor RSS before and after 100,000 invocations, each once the audit writer caught up.
"""
import asyncio, json, os, re, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from loadgen import closed_loop, open_conn, open_loop, pct  # noqa: E402
from benchmd import append_section  # noqa: E402  (tests/bench is the script's own folder)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, ".run", "bench-exec-stack")
os.environ.setdefault("ML_BIN_DIR", sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin"))
os.environ["ML_RUN_DIR"], os.environ["ML_ROOT"] = RUN, ROOT
OUT = os.path.join(ROOT, "docs", "benchmarks.md")
HANDLER = "def handler(event, context):\n    return {\"ok\": True, \"n\": event.get(\"n\")}\n"
N_OPEN = int(os.environ.get("BENCH_OPEN_S", 10)) * 1000
N_SAT = int(os.environ.get("BENCH_SAT", 30000))
N_SOAK = int(os.environ.get("BENCH_SOAK_INVOKES", 100000))


def stack_env():
    env = dict(os.environ, ML_RUN_DIR=RUN, ML_PORT_BASE="28000")
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



def baseline(n=200):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(HANDLER)
    code = "import json,sys; sys.path.insert(0, sys.argv[1]); import app; print(json.dumps(app.handler({'n': 1}, None)))"
    lat = []
    t0 = time.monotonic()
    for _ in range(n):
        s = time.monotonic()
        subprocess.run(["/usr/bin/python3", "-c", code, d], check=True, stdout=subprocess.DEVNULL)
        lat.append((time.monotonic() - s) * 1000)
    return n / (time.monotonic() - t0), lat


async def event_request(conn, path, body):
    r, w = conn
    w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Invocation-Type: Event\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await r.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    await r.readexactly(length)
    return int(head.split(b" ")[1])


async def events(port, path, total, conns):
    """Enqueues total Event invocations over conns connections; per-request latency in ms."""
    lat, left = [], [total]

    async def worker():
        c = await open_conn(port)
        while left[0] > 0:
            left[0] -= 1
            t = time.monotonic()
            assert await event_request(c, path, b'{"n": 1}') == 202
            lat.append((time.monotonic() - t) * 1000)
        c[1].close()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return lat


def async_rows(S, fn, port, path, psql):
    """Event invocations: 202 latency (publisher confirm included) and sustained events/s."""
    def succeeded():
        return int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                        f" where f.name = '{fn}' and i.trigger = 'http_async' and i.status = 'succeeded'"))
    lat = asyncio.run(events(port, path, 1000, 1))
    n, before, t0 = 5000, succeeded(), time.monotonic()
    asyncio.run(events(port, path, n, 16))
    while succeeded() < before + n and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    rate = (succeeded() - before) / (time.monotonic() - t0)
    return [f"| async enqueue (`X-Invocation-Type: Event`, confirm before 202), one client, n=1000 | "
            f"p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 99):.2f} ms | — |",
            f"| async sustained: {n} events by 16 clients, to the last one succeeded (4 consumers) | "
            f"{rate:.0f} events/s | — |"]


def drained(port, timeout=60):
    """Waits until the executor's audit writer has caught up (its queue holds what Postgres
    has not taken yet: memory by design, not growth)."""
    end, zeros = time.time() + timeout, 0
    while time.time() < end and zeros < 3:  # three readings in a row: the writer's round is over
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            m = re.search(rb"^minilambda_audit_backlog (\S+)", r.read(), re.M)
        zeros = zeros + 1 if m and float(m.group(1)) == 0 else 0
        time.sleep(0.2)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def mem_detail(pid):
    """Where the RSS is (for a growth that needs explaining): threads, anonymous memory,
    the heap and the largest anonymous mappings."""
    st = {l.split(":")[0]: l.split(":")[1].strip() for l in open(f"/proc/{pid}/status")}
    maps, cur = [], None
    for line in open(f"/proc/{pid}/smaps"):
        f = line.split()
        if not f[0].endswith(":"):
            cur = [f[5] if len(f) > 5 else "[anon]", 0]
            maps.append(cur)
        elif f[0] == "Rss:":
            cur[1] += int(f[1])
    heap = sum(r for n, r in maps if n == "[heap]")
    anon = sorted((r for n, r in maps if n == "[anon]"), reverse=True)
    return (f"threads {st['Threads']}, RssAnon {st['RssAnon']}, heap {heap} kB, "
            f"anon maps {len(anon)} (largest {anon[:4]} kB)")


def main():
    from mlstack import Suite, call, psql
    env = stack_env()
    S = Suite("bench-exec", {"build-master": 28182, "build-worker": 28192, "lambda-executor": 28181},
              {"MINILAMBDA_LOG_LEVEL": "warn"})
    rows = []
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        fn = "bench-" + os.urandom(3).hex()
        S.deploy(fn, {"app.py": HANDLER}, concurrency=64)
        port, path = S.ports["lambda-executor"], f"/functions/{fn}/invoke"
        asyncio.run(closed_loop(port, path, 3000))  # warm-up: instances started
        lat, err = asyncio.run(open_loop(port, path, 1000, N_OPEN))
        rows.append(f"| warm invoke, open loop 1,000 req/s for {N_OPEN // 1000} s | p50 {statistics.median(lat):.2f} ms, "
                    f"p99 {pct(lat, 99):.2f} ms ({err} errors) | p50 ≤ 1 ms, p99 ≤ 5 ms |")
        before = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id where f.name = '{fn}'"))
        rps, err = asyncio.run(closed_loop(port, path, N_SAT))
        time.sleep(3)
        after = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id where f.name = '{fn}'"))
        rows.append(f"| saturation, closed loop, 32 connections, {N_SAT} invokes | {rps:.0f} invokes/s ({err} errors); "
                    f"audit rows written: {after - before}/{N_SAT} | ≥ 3,000/s, every row written |")
        base_rps, base_lat = baseline()
        rows.append(f"| baseline: fresh `/usr/bin/python3` per invocation (n=200, sequential) | {base_rps:.0f} /s, "
                    f"p50 {statistics.median(base_lat):.1f} ms | — |")
        rows.append(f"| executor ÷ baseline throughput | {rps / base_rps:.0f}× | ≥ 20× |")
        cold = []
        for i in range(50):
            call("PATCH", f"{S.url('lambda-executor')}/functions/{fn}", json.dumps({"memory_mb": 128 + i % 2}).encode(),
                 {"Content-Type": "application/json"})
            t = time.monotonic()
            st, h, _ = call("POST", S.url("lambda-executor") + path, b'{"n": 1}', {"Content-Type": "application/json"})
            if h.get("X-Cold-Start") == "true":
                cold.append((time.monotonic() - t) * 1000)
        rows.append(f"| cold start through HTTP (config change → new instance), n={len(cold)} | p50 {statistics.median(cold):.1f} ms, "
                    f"p99 {pct(cold, 99):.1f} ms | p50 ≤ 40 ms |")
        rows += async_rows(S, fn, port, path, psql)
        pid = S.procs["lambda-executor"].pid
        asyncio.run(closed_loop(port, path, 10000))
        drained(port)
        r0, d0 = rss_kib(pid), mem_detail(pid)
        asyncio.run(closed_loop(port, path, N_SOAK))
        busy = rss_kib(pid)
        drained(port)
        r1, d1 = rss_kib(pid), mem_detail(pid)
        print(f"# RSS before: {d0}\n# RSS after:  {d1}", file=sys.stderr)
        rows.append(f"| executor RSS before → after {N_SOAK:,} more invokes (audit rows all written) | "
                    f"{r0 / 1024:.1f} → {r1 / 1024:.1f} MiB ({(r1 - r0) / 1024:+.1f} MiB; {busy / 1024:.1f} MiB right "
                    f"at the end, with unwritten audit rows queued) | < 5 MiB growth |")
    finally:
        S.stop_all()
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"], env=env,
                       stdout=subprocess.DEVNULL)
    sb = os.path.join(os.environ["ML_BIN_DIR"], "..", "bench", "sandbox_bench")
    if os.path.exists(sb):
        out = subprocess.run([sb, "python3", "100", "10000"], capture_output=True, text=True).stdout.strip()
        rows.append(f"| sandbox alone (`sandbox_bench python3 100 10000`) | {out.splitlines()[-1] if out else 'n/a'} | — |")
    append_section(OUT, "Executor", [
               "Command: `make bench` → `tests/bench/executor.py`: a private stack (ports 28000+), the function built by",
               "the real pipeline, invoked directly on the lambda-executor (`-O2`); trivial python3 handler."], rows)


if __name__ == "__main__":
    main()
