"""Executor metadata through a Postgres outage (issue 15 item 7) on the test stack.

The executor runs with short caches (process 200 ms, Redis 1 s) so lookups reach Postgres.
A function is registered by a signed build-status webhook and looked up (DryRun invoke);
the stack's Postgres is stopped and, once the caches have expired, OUT_N DryRun invokes are
sent: all are served (204) from the stale metadata, and fast — the breaker keeps them from
each paying the ~300 ms connect back-off (median < 50 ms, at most one per breaker period
slow). Postgres is started again: a change (DELETE of the function) is seen by lookups
within a few seconds (DryRun 404).
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import base64, datetime, hashlib, hmac, json, os, statistics, subprocess, time, uuid
from mlstack import Suite, call, psql

PORTS = {"lambda-executor": 32281}
OUT_N = int(os.environ.get("OUT_N", "60"))
S = Suite("test-registry-outage", PORTS, {"MINILAMBDA_REGISTRY_LOCAL_TTL_MS": "200",
                                          "MINILAMBDA_REGISTRY_REDIS_TTL_S": "1"})


def note(msg):
    print("# " + msg, flush=True)


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def deliver(fid, name):
    bid = str(uuid.uuid4())
    doc = {"type": "build.status", "build_id": bid, "function_id": fid, "status": "completed", "error": None,
           "timestamp": iso(time.time()), "function": {"name": name, "runtime": "python3", "handler": "app.handler",
                                                       "config": {"memory_mb": 128, "timeout_s": 30, "env": {}}},
           "artifact": {"prefix": f"artifacts/{fid}/{bid}/", "sha256": hashlib.sha256(bid.encode()).hexdigest(),
                        "size_bytes": 1234, "files": 3}}
    body = json.dumps(doc).encode()
    mid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
    key = base64.b64decode(S.secret[len("whsec_"):])
    sig = "v1," + base64.b64encode(hmac.new(key, f"{mid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return call("POST", f"{S.url('lambda-executor')}/webhooks/build-status/{bid}", body,
                {"webhook-id": mid, "webhook-timestamp": ts, "webhook-signature": sig,
                 "Content-Type": "application/json"})[0]


def dry_run(fn):
    t = time.time()
    st, _, _ = call("POST", f"{S.url('lambda-executor')}/functions/{fn}/invoke", b"{}",
                    {"X-Invocation-Type": "DryRun"}, timeout=30)
    return st, (time.time() - t) * 1000


def pg_ctl(*args):
    pg = os.path.join(os.environ["ML_STACK_PG_BIN"], "pg_ctl")
    subprocess.run(["runuser", "-u", "postgres", "--", pg, "-D", os.environ["ML_STACK_PG_DATA"], *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")


def pg_start():
    subprocess.run(["bash", os.path.join(os.environ.get("ML_ROOT", "."), "infrastructure/dev/stack.sh"), "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    run = base64.b32encode(os.urandom(5)).decode().lower()
    name, fid = f"out-{run}", str(uuid.uuid4())
    stopped = False
    try:
        S.start("lambda-executor")
        S.check("the function is registered", deliver(fid, name) in (200, 204))
        S.check("and looked up (DryRun 204)", dry_run(name)[0] == 204)
        pg_ctl("-m", "fast", "-W", "stop")
        stopped = True
        time.sleep(1.5)  # the process and Redis caches expire
        res = []
        t = time.time()
        while len(res) < OUT_N:
            res.append(dry_run(name))
            time.sleep(0.02)
        span = time.time() - t
        ok = sum(1 for st, _ in res if st == 204)
        lat = sorted(ms for _, ms in res)
        med, p95, mx = statistics.median(lat), lat[int(len(lat) * 0.95) - 1], lat[-1]
        slow = sum(1 for ms in lat if ms > 150)
        note(f"Postgres down: {ok}/{len(res)} DryRun invokes served in {span:.1f} s; latency median {med:.1f} ms, "
             f"p95 {p95:.1f} ms, max {mx:.1f} ms; {slow} over 150 ms")
        S.check("Postgres down: every lookup is served from the last known metadata", ok == len(res),
                [st for st, _ in res if st != 204][:5])
        S.check("Postgres down: lookups are fast (median < 50 ms)", med < 50, med)
        S.check(f"Postgres down: at most one slow lookup per breaker period ({slow} in {span:.1f} s)",
                slow <= span + 1, slow)
        pg_start()
        stopped = False
        up = time.time()
        st, _, _ = call("DELETE", f"{S.url('lambda-executor')}/functions/{fid}")
        gone = None
        end = time.time() + 10
        while time.time() < end:
            if dry_run(name)[0] == 404:
                gone = time.time() - up
                break
            time.sleep(0.1)
        note(f"Postgres back: DELETE {st}; lookups see it {gone if gone is None else round(gone, 2)} s after the start")
        S.check("Postgres back: changes are seen again (DELETE → DryRun 404 within 10 s)", st == 204 and gone is not None,
                (st, gone))
    finally:
        if stopped:
            pg_start()
        S.stop_all()
    raise SystemExit(1 if S.failures else 0)


main()
