"""Invocations end to end: functions are built by the real build pipeline (build-master +
build-worker), registered through the signed build-status webhooks, and invoked on the
lambda-executor. Prints "ok - ..." / "not ok - ..." per check."""
import base64, concurrent.futures, hashlib, http.client, json, os, signal, subprocess, sys, time
import urllib.request, uuid

import mlstack
from mlstack import call, make_zip

ROOT = os.environ.get("ML_ROOT", os.getcwd())
BIN = os.environ["ML_BIN_DIR"]
RUN = os.environ["ML_RUN_DIR"]
PORTS = {"build-master": 31482, "build-worker": 31492, "lambda-executor": 31481, "gateway": 31480}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
EXEC = f"http://127.0.0.1:{PORTS['lambda-executor']}"
MASTER = f"http://127.0.0.1:{PORTS['build-master']}"
LOGS = os.path.join(ROOT, ".run", "test-executor")
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
failures = 0
procs = {}


def check(name, cond, detail=""):
    global failures
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {str(detail)[:300]}"), flush=True)
    failures += 0 if cond else 1
    return cond


def psql(sql):
    out = subprocess.run(["psql", os.environ["MINILAMBDA_LAMBDA_DB_URL"], "-tAc", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def start(name):
    port_var = {"build-master": "MINILAMBDA_BUILD_MASTER_PORT", "build-worker": "MINILAMBDA_BUILD_WORKER_PORT",
                "lambda-executor": "MINILAMBDA_EXECUTOR_PORT", "gateway": "MINILAMBDA_GATEWAY_PORT"}[name]
    env = dict(os.environ, **{port_var: str(PORTS[name]), "MINILAMBDA_BIND_ADDR": "127.0.0.1",
                              "MINILAMBDA_EXECUTOR_WEBHOOK_URL": EXEC,
                              "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": SECRET,
                              "MINILAMBDA_RUNTIMES_DIR": os.path.join(ROOT, "services/lambda-executor/runtimes"),
                              "MINILAMBDA_ARTIFACT_CACHE_DIR": os.path.join(LOGS, "artifacts"),
                              "MINILAMBDA_AUDIT_SPILL_PATH": os.path.join(LOGS, "audit.spill"),
                              "MINILAMBDA_BUILD_SCRATCH_DIR": os.path.join(LOGS, "scratch"),
                              "MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS": "200,200,500,1000",
                              "MINILAMBDA_JWT_SECRET": JWT_SECRET, "MINILAMBDA_BUILD_MASTER_URLS": MASTER,
                              "MINILAMBDA_EXECUTOR_URLS": EXEC, "MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS": "500"})
    procs[name] = subprocess.Popen([os.path.join(BIN, name)], env=env, stderr=subprocess.STDOUT,
                                   stdout=open(os.path.join(LOGS, name + ".log"), "ab"))
    end = time.time() + 60
    while time.time() < end:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{PORTS[name]}/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(name + " not healthy")


def invoke(fn, event, headers=None, timeout=60):
    h = {"Content-Type": "application/json", **(headers or {})}
    return call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(event).encode(), h, timeout)


def scrape(port):
    return mlstack.scrape(f"http://127.0.0.1:{port}")


def kills(name):
    m, _ = scrape(PORTS["lambda-executor"])
    return {r: m.get(f'minilambda_sandbox_kills_total{{function="{name}",reason="{r}",namespace="default"}}', 0)
            for r in ("timeout", "memory", "pids", "crash")}


def deploy(name, files, runtime="python3", handler="app.handler", modes=None, **config):
    doc = {"name": name, "runtime": runtime, "handler": handler,
           "code_base64": base64.b64encode(make_zip(files, modes)).decode(), **config}
    st, _, body = call("POST", MASTER + "/functions", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    if st != 202:
        raise RuntimeError(f"deploy {name}: {st} {body[:200]}")
    return wait_state(name)


def wait_state(name, want=("active", "failed"), timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        st, _, body = call("GET", f"{EXEC}/functions/{name}")
        if st == 200 and json.loads(body)["state"] in want:
            return json.loads(body)
        time.sleep(0.1)
    return None


PY = """
import os, time, sys
count = 0
def handler(event, context):
    global count
    count += 1
    print("hello from the log", file=sys.stderr)
    action = event.get("action")
    if action == "raise":
        raise ValueError("bad input: " + str(event.get("x")))
    if action == "sleep":
        time.sleep(event["s"])
    if action == "exit":
        os._exit(3)
    if action == "oom":
        blocks = []
        while True:
            blocks.append(bytearray(16 << 20))
    if action == "spam":
        for _ in range(20000):
            print("x" * 200)
    if action == "forks":
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
        except OSError:
            os._exit(4)
    return {"echo": event, "count": count, "fn": context.function_name,
            "version": context.function_version, "left_ms": context.get_remaining_time_in_millis()}
"""
NODE = """
let count = 0;
exports.handler = async (event, context) => {
  count++;
  console.log("node log line");
  if (event.action === "raise") throw new TypeError("node says no");
  return { echo: event, count, fn: context.functionName || context.function_name };
};
"""


def main():
    os.makedirs(LOGS, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
        start(name)
    try:
        python_function(run)
        node_function(run)
        platform_refusals(run)
        audit_survives_postgres_outage(run)
        slow_does_not_block_fast(run)
        delete_function(run)
        metrics_endpoints(run)
        through_gateway(run)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    check("the executor exits cleanly on SIGTERM", procs["lambda-executor"].returncode == 0,
          procs["lambda-executor"].returncode)
    sys.exit(1 if failures else 0)


def python_function(run):
    name = f"py-{run}"
    f = deploy(name, {"app.py": PY}, memory_mb=128, timeout_s=3)
    if not check("a python3 function built by the pipeline becomes active with version 1",
                 f and f["state"] == "active" and f["version"] == 1, f):
        return
    st, h, body = invoke(name, {"a": 1})
    r = json.loads(body)
    check("invoke returns the handler's value (200)", st == 200 and r["echo"] == {"a": 1}, (st, body))
    check("context carries the function name, version and remaining time",
          r.get("fn") == name and r.get("version") == "$LATEST" and 0 < r.get("left_ms", 0) <= 3000, r)
    check("first invocation is a cold start", h.get("X-Cold-Start") == "true", h)
    check("headers: X-Invocation-Id, X-Function-Version, X-Duration-Ms",
          len(h.get("X-Invocation-Id", "")) == 36 and h.get("X-Function-Version") == "1" and "X-Duration-Ms" in h, h)
    st, h, body = invoke(name, {"a": 2}, {"X-Log-Type": "Tail"})
    r = json.loads(body)
    check("second invocation reuses the warm instance", h.get("X-Cold-Start") == "false" and r["count"] == 2, (h, r))
    log = base64.b64decode(h.get("X-Log-Result", "")).decode(errors="replace")
    check("X-Log-Type: Tail returns the printed output; the result stays clean",
          "hello from the log" in log and "hello" not in body.decode(), log)
    inv = h["X-Invocation-Id"]
    st, h, body = invoke(name, {"action": "raise", "x": 7})
    e = json.loads(body)
    check("a handler exception: 502, X-Function-Error: Unhandled, errorType/errorMessage/stackTrace",
          st == 502 and h.get("X-Function-Error") == "Unhandled" and e.get("errorType") == "ValueError"
          and "bad input: 7" in e.get("errorMessage", "") and isinstance(e.get("stackTrace"), list), (st, h, body))
    k0 = kills(name)
    t0 = time.time()
    st, h, body = invoke(name, {"action": "sleep", "s": 10})
    check("past timeout_s: 504 with X-Function-Error: TimeoutError, on time",
          st == 504 and h.get("X-Function-Error") == "TimeoutError" and time.time() - t0 < 6, (st, h, time.time() - t0))
    st, h, body = invoke(name, {"action": "exit"})
    check("a crash: 502 with X-Function-Error: Runtime.ExitError", st == 502 and h.get("X-Function-Error") == "Runtime.ExitError", (st, h))
    k1 = kills(name)
    check("sandbox_kills_total counts the timeout and the crash by reason",
          {r: k1[r] - k0[r] for r in k0} == {"timeout": 1, "memory": 0, "pids": 0, "crash": 1}, (k0, k1))
    st, h, body = invoke(name, {"action": "spam"}, {"X-Log-Type": "Tail"})
    check("megabytes of output: the call completes and the log tail is at most 4 KiB",
          st == 200 and len(base64.b64decode(h.get("X-Log-Result", ""))) <= 4096, (st, len(h.get("X-Log-Result", ""))))
    st, h, body = invoke(name, {"a": 3})
    check("after timeouts, crashes and OOM the function still serves", st == 200, (st, body))
    st, _, body = call("GET", f"{EXEC}/health")
    check("the executor stays healthy", st == 200, body)
    time.sleep(1.5)
    st, _, body = call("GET", f"{EXEC}/invocations/{inv}")
    rec = json.loads(body) if st == 200 else {}
    check("GET /invocations/{id} shows the audited invocation",
          st == 200 and rec.get("status") == "succeeded" and rec.get("cold_start") is False, (st, body[:300]))
    st, _, body = call("GET", f"{EXEC}/functions/{name}/invocations?limit=100")
    items = json.loads(body).get("invocations", []) if st == 200 else []
    statuses = sorted(i["status"] for i in items)
    check("every invocation left an audit row with its outcome",
          len(items) == 7 and statuses.count("timed_out") == 1 and statuses.count("failed") == 2, statuses)
    sha = psql(f"select payload_sha256 from event_audit where id = '{inv}' and type = 'http_sync'")
    check("a sync invocation has an event_audit row with the event's sha256",
          sha == hashlib.sha256(json.dumps({"a": 2}).encode()).hexdigest(), sha)
    hostile_function(run)


def hostile_function(run):
    """Memory and fork hogs at 128 MB, i.e. 0.072 vCPU (docs/sandbox.md): filling memory up to
    the OOM kill costs ~0.6 s of CPU, ~8 s of wall clock at that share, hence timeout_s 30."""
    name = f"hog-{run}"
    f = deploy(name, {"app.py": PY}, memory_mb=128, timeout_s=30)
    if not check("a second python3 function becomes active", f and f["state"] == "active", f):
        return
    k1 = kills(name)
    st, h, body = invoke(name, {"action": "oom"})
    check("past memory_mb: 502 with X-Function-Error: Runtime.OutOfMemory",
          st == 502 and h.get("X-Function-Error") == "Runtime.OutOfMemory", (st, h, body[:200]))
    k2 = kills(name)
    check("sandbox_kills_total counts the OOM kill by reason",
          {r: k2[r] - k1[r] for r in k1} == {"timeout": 0, "memory": 1, "pids": 0, "crash": 0}, (k1, k2))
    time.sleep(1.5)
    mem = psql(f"select max(memory_used_mb) from invocations i join functions f on f.id = i.function_id"
               f" where f.name = '{name}' and i.error_type = 'Runtime.OutOfMemory'")
    check("the OOM row records measured memory near the limit", mem and int(mem) >= 100, mem)
    st, h, body = invoke(name, {"action": "forks"})
    k3 = kills(name)
    check("a fork bomb held at pids.max: 502, counted as sandbox_kills_total{reason=\"pids\"}",
          st == 502 and k3["pids"] - k2["pids"] == 1 and k3["crash"] == k2["crash"], (st, body[:200], k2, k3))


def node_function(run):
    name = f"node-{run}"
    f = deploy(name, {"index.js": NODE}, runtime="nodejs", handler="index.handler")
    if not check("a nodejs function becomes active", f and f["state"] == "active", f):
        return
    st, h, body = invoke(name, {"n": 1})
    check("nodejs invoke returns the handler's value", st == 200 and json.loads(body)["echo"] == {"n": 1}, (st, body))
    st, h, body = invoke(name, {"action": "raise"})
    check("nodejs exception: 502 Unhandled with errorType TypeError",
          st == 502 and json.loads(body).get("errorType") == "TypeError", (st, body))


def platform_refusals(run):
    st, _, _ = invoke(f"nope-{run}", {})
    check("unknown function: 404", st == 404)
    name = f"broken-{run}"
    f = deploy(name, {"main.py": "x = 1\n"})
    check("a function whose only build failed is 'failed'", f and f["state"] == "failed", f)
    st, _, body = invoke(name, {})
    check("invoking it: 409", st == 409, (st, body))
    py = f"py-{run}"
    st, _, _ = call("POST", f"{EXEC}/functions/{py}/invoke", b"{}", {"X-Invocation-Type": "DryRun"})
    check("DryRun: 204", st == 204)
    conn = http.client.HTTPConnection("127.0.0.1", PORTS["lambda-executor"], timeout=10)
    conn.putrequest("POST", f"/functions/{py}/invoke")
    conn.putheader("Content-Length", str(6 * 1024 * 1024 + 10))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()  # the body is never sent: the answer must not wait for it
    st = conn.getresponse().status
    check("a 6 MiB+ event with Expect: 100-continue: 413 before the body is sent", st == 413, st)
    st, _, _ = call("POST", f"{EXEC}/functions/{py}/invoke", b"[" + b"1," * (3 << 20) + b"1]")
    check("a 6 MiB+ event sent whole: 413 read by the client after it", st == 413, st)
    one = f"one-{run}"
    deploy(one, {"app.py": PY}, concurrency=1, timeout_s=5)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        slow = ex.submit(invoke, one, {"action": "sleep", "s": 2})
        time.sleep(0.5)
        st, h, _ = invoke(one, {})
        check("concurrency 1 exhausted: 429 with Retry-After", st == 429 and "Retry-After" in h, (st, h))
        check("the running invocation is unaffected", slow.result()[0] == 200)


def pg_ctl(cmd):
    # stack.env names the data dir: it moves out of a run dir user postgres cannot enter
    data, bindir = os.environ["ML_STACK_PG_DATA"], os.environ["ML_STACK_PG_BIN"]
    subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c",
                    f"{bindir}/pg_ctl -D {data} -w -m fast {cmd}"],
                   check=True, capture_output=True)


def audit_survives_postgres_outage(run):
    name = f"py-{run}"
    before = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id where f.name = '{name}'"))
    ok, ids, stop_at, restart_at = 0, [], time.time() + 1, None
    pg_down = False
    end = time.time() + 14
    while time.time() < end:
        if not pg_down and time.time() >= stop_at:
            pg_ctl("stop")
            pg_down, restart_at = True, time.time() + 10
        if pg_down and restart_at and time.time() >= restart_at:
            subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"],
                           check=True, capture_output=True)
            restart_at = None
        st, h, _ = invoke(name, {"i": len(ids)})
        ok += st == 200
        ids.append(h.get("X-Invocation-Id"))
        time.sleep(0.05)
    check(f"Postgres stopped for 10 s: every invocation of the stream succeeds ({ok}/{len(ids)})", ok == len(ids))
    deadline, n = time.time() + 30, -1
    while time.time() < deadline:
        try:
            n = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id where f.name = '{name}'"))
        except subprocess.CalledProcessError:
            n = -1
        if n >= before + len(ids):
            break
        time.sleep(0.5)
    time.sleep(1)
    n = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id where f.name = '{name}'"))
    check("after Postgres returns, exactly one audit row per invocation served", n == before + len(ids),
          (n, before, len(ids)))


def slow_does_not_block_fast(run):
    name, fast = f"sleepy-{run}", f"py-{run}"
    deploy(name, {"app.py": PY}, concurrency=100, timeout_s=10)
    for _ in range(3):
        invoke(fast, {})
    with concurrent.futures.ThreadPoolExecutor(110) as ex:
        slow = [ex.submit(invoke, name, {"action": "sleep", "s": 5}) for _ in range(100)]
        time.sleep(2)
        lat, hl = [], []
        for _ in range(50):
            t0 = time.monotonic()
            invoke(fast, {})
            lat.append((time.monotonic() - t0) * 1000)
            t0 = time.monotonic()
            call("GET", EXEC + "/health")
            hl.append((time.monotonic() - t0) * 1000)
        done = [f.result()[0] for f in slow]
    lat.sort(), hl.sort()
    print(f"# fast invoke during 100 slow: p50 {lat[25]:.1f} ms p99 {lat[-1]:.1f} ms; /health p99 {hl[-1]:.1f} ms")
    check("100 concurrent 5 s invocations all succeed", done.count(200) == 100, done)
    # not held up: each answers long before any 5 s sleep ends (held behind one, it would take
    # seconds). Its latency is a benchmark's business (make bench), not a timed test's: a
    # 50 ms bound here failed on a loaded ASan run with nothing blocked (62 ms, once in 50).
    check("meanwhile a fast invocation and /health are not held up by them (each < 1 s)",
          lat[-1] < 1000 and hl[-1] < 1000, (lat[-5:], hl[-5:]))


def through_gateway(run):
    """The public path: JWT, the gateway, the real build-master and executor."""
    gw = f"http://127.0.0.1:{PORTS['gateway']}"
    tok = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "e2e"], capture_output=True, text=True,
                         env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
    auth = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
    st, _, _ = call("GET", gw + "/functions")
    check("gateway: no token, 401", st == 401, st)
    name = f"gw-{run}"
    doc = {"name": name, "runtime": "python3", "handler": "app.handler",
           "code_base64": base64.b64encode(make_zip({"app.py": PY})).decode()}
    st, _, body = call("POST", gw + "/functions", json.dumps(doc).encode(), auth)
    check("gateway: POST /functions with a JWT → 202", st == 202, (st, body))
    f = wait_state(name)
    st, h, body = call("POST", f"{gw}/functions/{name}/invoke", b'{"via": "gateway"}', auth)
    check("gateway: invoke → 200 with the executor's headers",
          st == 200 and json.loads(body)["echo"] == {"via": "gateway"} and h.get("X-Function-Version") == "1"
          and "RateLimit-Remaining" in h, (st, h, body))
    st, h, body = call("POST", f"{gw}/2015-03-31/functions/{name}/invocations", b'{"action": "raise", "x": 1}', auth)
    check("gateway: AWS Invoke API → 200 with X-Amz-Function-Error: Unhandled",
          st == 200 and h.get("X-Amz-Function-Error") == "Unhandled" and h.get("X-Amz-Executed-Version") == "$LATEST",
          (st, h, body))
    st, _, body = call("GET", f"{gw}/functions/{name}", headers=auth)
    check("gateway: GET /functions/{fn} → the executor's record", st == 200 and json.loads(body)["name"] == name, st)
    st, _, body = call("POST", f"{gw}/functions/{name}/invoke", b'{"a": "async"}',
                       {**auth, "X-Invocation-Type": "Event"})
    inv = json.loads(body).get("invocation_id") if st == 202 else None
    check("gateway: async invoke → 202", st == 202 and inv, (st, body))
    rec, end = {}, time.time() + 30
    while time.time() < end and rec.get("status") != "succeeded":
        st, _, body = call("GET", f"{gw}/invocations/{inv}", headers=auth)
        rec = json.loads(body) if st == 200 else {}
        time.sleep(0.2)
    check("gateway: GET /invocations/{id} shows the async result", rec.get("status") == "succeeded", rec)
    st, _, body = call("GET", f"{gw}/functions/{name}/invocations?limit=5", headers=auth)
    check("gateway: GET /functions/{fn}/invocations lists them", st == 200 and len(json.loads(body)["invocations"]) >= 2, st)
    st, _, _ = call("PATCH", f"{gw}/functions/{name}", json.dumps({"rate_limit": {"rps": 0.1, "burst": 2}}).encode(), auth)
    time.sleep(1.2)  # the gateway caches a function's config briefly
    codes = [call("POST", f"{gw}/functions/{name}/invoke", b"{}", auth) for _ in range(4)]
    limited = [h for st, h, _ in codes if st == 429]
    check("gateway: the function's rate_limit gives 429 with Retry-After and RateLimit-* headers",
          st == 200 and limited and all(k in limited[0] for k in ("Retry-After", "RateLimit-Limit",
                                                                  "RateLimit-Remaining", "RateLimit-Reset")),
          [c[0] for c in codes])
    procs["lambda-executor"].send_signal(signal.SIGTERM)
    procs["lambda-executor"].wait(60)
    time.sleep(2.5)  # the gateway's health checks notice
    t = time.time()
    st, h, _ = call("GET", f"{gw}/functions/{name}", headers=auth)
    check("gateway: executor stopped → 503 with Retry-After, fast", st == 503 and "Retry-After" in h
          and time.time() - t < 0.5, (st, time.time() - t))
    start("lambda-executor")
    end, st = time.time() + 15, 0
    while time.time() < end and st != 200:
        st, _, _ = call("GET", f"{gw}/functions/{name}", headers=auth)
        time.sleep(0.3)
    check("gateway: the executor returns → served again", st == 200, st)


