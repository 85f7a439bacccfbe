"""lambda-executor function registry and audit reads, against the real test stack.

Starts the executor, sends it build-status webhooks signed here with Python's hmac
(independently of the project's C signer), and checks the functions endpoints, the cached
lookup behind DryRun invocations (Redis written through, Redis stopped and killed), and the
GET /invocations endpoints over rows stored in Postgres.
Prints "ok - ..." / "not ok - ..." per check (tests/run.sh counts them).

Environment: the stack's MINILAMBDA_* variables, ML_BIN_DIR, ML_RUN_DIR, ML_ROOT;
ML_EXECUTOR_BIN overrides the executor binary.
"""
import base64, datetime, glob, hashlib, hmac, json, os, signal, subprocess, sys, tempfile, time
import urllib.error, urllib.parse, urllib.request, uuid

import mlstack  # noqa: F401 (every request carries the internal token, as a sibling service's would)

ROOT = os.environ.get("ML_ROOT", os.getcwd())
BIN = os.environ["ML_BIN_DIR"]
RUN = os.environ["ML_RUN_DIR"]
EXECUTOR = os.environ.get("ML_EXECUTOR_BIN", os.path.join(BIN, "lambda-executor"))
PORT = 31281
BASE = f"http://127.0.0.1:{PORT}"
LOGS = os.path.join(ROOT, ".run", "test-executor-registry")
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
LOCAL_TTL_MS = 200
failures = 0
proc = None


def check(name, cond, detail=""):
    global failures
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {detail}"), flush=True)
    failures += 0 if cond else 1
    return cond


