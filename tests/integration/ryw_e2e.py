"""Read-your-writes after create (issue 13 item 3), end to end through the gateway.

A name the platform has accepted (POST /functions → 202) is never reported as nonexistent:
  - RYW_N (default 1000) create→invoke races: POST, then at once invoke and GET; every invoke
    is 409 build_in_progress (with the 202's build_id and Retry-After: 1) or 200, every GET
    200 — 0 × 404. Every tenth name is invoked before it exists first (a 404 then), so the
    gateway's and the executor's negative caches are in play;
  - GET /functions/{fn}?wait=active&timeout_s=30 returns once it is active; bad wait/timeout_s
    are 400 invalid_query; a failed build: the wait returns failed, invoke 409 build_failed;
  - POST→DELETE races never resurrect the function when the build finishes, also when the
    queued event could not be delivered inline (a second build-master with the wrong internal
    secret: the executor hears of the function only from the outbox, after the DELETE).
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import base64, concurrent.futures, http.client, json, os, subprocess, threading, time, uuid
from mlstack import BIN, Suite, call, make_zip, psql

PORTS = {"gateway": 31980, "lambda-executor": 31981, "build-master": 31982, "build-worker": 31992,
         "build-master-b": 31983}
N = int(os.environ.get("RYW_N", "1000"))
THREADS = 8
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
S = Suite("test-ryw", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
    "MINILAMBDA_BUILD_RATE_LIMIT_PER_MIN": "100000", "MINILAMBDA_BUILD_RATE_LIMIT_BURST": "100000",
    "MINILAMBDA_DEFAULT_RATE_LIMIT_RPS": "100000", "MINILAMBDA_DEFAULT_RATE_LIMIT_BURST": "100000",
    "MINILAMBDA_BUILD_CONCURRENCY": "4"})
APP = "def handler(event, context):\n    return {'ok': True}\n"
GOOD = base64.b64encode(make_zip({"app.py": APP})).decode()
BAD = base64.b64encode(make_zip({"other.py": APP})).decode()  # no app.py: the build fails


def note(msg):
    print("# " + msg, flush=True)


class Client:
    """One keep-alive connection to a daemon, per thread."""

    def __init__(self, port, token=None):
        self.port, self.token, self.conn = port, token, None

    def req(self, method, path, doc=None, timeout=90):
        body = json.dumps(doc).encode() if doc is not None else None
        h = {"Content-Type": "application/json"} if body else {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        for attempt in (0, 1):
            try:
                if not self.conn:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise


def gw():
    return Client(PORTS["gateway"], S.token)


def create(c, name, code=GOOD):
    return c.req("POST", "/functions", {"name": name, "runtime": "python3", "handler": "app.handler",
                                        "code_base64": code})


def err(body):
    try:
        return json.loads(body).get("error") or {}
    except ValueError:
        return {}


def race(run, i, c):
    """POST, then invoke and GET at once; returns what each said."""
    name = f"ryw-{run}-{i}"
    out = {"name": name}
    if i % 10 == 0:
        out["pre"] = c.req("POST", f"/functions/{name}/invoke", {})[0]
    st, _, body = create(c, name)
    out["post"] = st
    if st != 202:
        out["post_body"] = body[:200]
        return out
    out["build_id"] = json.loads(body)["build_id"]
    st, h, body = c.req("POST", f"/functions/{name}/invoke", {})
    e = err(body)
    out["invoke"] = (st, e.get("code"), e.get("build_id"), h.get("retry-after"))
    st, _, body = c.req("GET", f"/functions/{name}")
    out["get"] = (st, json.loads(body).get("state") if st == 200 else body[:100])
    return out


def check_races(results, took):
    posts = [r for r in results if r["post"] == 202]
    S.check(f"{N} creates through the gateway all 202", len(posts) == N,
            [r for r in results if r["post"] != 202][:3])
    pre = [r["pre"] for r in results if "pre" in r]
    S.check("invoking a name before it exists is 404 (negative caches primed)",
            pre and all(p == 404 for p in pre), pre[:5])
    inv = [r["invoke"] for r in posts]
    n404 = sum(1 for v in inv if v[0] == 404)
    busy = [v for v, r in zip(inv, posts) if v[0] == 409]
    ok = sum(1 for v in inv if v[0] == 200)
    note(f"create→invoke races: {len(inv)}: 404 × {n404}, 409 × {len(busy)}, 200 × {ok}, "
         f"other × {len(inv) - n404 - len(busy) - ok}; {took:.1f} s")
    S.check("create→invoke races: 0 × 404, only 409 or 200", n404 == 0 and len(busy) + ok == len(inv),
            [v for v in inv if v[0] not in (409, 200)][:5])
    good = all(v[1] == "build_in_progress" and v[2] == r["build_id"] and v[3] == "1"
               for v, r in zip(inv, posts) if v[0] == 409)
    S.check("every 409 says build_in_progress with the 202's build_id and Retry-After: 1", good,
            [(v, r["build_id"]) for v, r in zip(inv, posts) if v[0] == 409][:3])
    gets = [r["get"] for r in posts]
    S.check("GET right after 202 is never 404 (200, pending or active)",
            all(g[0] == 200 and g[1] in ("pending", "active") for g in gets),
            [g for g in gets if g[0] != 200][:5])


def check_wait(run):
    c = gw()
    for q in ("wait=active&timeout_s=0", "wait=active&timeout_s=61", "wait=active&timeout_s=x",
              "wait=ready&timeout_s=5", "timeout_s=5"):
        st, _, body = c.req("GET", f"/functions/nosuch-{run}?{q}")
        S.check(f"GET ?{q} is 400 invalid_query", st == 400 and err(body).get("code") == "invalid_query",
                (st, body[:200]))
    name = f"rywwait-{run}"
    st, _, body = create(c, name)
    t0 = time.time()
    st2, _, body2 = c.req("GET", f"/functions/{name}?wait=active&timeout_s=30")
    took = time.time() - t0
    doc = json.loads(body2) if st2 == 200 else {}
    note(f"wait=active returned after {took * 1000:.0f} ms")
    S.check("?wait=active&timeout_s=30 returns active", st == 202 and st2 == 200 and doc.get("state") == "active",
            (st, st2, body2[:200]))
    st, _, body = c.req("POST", f"/functions/{name}/invoke", {})
    S.check("after the wait, invoke is 200", st == 200, (st, body[:200]))
    bad = f"rywbad-{run}"
    st, _, body = create(c, bad, BAD)
    build_id = json.loads(body).get("build_id") if st == 202 else None
    st2, _, body2 = c.req("GET", f"/functions/{bad}?wait=active&timeout_s=30")
    S.check("a failed build: the wait returns state failed",
            st2 == 200 and json.loads(body2).get("state") == "failed", (st, st2, body2[:200]))
    st, _, body = c.req("POST", f"/functions/{bad}/invoke", {})
    e = err(body)
    S.check("a failed build: invoke is 409 build_failed with its build_id",
            st == 409 and e.get("code") == "build_failed" and e.get("build_id") == build_id, (st, body[:200]))
    st, _, body = c.req("GET", f"/functions/nosuch-{run}?wait=active&timeout_s=5")
    S.check("?wait on an unknown name is 404 at once", st == 404, (st, body[:200]))


def executor_row(fid):
    return psql(f"SELECT count(*) FROM functions WHERE id = '{fid}'")


def wait_build(fid, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        left = psql(f"SELECT count(*) FROM builds WHERE function_id = '{fid}'"
                    " AND status NOT IN ('completed', 'failed')", "MINILAMBDA_BUILD_DB_URL")
        pend = psql(f"SELECT count(*) FROM webhook_deliveries WHERE function_id = '{fid}'"
                    " AND target = 'lambda' AND status = 'pending'", "MINILAMBDA_BUILD_DB_URL")
        if left == "0" and pend == "0":
            return True
        time.sleep(0.1)
    return False


def check_delete(run, client, label, n=10):
    """POST→DELETE races; none may come back once its build and webhooks are done."""
    ids, bad = [], []
    for i in range(n):
        name = f"rywdel{label}-{run}-{i}"
        st, _, body = create(client, name)
        if st != 202:
            bad.append(("post", st, body[:100]))
            continue
        fid = json.loads(body)["function_id"]
        st, _, body = client.req("DELETE", f"/functions/{name}")
        if st != 204:
            bad.append(("delete", st, body[:100]))
        ids.append((name, fid))
    S.check(f"POST→DELETE ({label}): {n} × 202 then 204", not bad, bad[:3])
    done = all(wait_build(fid) for _, fid in ids)
    c = gw()
    back = [(name, c.req("GET", f"/functions/{name}")[0], executor_row(fid)) for name, fid in ids]
    S.check(f"POST→DELETE ({label}): builds and webhooks settled, nothing resurrected (404, no row)",
            done and all(g == 404 and row == "0" for _, g, row in back), (done, back[:3]))


def settle_and_clean(run, names):
    """Waits for the races' builds (so no job is left for other tests) and deletes them."""
    t0 = time.time()
    end = t0 + 90
    left = None
    while time.time() < end:
        left = psql("SELECT (SELECT count(*) FROM builds b JOIN build_functions f ON f.id = b.function_id"
                    f" WHERE f.name LIKE 'ryw%-{run}%' AND b.status NOT IN ('completed', 'failed'))"
                    " + (SELECT count(*) FROM webhook_deliveries w JOIN build_functions f ON"
                    f" f.id = w.function_id WHERE f.name LIKE 'ryw%-{run}%' AND w.target = 'lambda'"
                    " AND w.status = 'pending')", "MINILAMBDA_BUILD_DB_URL")
        if left == "0":
            break
        time.sleep(0.5)
    note(f"the races' builds settled in {time.time() - t0:.1f} s more (left: {left})")
    active = psql(f"SELECT count(*) FROM functions WHERE name LIKE 'ryw-{run}-%' AND state = 'active'")
    S.check(f"all {N} raced functions end active", left == "0" and active == str(N), (left, active))
    with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
        list(ex.map(lambda n: gw().req("DELETE", f"/functions/{n}"), names))


def main():
    t0 = time.time()
    run = uuid.uuid4().hex[:8]
    S.token = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "ryw"], capture_output=True,
                             text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        # a build-master whose inline delivery always fails (wrong secret: the executor says 401)
        own = S.env["MINILAMBDA_INTERNAL_WEBHOOK_SECRET"]
        S.env["MINILAMBDA_INTERNAL_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        S.start("build-master-b", "build-master")
        S.env["MINILAMBDA_INTERNAL_WEBHOOK_SECRET"] = own
        check_wait(run)
        check_delete(run, gw(), "gateway")
        check_delete(run, Client(PORTS["build-master-b"]), "no-inline")
        local = {}
        t1 = time.time()

        def one(i):
            return race(run, i, local.setdefault(threading.get_ident(), gw()))

        with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
            results = list(ex.map(one, range(N)))
        check_races(results, time.time() - t1)
        settle_and_clean(run, [r["name"] for r in results])
    finally:
        S.stop_all()
        note(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
    raise SystemExit(1 if S.failures else 0)