def metrics_endpoints(run):
    """Every daemon's /metrics passes promtool; the executor's and build-master's queue gauges
    come from the broker; function-labelled series carry the function's name."""
    for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
        _, lint = scrape(PORTS[name])
        check(f"{name}: /metrics passes promtool check metrics", lint[:2] == (200, 0), lint)
    want = {"lambda-executor": ["minilambda.invocations", "minilambda.invocations.retry.1",
                                "minilambda.invocations.retry.2", "minilambda.invocations.dead"],
            "build-master": ["minilambda.build_jobs", "minilambda.build_jobs.dead"]}
    for name, queues in want.items():
        m, end = {}, time.time() + 15  # consumers show from the first refresh after they start
        while time.time() < end:
            m, _ = scrape(PORTS[name])
            if m.get(f'minilambda_queue_consumers{{queue="{queues[0]}"}}', 0) >= 1:
                break
            time.sleep(0.5)
        check(f"{name}: queue depth and consumer gauges for {', '.join(queues)}, from the broker",
              m.get("minilambda_queue_stats_up") == 1
              and all(f'minilambda_queue_messages{{queue="{q}"}}' in m for q in queues)
              and m.get(f'minilambda_queue_consumers{{queue="{queues[0]}"}}', 0) >= 1,
              {k: v for k, v in m.items() if k.startswith("minilambda_queue")})
    m, _ = scrape(PORTS["lambda-executor"])
    py = f"py-{run}"
    check("executor: minilambda_dlq_messages is read from Postgres",
          m.get("minilambda_dlq_messages") == float(psql("select count(*) from dead_letter_queue where replayed_at is null")),
          m.get("minilambda_dlq_messages"))
    check("executor: per-function invocation, start and pool series use the function's name",
          any(k.startswith(f'minilambda_invocations_total{{function="{py}",trigger="http_sync"') for k in m)
          and f'minilambda_invocation_starts_total{{function="{py}",kind="cold",namespace="default"}}' in m
          and f'minilambda_pool_instances{{function="{py}",state="idle"}}' in m,
          [k for k in m if py in k][:10])


def delete_function(run):
    name = f"node-{run}"
    st, _, _ = call("DELETE", f"{MASTER}/functions/{name}")
    check("DELETE /functions/{fn} (via the build-master): 204", st == 204, st)
    check("the lambda side forgot it: GET and invoke are 404",
          call("GET", f"{EXEC}/functions/{name}")[0] == 404 and invoke(name, {})[0] == 404)
    f = deploy(name, {"index.js": NODE}, runtime="nodejs", handler="index.handler")
    check("the name can be used again, for a new function", f and f["state"] == "active" and f["version"] == 1, f)


if __name__ == "__main__":
    main()