def psql(sql):
    out = subprocess.run(["psql", os.environ["MINILAMBDA_LAMBDA_DB_URL"], "-v", "ON_ERROR_STOP=1", "-q",
                          "-tAc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def redis_cli(*args):
    url = urllib.parse.urlparse(os.environ["MINILAMBDA_REDIS_URL"])
    out = subprocess.run(["redis-cli", "-h", url.hostname, "-p", str(url.port), *args],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


# ---------------------------------------------------------------- HTTP

def request(method, path, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None), dict(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw
        return e.code, doc, dict(e.headers)


def sign(msg_id, ts, body, secret=SECRET):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(build_id, function_id, status, name, at=None, error=None, sha=None, config=None,
          handler="app.handler"):
    doc = {"type": "build.status", "build_id": build_id, "function_id": function_id,
           "status": status, "error": error, "timestamp": iso(at if at is not None else time.time()),
           "function": {"name": name, "runtime": "python3", "handler": handler,
                        "config": config if config is not None else
                        {"memory_mb": 128, "timeout_s": 30, "concurrency": 10, "env": {}}},
           "artifact": None}
    if status == "completed":
        doc["artifact"] = {"prefix": f"artifacts/{function_id}/{build_id}/",
                           "sha256": sha or hashlib.sha256(build_id.encode()).hexdigest(),
                           "size_bytes": 1234, "files": 3}
    return doc


def deliver(doc, msg_id=None, ts=None, secret=SECRET, signature=None):
    """POSTs a signed build-status webhook; returns (status, body)."""
    body = json.dumps(doc).encode()
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    ts = str(int(time.time()) if ts is None else ts)
    headers = {"webhook-id": msg_id, "webhook-timestamp": ts,
               "webhook-signature": signature if signature is not None else sign(msg_id, ts, body, secret)}
    st, b, _ = request("POST", f"/webhooks/build-status/{doc['build_id']}", body, headers)
    return st, b


def get_fn(fn):
    return request("GET", f"/functions/{fn}")[:2]


def dry_run(fn):
    st, _, h = request("POST", f"/functions/{fn}/invoke", b"{}", {"X-Invocation-Type": "DryRun"})
    return st, h


# ---------------------------------------------------------------- executor process

def start_executor(spill):
    global proc
    env = dict(os.environ)
    env.update({"MINILAMBDA_EXECUTOR_PORT": str(PORT), "MINILAMBDA_BIND_ADDR": "127.0.0.1",
                "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": SECRET,
                "MINILAMBDA_REGISTRY_LOCAL_TTL_MS": str(LOCAL_TTL_MS),
                "MINILAMBDA_AUDIT_SPILL_PATH": spill})
    log = open(os.path.join(LOGS, "executor.log"), "ab")
    proc = subprocess.Popen([EXECUTOR], env=env, stdout=log, stderr=subprocess.STDOUT)
    end = time.time() + 60
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"executor exited with {proc.returncode}; see {LOGS}/executor.log")
        try:
            urllib.request.urlopen(BASE + "/health", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering (maybe 503 while a dependency warms up)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError("executor did not answer /health")


def stop_executor():
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.returncode if proc else None


# ---------------------------------------------------------------- scenarios

def signatures(run):
    fid, bid = str(uuid.uuid4()), str(uuid.uuid4())
    doc = event(bid, fid, "queued", f"sig-{run}")
    check("a webhook without a signature is refused with 401",
          deliver(doc, signature="")[0] == 401)
    st, b = deliver(doc, secret="whsec_" + base64.b64encode(os.urandom(32)).decode())
    check("a webhook signed with another secret is refused with 401",
          st == 401 and b["error"]["code"] == "invalid_signature", (st, b))
    check("a webhook with a stale timestamp (10 min old) is refused with 401",
          deliver(doc, ts=int(time.time()) - 600)[0] == 401)
    body = json.dumps(doc).encode()
    mid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
    st, _, _ = request("POST", f"/webhooks/build-status/{bid}", body + b" ",
                       {"webhook-id": mid, "webhook-timestamp": ts, "webhook-signature": sign(mid, ts, body)})
    check("a body changed after signing is refused with 401", st == 401, st)
    check("no function was created by refused webhooks", get_fn(fid)[0] == 404)
    st, b = deliver(dict(doc, status="exploded"))
    check("a malformed (but signed) event gets 400", st == 400 and b["error"]["code"] == "invalid_body", (st, b))
    other = dict(doc, build_id=str(uuid.uuid4()))
    body = json.dumps(other).encode()
    st, _, _ = request("POST", f"/webhooks/build-status/{bid}", body,
                       {"webhook-id": mid, "webhook-timestamp": ts, "webhook-signature": sign(mid, ts, body)})
    check("an event whose build_id differs from the path gets 400", st == 400, st)


def lifecycle(run):
    fid, b1, b2, b3 = (str(uuid.uuid4()) for _ in range(4))
    name = f"life-{run}"
    t0 = time.time()
    cfg = {"memory_mb": 256, "timeout_s": 12, "concurrency": 4, "env": {"GREETING": "hi"},
           "rate_limit": {"rps": 5, "burst": 10}}
    q = event(b1, fid, "queued", name, at=t0, config=cfg)
    st, b = deliver(q, msg_id="dup-" + b1)
    check("queued: 200 {ok:true}", st == 200 and b == {"ok": True}, (st, b))
    st, f = get_fn(fid)
    check("queued creates the function as pending with the build's config",
          st == 200 and f["state"] == "pending" and f["version"] is None and f["name"] == name and
          f["memory_mb"] == 256 and f["timeout_s"] == 12 and f["concurrency"] == 4 and
          f["env"] == {"GREETING": "***"} and f["rate_limit"] == {"rps": 5, "burst": 10} and
          f["max_retries"] == 2, f)
    st, f, _ = request("GET", f"/functions/{fid}", None, {"X-Minilambda-Reveal-Secrets": "1"})
    check("env values only with the gateway's reveal header (docs/secrets.md)",
          st == 200 and f["env"] == {"GREETING": "hi"}, (st, f))
    check("GET /functions/{name} finds it by name", get_fn(name)[1].get("id") == fid)
    check("GET /functions/{ID} accepts an upper-case id", get_fn(fid.upper())[1].get("id") == fid)
    st, b = deliver(q, msg_id="dup-" + b1)
    check("a repeated delivery (same webhook-id) is a 200 no-op", st == 200 and b.get("duplicate") is True, b)
    check("DryRun of a pending function is 409", dry_run(name)[0] == 409)
    deliver(event(b1, fid, "building", name, at=t0 + 1))
    c1 = event(b1, fid, "completed", name, at=t0 + 2)
    st, _ = deliver(c1)
    st2, f = get_fn(fid)
    check("completed makes version 1 active with its artifact",
          st == 200 and f["state"] == "active" and f["version"] == 1 and
          f["artifact"]["sha256"] == c1["artifact"]["sha256"] and f["last_build"]["status"] == "completed", f)
    check("DryRun of the active function is 204", dry_run(name)[0] == 204)
    deliver(c1)  # the same build completing again under another webhook-id
    check("the same build completing twice adds one version",
          psql(f"select count(*) from function_versions where function_id = '{fid}'") == "1")
    deliver(event(b2, fid, "queued", name, at=t0 + 10))
    st, f = get_fn(fid)
    check("a new build's queued keeps the function active on version 1",
          f["state"] == "active" and f["version"] == 1 and f["last_build"]["status"] == "queued", f)
    deliver(event(b2, fid, "completed", name, at=t0 + 12))
    deliver(event(b2, fid, "queued", name, at=t0 + 10))  # a late retry of the earlier transition
    st, f = get_fn(fid)
    check("a second build completes as version 2; a late 'queued' changes nothing",
          f["state"] == "active" and f["version"] == 2 and f["last_build"]["status"] == "completed", f)
    deliver(event(b3, fid, "queued", name, at=t0 + 20))
    deliver(event(b3, fid, "failed", name, at=t0 + 21, error="zip entry '../x' escapes the package"))
    st, f = get_fn(fid)
    check("a failed build leaves the active version 2 in place (and shows the failure)",
          f["state"] == "active" and f["version"] == 2 and f["error"] is None and
          f["last_build"]["status"] == "failed" and "escapes" in f["last_build"]["error"], f)
    return fid, name


def out_of_order(run):
    # completed before queued: the function is created from the completed event
    fid, bid, name = str(uuid.uuid4()), str(uuid.uuid4()), f"ooo-{run}"
    t0 = time.time()
    st, _ = deliver(event(bid, fid, "completed", name, at=t0 + 2))
    deliver(event(bid, fid, "building", name, at=t0 + 1))
    deliver(event(bid, fid, "queued", name, at=t0))
    st2, f = get_fn(fid)
    check("completed before queued/building: active version 1, later-arriving events change nothing",
          st == 200 and f["state"] == "active" and f["version"] == 1 and f["last_build"]["status"] == "completed", f)
    # two builds racing: the newer build's version stays active when the older completes late
    fid, old, new, name = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), f"race-{run}"
    deliver(event(old, fid, "queued", name, at=t0))
    deliver(event(new, fid, "queued", name, at=t0 + 5))
    deliver(event(new, fid, "completed", name, at=t0 + 6))
    deliver(event(old, fid, "completed", name, at=t0 + 7))
    st, f = get_fn(fid)
    vers = psql(f"select string_agg(v.version || ':' || v.build_id, ',' order by v.version) from function_versions v"
                f" where function_id = '{fid}'")
    check("an older build completing late becomes version 2 but does not replace the newer build's version",
          f["version"] == 1 and vers == f"1:{new},2:{old}", (f, vers))
    # never-built function: failed, then a new build brings it back to pending, then active
    fid, b1, b2, name = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), f"fail-{run}"
    deliver(event(b1, fid, "queued", name, at=t0))
    deliver(event(b1, fid, "failed", name, at=t0 + 1, error="handler file app.py is missing"))
    st, f = get_fn(fid)
    check("a never-built function whose build failed is 'failed' with the error",
          f["state"] == "failed" and f["version"] is None and "app.py" in (f["error"] or ""), f)
    check("DryRun of a failed function is 409", dry_run(name)[0] == 409)
    deliver(event(b2, fid, "queued", name, at=t0 + 10))
    st, f = get_fn(fid)
    check("a newer build of a failed function makes it pending again", f["state"] == "pending" and f["error"] is None, f)
    deliver(event(b1, fid, "failed", name, at=t0 + 1, error="handler file app.py is missing"))
    check("a late retry of the old failure does not fail it again", get_fn(fid)[1]["state"] == "pending")
    deliver(event(b2, fid, "completed", name, at=t0 + 11))
    check("...and active once that build completes", get_fn(fid)[1]["state"] == "active")


def patch(fid, name):
    ok = {"memory_mb": 512, "timeout_s": 60, "env": {"A": "1", "B_2": "two"}, "rate_limit": {"rps": 2.5, "burst": 5},
          "concurrency": 7, "max_retries": 0, "on_success_url": "https://example.com/ok",
          "on_failure_url": "http://example.com/fail", "max_event_age_s": 600}
    st, f, _ = request("PATCH", f"/functions/{name}", ok)
    check("PATCH with every field answers 200 with the updated function",
          st == 200 and all(f[k] == v for k, v in ok.items() if k != "env") and
          f["env"] == {"A": "***", "B_2": "***"} and f["version"] == 2, (st, f))
    check("the change is stored", get_fn(fid)[1]["memory_mb"] == 512)
    bad = [({"memory_mb": 32}, "memory_mb"), ({"memory_mb": 5000}, "memory_mb"), ({"memory_mb": "256"}, "memory_mb"),
           ({"memory_mb": 128.5}, "memory_mb"), ({"timeout_s": 0}, "timeout_s"), ({"timeout_s": 901}, "timeout_s"),
           ({"env": {"1BAD": "x"}}, "env"), ({"env": {"A": 1}}, "env"), ({"env": ["A"]}, "env"),
           ({"env": {"BIG": "x" * 4100}}, "env"), ({"rate_limit": {"rps": 0}}, "rate_limit"),
           ({"rate_limit": {"rps": 1, "burst": 0}}, "rate_limit"), ({"rate_limit": {"rps": 1, "x": 1}}, "rate_limit"),
           ({"concurrency": 0}, "concurrency"), ({"concurrency": 1001}, "concurrency"),
           ({"max_retries": 3}, "max_retries"), ({"on_success_url": "ftp://x"}, "on_success_url"),
           ({"on_failure_url": "http://"}, "on_failure_url"), ({"on_failure_url": "http://a b"}, "on_failure_url"),
           ({"max_event_age_s": 59}, "max_event_age_s"), ({"timeout_s": None}, "timeout_s")]
    results = []
    for body, field in bad:
        st, b, _ = request("PATCH", f"/functions/{fid}", body)
        results.append((body, st, b))
        if not (st == 400 and b["error"]["code"] == "invalid_field" and b["error"]["message"].startswith(field)):
            break
    check(f"PATCH refuses each of {len(bad)} invalid values with a 400 naming the field",
          len(results) == len(bad) and results[-1][1] == 400, results[-1])
    # handler and runtime are PATCHable since issue 17 (docs/versions.md); state never is
    st, b, _ = request("PATCH", f"/functions/{fid}", {"memory_mb": 256, "state": "active"})
    check("PATCH refuses an unknown field with 400", st == 400 and "state" in b["error"]["message"], b)
    check("a refused PATCH changes nothing", get_fn(fid)[1]["memory_mb"] == 512)
    st, b, _ = request("PATCH", f"/functions/{fid}", b"{nope", {})
    check("PATCH with a body that is not JSON is 400", st == 400, st)
    st, f, _ = request("PATCH", f"/functions/{fid}", {"on_success_url": None, "rate_limit": None, "concurrency": None})
    check("PATCH with null clears on_success_url, rate_limit and concurrency",
          st == 200 and f["on_success_url"] is None and f["rate_limit"] is None and f["concurrency"] is None
          and f["on_failure_url"] == "http://example.com/fail", f)
    check("PATCH of an unknown function is 404",
          request("PATCH", f"/functions/{uuid.uuid4()}", {"memory_mb": 128})[0] == 404)


def listing(run):
    t0 = time.time()
    ids = []
    for i in range(7):
        fid = str(uuid.uuid4())
        ids.append(fid)
        deliver(event(str(uuid.uuid4()), fid, "queued", f"list-{run}-{i}", at=t0 + i))
    seen, cursor, pages = [], None, 0
    while pages < 5000:  # other tests leave hundreds of functions on the shared stack
        st, b, _ = request("GET", "/functions?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        if st != 200:
            break
        pages += 1
        seen += [f["id"] for f in b["functions"]]
        cursor = b["next_cursor"]
        if not cursor:
            break
    mine = [i for i in seen if i in ids]
    check("GET /functions pages (limit=3) list every function once, oldest first, ending with next_cursor null",
          mine == ids and len(seen) == len(set(seen)) and cursor is None, (mine, ids))
    # a cursor stays valid after its row is deleted
    st, b, _ = request("GET", "/functions?limit=1")
    first = b["functions"][0]["id"]
    cur = b["next_cursor"]
    request("DELETE", f"/functions/{first}")
    st, b2, _ = request("GET", f"/functions?limit=1&cursor={cur}")
    check("a cursor still works after the row it points at is deleted", st == 200 and len(b2["functions"]) == 1, (st, b2))
    check("GET /functions rejects a bad limit or cursor with 400",
          request("GET", "/functions?limit=0")[0] == 400 and request("GET", "/functions?cursor=zzz")[0] == 400)


def delete(run):
    fid, bid, name = str(uuid.uuid4()), str(uuid.uuid4()), f"del-{run}"
    deliver(event(bid, fid, "completed", name))
    dry_run(name)  # warm the caches
    # disabled, so the executor's scheduler never fires it during the test
    sched = psql(f"insert into schedules (function_id, cron, enabled) values ('{fid}', '* * * * *', false)"
                 f" returning id")
    st, b, _ = request("DELETE", f"/functions/{name}")
    check("DELETE answers 204", st == 204, (st, b))
    check("the function is gone (GET 404) with its versions and schedules",
          get_fn(fid)[0] == 404 and psql(f"select count(*) from function_versions where function_id = '{fid}'") == "0"
          and psql(f"select count(*) from schedules where id = '{sched}'") == "0")
    check("DryRun of the deleted function is 404 at once (caches invalidated)", dry_run(name)[0] == 404)
    check("DELETE of an unknown function is 404", request("DELETE", f"/functions/{name}")[0] == 404)
    st, b = deliver(event(str(uuid.uuid4()), fid, "completed", name))
    check("a late webhook for a deleted function is 410 (the sender stops) and does not revive it",
          st == 410 and get_fn(fid)[0] == 404, (st, b))
    fid2 = str(uuid.uuid4())
    deliver(event(str(uuid.uuid4()), fid2, "completed", name))
    st, h = dry_run(name)
    check("the name can be used by a new function, and lookups by name find the new one",
          get_fn(name)[1].get("id") == fid2 and st == 204, (st, get_fn(name)))


def redis_pid():
    files = glob.glob(os.path.join(RUN, "redis", "*.pid")) + glob.glob(os.path.join(RUN, "*redis*.pid"))
    for f in files:
        try:
            return int(open(f).read().strip())
        except (OSError, ValueError):
            pass
    return None


def caching(run):
    fid, bid, name = str(uuid.uuid4()), str(uuid.uuid4()), f"cache-{run}"
    deliver(event(bid, fid, "completed", name))
    dry_run(name)
    raw = redis_cli("GET", f"ml:fn:{fid}")
    cached = json.loads(raw) if raw.startswith("{") else {}
    check("a lookup leaves the function in Redis (ml:fn:<id>, ml:fnname:<namespace>/<name>) with a TTL",
          cached.get("name") == name and redis_cli("EXISTS", f"ml:fnname:default/{name}") == "1" and
          0 < int(redis_cli("PTTL", f"ml:fn:{fid}")) <= 60000, raw)
    request("PATCH", f"/functions/{fid}", {"memory_mb": 1024})
    after = json.loads(redis_cli("GET", f"ml:fn:{fid}") or "{}")
    check("PATCH writes the new state through to Redis (newer generation)",
          after.get("memory_mb") == 1024 and after.get("generation", 0) > cached.get("generation", 0), after)
    pid = redis_pid()
    if not check("the Redis server's pid is known", pid is not None, RUN):
        return
    # Redis hanging (SIGSTOP): lookups skip it after one short timeout; changes are owed
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(LOCAL_TTL_MS / 1000 + 0.1)
        t = time.time()
        codes = [dry_run(name)[0] for _ in range(20)]
        took = time.time() - t
        check("Redis hanging: 20 DryRun lookups still succeed (204) in < 2 s", codes == [204] * 20 and took < 2,
              (codes, took))
        st, f = get_fn(fid)
        check("Redis hanging: GET /functions/{fn} works", st == 200 and f["id"] == fid, st)
        st, f, _ = request("PATCH", f"/functions/{fid}", {"memory_mb": 2048})
        check("Redis hanging: PATCH works", st == 200 and f["memory_mb"] == 2048, (st, f))
        fid2 = str(uuid.uuid4())
        deliver(event(str(uuid.uuid4()), fid2, "completed", f"cache2-{run}"))
        check("Redis hanging: a function never seen before is found through Postgres",
              dry_run(f"cache2-{run}")[0] == 204)
    finally:
        os.kill(pid, signal.SIGCONT)
    # the breaker retries Redis after at most ~10 s; the owed invalidation then lands
    end, fixed = time.time() + 20, False
    while time.time() < end and not fixed:
        time.sleep(LOCAL_TTL_MS / 1000 + 0.05)
        dry_run(f"cache2-{run}")
        raw = redis_cli("GET", f"ml:fn:{fid}")
        fixed = raw == "" or json.loads(raw).get("memory_mb") == 2048
    check("after Redis recovers, the change made while it hung replaces the stale Redis entry", fixed, raw)
    # Redis killed: lookups go on; the stack script restarts it
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    time.sleep(LOCAL_TTL_MS / 1000 + 0.1)
    codes = [dry_run(name)[0] for _ in range(5)]
    check("Redis killed: DryRun lookups still succeed", codes == [204] * 5, codes)
    st, h, _ = request("GET", "/health")
    check("Redis killed: /health stays 200 (Redis is optional for the executor)", st == 200, (st, h))
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], capture_output=True,
                   env=dict(os.environ), timeout=120)
    end, back = time.time() + 20, False
    while time.time() < end and not back:
        time.sleep(LOCAL_TTL_MS / 1000 + 0.1)
        dry_run(name)
        back = redis_cli("EXISTS", f"ml:fn:{fid}") == "1" or redis_cli("EXISTS", f"ml:fnname:default/{name}") == "1"
    check("after Redis restarts, lookups fill it again", back)


def invocations(run):
    fid, name = str(uuid.uuid4()), f"audit-{run}"
    deliver(event(str(uuid.uuid4()), fid, "completed", name))
    ids = []
    base = time.time() - 100
    for i in range(5):
        iid = str(uuid.uuid4())
        ids.append(iid)
        status = "failed" if i == 3 else "succeeded"
        psql(f"insert into invocations (id, function_id, version, trigger, status, attempts, cold_start, payload_size,"
             f" response_size, result, error_type, error_message, log_tail, duration_ms, memory_used_mb, created_at,"
             f" started_at, finished_at) values ('{iid}', '{fid}', 1, 'http_sync', '{status}', 1, {str(i == 0).lower()},"
             f" 10, 5, convert_to('{{\"n\": {i}}}', 'UTF8'), {'$$Unhandled$$' if i == 3 else 'NULL'},"
             f" {'$$boom$$' if i == 3 else 'NULL'}, '\\x6869210a'::bytea, {i + 1}, 17,"
             f" to_timestamp({base + i}), to_timestamp({base + i}), to_timestamp({base + i + 0.01}))")
    st, b, _ = request("GET", f"/invocations/{ids[3]}")
    check("GET /invocations/{id} shows the record (status, error, timings, memory, cold start)",
          st == 200 and b["id"] == ids[3] and b["function_id"] == fid and b["status"] == "failed" and
          b["error_type"] == "Unhandled" and b["error_message"] == "boom" and b["duration_ms"] == 4 and
          b["memory_used_mb"] == 17 and b["cold_start"] is False and b["version"] == 1 and
          b["trigger"] == "http_sync" and b["created_at"].endswith("Z") and b["attempts"] == 1, b)
    check("the result is returned as JSON and the log tail as base64",
          b.get("result") == {"n": 3} and base64.b64decode(b["log_tail"]) == b"hi!\n", b)
    check("GET /invocations/{id} of an unknown id is 404", request("GET", f"/invocations/{uuid.uuid4()}")[0] == 404)
    seen, cursor = [], None
    for _ in range(10):
        st, b, _ = request("GET", f"/functions/{name}/invocations?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        if st != 200:
            break
        seen += [x["id"] for x in b["invocations"]]
        cursor = b["next_cursor"]
        if not cursor:
            break
    check("GET /functions/{fn}/invocations pages newest first through all rows",
          seen == list(reversed(ids)) and cursor is None, (seen, ids))
    st, b, _ = request("GET", f"/functions/{fid}/invocations?status=failed")
    check("?status=failed filters", st == 200 and [x["id"] for x in b["invocations"]] == [ids[3]], b)
    check("a bad status filter is 400", request("GET", f"/functions/{fid}/invocations?status=nope")[0] == 400)
    check("invocations of an unknown function are 404",
          request("GET", f"/functions/nobody-{run}/invocations")[0] == 404)


def main():
    os.makedirs(LOGS, exist_ok=True)
    subprocess.run([os.path.join(BIN, "ml-migrate"), os.environ["MINILAMBDA_LAMBDA_DB_URL"],
                    os.path.join(ROOT, "migrations", "lambda")], check=True, capture_output=True)
    run = uuid.uuid4().hex[:8]
    spill_dir = tempfile.mkdtemp(prefix="ml-audit-")
    start_executor(os.path.join(spill_dir, "audit.jsonl"))
    try:
        signatures(run)
        fid, name = lifecycle(run)
        out_of_order(run)
        patch(fid, name)
        listing(run)
        delete(run)
        invocations(run)
        caching(run)
    finally:
        rc = stop_executor()
    check("the executor stops cleanly on SIGTERM", rc == 0, rc)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
