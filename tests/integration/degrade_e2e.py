"""Degrade per capability, on the real test stack (issue 15 items 2 and 3).

One executor, build-master and build-worker; a function deployed and warmed. Then, in turn
(each fault stays while the next is added, except Redis which is resumed):
  1. Redis SIGSTOPped: GET /health answers within 300 ms every time (the checks run in the
     background with 250 ms budgets), 200, lists "redis" in degraded; direct sync invokes
     (no process cache: each looks its function up in Redis) all 200 and each within
     INVOKE_BOUND_MS (the invoke path's Redis timeout is 80 ms, then the registry skips
     Redis and reads Postgres).
  2. RabbitMQ stopped: /health 200 with capabilities async=false, invoke=true, read=true;
     "rabbitmq" in degraded; /ready/async 503 not_ready JSON + Retry-After: 1;
     /ready/invoke 200 {"capability":"invoke","ready":true}; /ready/nope 404 JSON;
     sync invokes 200.
  3. Postgres stopped too: write=false, invoke=true, read=true (Redis cache), /health 200;
     sync invokes 200.
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import json, os, signal, socket, subprocess, time, urllib.parse
from mlstack import Suite, call, RUN

BASE = int(os.environ.get("ML_PORT_BASE", "30000"))
PORTS = {"lambda-executor": BASE + 85, "build-master": BASE + 86, "build-worker": BASE + 87}
INVOKE_BOUND_MS = 200
FN = "degrade-" + os.urandom(4).hex()
APP = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n')}\n"
# no process cache: every invoke looks its function up in Redis (then Postgres), so the
# frozen Redis is on the invoke path
S = Suite("test-degrade", PORTS, {"MINILAMBDA_LOG_LEVEL": "warn", "MINILAMBDA_REGISTRY_LOCAL_TTL_MS": "0"})


def note(msg):
    print("# " + msg, flush=True)


def stack_env():
    env = {}
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v.strip("'\"")
    return env


def pid_of(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def wait_until(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def health():
    """(status, body dict, elapsed ms) of the executor's /health."""
    t0 = time.monotonic()
    st, _, body = call("GET", S.url("lambda-executor") + "/health", timeout=5)
    ms = (time.monotonic() - t0) * 1000
    try:
        return st, json.loads(body), ms
    except ValueError:
        return st, {}, ms


def caps():
    return health()[1].get("capabilities", {})


def invokes(n, tag):
    """n direct sync invokes; returns (statuses, worst ms)."""
    sts, worst = [], 0.0
    for i in range(n):
        t0 = time.monotonic()
        st, _, _ = call("POST", S.url("lambda-executor") + f"/functions/{FN}/invoke",
                        json.dumps({"n": i}).encode(), {"Content-Type": "application/json"}, timeout=10)
        worst = max(worst, (time.monotonic() - t0) * 1000)
        sts.append(st)
    note(f"{tag}: {sts.count(200)}/{n} invokes 200, slowest {worst:.0f} ms")
    return sts, worst


def phase_redis_frozen():
    pid = pid_of(os.path.join(RUN, "redis", "redis.pid"))
    os.kill(pid, signal.SIGSTOP)
    try:
        sts, worst = invokes(50, "redis frozen")
        S.check("redis frozen: direct sync invokes all 200", sts.count(200) == len(sts), sts)
        S.check(f"redis frozen: each invoke within {INVOKE_BOUND_MS} ms", worst < INVOKE_BOUND_MS, worst)
        times, codes = [], []
        for _ in range(20):
            st, body, ms = health()
            times.append(ms)
            codes.append(st)
            time.sleep(0.1)
        note(f"redis frozen: /health slowest {max(times):.0f} ms, median {sorted(times)[10]:.0f} ms")
        S.check("redis frozen: /health answers within 300 ms", max(times) < 300, times)
        S.check("redis frozen: /health 200", all(c == 200 for c in codes), codes)
        S.check("redis frozen: redis listed as degraded",
                wait_until(lambda: "redis" in health()[1].get("degraded", []), 5), health()[1])
        c = caps()
        S.check("redis frozen: invoke, read, write, async all available",
                all(c.get(k) for k in ("invoke", "read", "write", "async")), c)
    finally:
        os.kill(pid, signal.SIGCONT)


def phase_rabbit_down():
    pid = pid_of(os.path.join(RUN, "rabbitmq", "beam.pid"))
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
               open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", 30)
    S.check("rabbitmq down: async capability goes false",
            wait_until(lambda: caps().get("async") is False, 10), caps())
    st, body, _ = health()
    S.check("rabbitmq down: /health 200, invoke/read/write true, rabbitmq degraded",
            st == 200 and body["capabilities"] == {"invoke": True, "async": False, "read": True, "write": True}
            and "rabbitmq" in body["degraded"] and body["status"] == "degraded", (st, body))
    st, h, b = call("GET", S.url("lambda-executor") + "/ready/async")
    err = json.loads(b).get("error", {}) if b else {}
    S.check("rabbitmq down: /ready/async 503 not_ready JSON with Retry-After: 1",
            st == 503 and err.get("code") == "not_ready" and h.get("Retry-After") == "1", (st, h, b))
    st, _, b = call("GET", S.url("lambda-executor") + "/ready/invoke")
    S.check("rabbitmq down: /ready/invoke 200", st == 200 and json.loads(b) == {"capability": "invoke", "ready": True},
            (st, b))
    st, _, b = call("GET", S.url("lambda-executor") + "/ready/nope")
    S.check("/ready/nope 404 JSON", st == 404 and b"\"error\"" in b, (st, b))
    sts, _ = invokes(30, "rabbitmq down")
    S.check("rabbitmq down: direct sync invokes all 200", sts.count(200) == len(sts), sts)


def phase_pg_down():
    env = stack_env()
    subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(env["ML_STACK_PG_BIN"], "pg_ctl"),
                    "-D", env["ML_STACK_PG_DATA"], "-m", "fast", "-W", "stop"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    S.check("postgres down: write capability goes false",
            wait_until(lambda: caps().get("write") is False, 10), caps())
    ok = wait_until(lambda: caps().get("read") is True, 10)  # Redis' check may be backing off
    st, body, _ = health()
    S.check("postgres down: /health 200, invoke and read (Redis) true, write and async false",
            ok and st == 200 and body["capabilities"] == {"invoke": True, "async": False, "read": True, "write": False}
            and "postgres" in body["degraded"], (st, body))
    sts, _ = invokes(30, "postgres + rabbitmq down")
    S.check("postgres down: direct sync invokes all 200", sts.count(200) == len(sts), sts)


def restart_stack():
    """Starts the servers the phases stopped (stack.sh reuses running ones): later tests share them."""
    subprocess.run(["bash", os.path.join(os.environ.get("ML_ROOT", "."), "infrastructure/dev/stack.sh"), "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    try:
        S.start("lambda-executor")
        S.start("build-master")
        S.start("build-worker")
        fn = S.deploy(FN, {"app.py": APP})
        S.check("function deployed", fn and fn["state"] == "active", fn)
        sts, _ = invokes(5, "warm-up")
        S.check("warm invokes 200", sts.count(200) == 5, sts)
        st, body, _ = health()
        note(f"all up: status {body.get('status')}, degraded {body.get('degraded')}")
        S.check("all up: /health 200, every capability true",
                st == 200 and all(body["capabilities"].values()), body)
        phase_redis_frozen()
        phase_rabbit_down()
        phase_pg_down()
    finally:
        S.stop_all()
        restart_stack()
    raise SystemExit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
