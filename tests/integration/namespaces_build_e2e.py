"""Tenants on the build side (docs/tenants.md, "On the build side") on the test stack: the
build-master and build-worker called directly, as the gateway would (X-Minilambda-Namespace,
X-Minilambda-Quota-Functions; the internal token is added by mlstack).

  1. the same name in two namespaces: both 202 (with "namespace"), both build; the same name
     again in one of them is 409 name_taken;
  2. every build-master route across namespaces (PUT code, GET builds, DELETE, GET build) is
     404 with the body of a missing one, by id and by name; the function is untouched; an
     invalid namespace is 400 invalid_namespace on every route;
  3. the build.status webhook the user receives and the event queued for the executor carry
     function.namespace; the inline notify and the delete reach the executor in it;
  4. max_functions: N creates ok, N+1 is 403 quota_exceeded with nothing left behind (no row,
     no build, no package in S3); a delete frees a slot; no header = no limit; a malformed one
     is 400; 8 parallel creates with quota 3, three rounds, never more than 3 live.
Prints "ok - ..." / "not ok - ..." and "# ..." notes."""
import base64, concurrent.futures, http.server, json, os, threading, time, uuid
from mlstack import RUN, Suite, call, make_zip, ns_call, psql, wait_build as mlstack_wait_build

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 940  # past the stack's own ports (base..+900), below the next base
PORTS = {"lambda-executor": BASE, "build-master": BASE + 1, "build-worker": BASE + 2, "build-master-stub": BASE + 3}
S = Suite("test-namespaces-build", PORTS)
NS_H, QUOTA_H = "X-Minilambda-Namespace", "X-Minilambda-Quota-Functions"
ZIP = base64.b64encode(make_zip({"app.py": "def handler(event, context):\n    return event\n"})).decode()
BDB = "MINILAMBDA_BUILD_DB_URL"


class Receiver(http.server.BaseHTTPRequestHandler):
    events = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Receiver.lock:
            Receiver.events.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


class StubExecutor(http.server.BaseHTTPRequestHandler):
    """What a second build-master sends the lambda-executor: (method, path, namespace header,
    the body's function.namespace)."""
    calls = []

    def answer(self, status):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        ns = json.loads(body).get("function", {}).get("namespace") if body else None
        with Receiver.lock:
            StubExecutor.calls.append((self.command, self.path, self.headers.get(NS_H), ns))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.answer(200)

    def do_DELETE(self):
        self.answer(204)

    def log_message(self, *a):
        pass


def bm(method, path, ns=None, body=None, headers=None, master="build-master"):
    return ns_call(S.url(master), method, path, ns, body, headers)


def create(ns, name, quota=None, hook=None, master="build-master"):
    doc = {"name": name, "runtime": "python3", "handler": "app.handler", "code_base64": ZIP}
    if hook:
        doc["webhook_url"] = hook
    return bm("POST", "/functions", ns, doc, {QUOTA_H: str(quota)} if quota is not None else None, master)


def wait_build(ns, bid, timeout=90):
    return mlstack_wait_build(S.url("build-master"), ns, bid, timeout)


def shape(body, fn):
    """An error body with the request id dropped and the asked-for name/id replaced: two 404s
    with the same shape say the same thing."""
    if not isinstance(body, dict) or "error" not in body:
        return body
    e = dict(body["error"])
    e.pop("request_id", None)
    e["message"] = e.get("message", "").replace(fn, "<fn>")
    return e


def packages():
    """Package objects in the stack's S3 (its files: <key>._S3rver_object and metadata)."""
    n = 0
    for d, _, files in os.walk(os.path.join(RUN, "s3", "data")):
        n += sum(1 for f in files if f.endswith(".zip._S3rver_object")) if "packages" in d else 0
    return n


def same_name(run, hook):
    a, b, name = f"ta-{run}", f"tb-{run}", f"hello-{run}"
    ra, rb = create(a, name, hook=hook), create(b, name, hook=hook)
    S.check("the same name is created in two namespaces (202 each, with its namespace)",
            ra[0] == 202 and rb[0] == 202 and ra[1]["namespace"] == a and rb[1]["namespace"] == b
            and ra[1]["function_id"] != rb[1]["function_id"], (ra, rb))
    dup = create(a, name)
    S.check("the same name again in one namespace is 409 name_taken", dup[0] == 409 and
            dup[1]["error"]["code"] == "name_taken", dup)
    ba, bb = wait_build(a, ra[1]["build_id"]), wait_build(b, rb[1]["build_id"])
    S.check("both build", ba and bb and ba["status"] == bb["status"] == "completed", (ba, bb))
    return a, b, name, ra[1], rb[1]


def cross(run, a, b, name, fa):
    fid, bid = fa["function_id"], fa["build_id"]
    only = f"only-{run}"
    ro = create(a, only)
    S.check("a function only namespace A has is created", ro[0] == 202, ro)
    missing_id, missing_b = str(uuid.uuid4()), str(uuid.uuid4())
    put = {"code_base64": ZIP}
    for other in (b, None, f"tc-{run}"):  # B, default (no header), and a namespace with nothing
        label = other or "no header (default)"
        for fn in (fid, only, ro[1]["function_id"]):
            for method, path, body in (("PUT", f"/functions/{fn}/code", put), ("GET", f"/functions/{fn}/builds", None),
                                       ("DELETE", f"/functions/{fn}", None)):
                st, got = bm(method, path.replace(fn, fn), other, body)
                mst, mgot = bm(method, path.replace(fn, missing_id), other, body)
                S.check(f"{method} {path.split(fn)[0]}{{fn}}{path.split(fn)[1]} of A's function from {label}: 404 as a missing one",
                        st == 404 and mst == 404 and shape(got, fn) == shape(mgot, missing_id), (st, got, mst, mgot))
        st, got = bm("GET", f"/builds/{bid}", other)
        mst, mgot = bm("GET", f"/builds/{missing_b}", other)
        S.check(f"GET /builds/{{id}} of A's build from {label}: 404 as a missing one",
                st == 404 and mst == 404 and shape(got, bid) == shape(mgot, missing_b), (st, got, mgot))
    st, got = bm("GET", f"/functions/{only}/builds", a)
    S.check("A's function is untouched after the cross-namespace DELETE and PUT: one build",
            st == 200 and len(got["builds"]) == 1, (st, got))
    lst = bm("GET", f"/functions/{name}/builds", b)
    S.check("B's function of the same name lists only B's build", lst[0] == 200 and
            [x["build_id"] for x in lst[1]["builds"]] != [bid] and all(x["build_id"] != bid for x in lst[1]["builds"]), lst)
    for bad in ("Team-A", "-a", "a" * 64, "a_b", ""):
        codes = [bm("POST", "/functions", bad, {"name": "x"})[1], bm("PUT", f"/functions/{fid}/code", bad, put)[1],
                 bm("GET", f"/functions/{fid}/builds", bad)[1], bm("DELETE", f"/functions/{fid}", bad)[1],
                 bm("GET", f"/builds/{bid}", bad)[1]]
        S.check(f"namespace {bad!r}: 400 invalid_namespace on every route",
                all(isinstance(c, dict) and c.get("error", {}).get("code") == "invalid_namespace" for c in codes), codes)
    wait_build(a, ro[1]["build_id"])
    st, _ = bm("DELETE", f"/functions/{only}", a)
    S.check("DELETE in its own namespace is 204 (the executor is called in that namespace)", st == 204, st)


def events(run, hook_fn, a, b, fa, fb):
    end = time.time() + 30
    want = {fa["build_id"]: a, fb["build_id"]: b}
    while time.time() < end:
        with Receiver.lock:
            got = [e for e in Receiver.events if e["build_id"] in want]
        if len({(e["build_id"], e["status"]) for e in got}) >= 6:
            break
        time.sleep(0.2)
    S.check("the user's build.status webhooks (queued, building, completed) carry function.namespace",
            len({(e["build_id"], e["status"]) for e in got}) == 6 and
            all(e["function"]["namespace"] == want[e["build_id"]] for e in got),
            [(e["status"], e["function"].get("namespace")) for e in got])
    rows = psql(f"select w.payload::jsonb #>> '{{function,namespace}}' || ':' || f.namespace from webhook_deliveries w"
                f" join build_functions f on f.id = w.function_id where w.target = 'lambda' and w.build_id in"
                f" ('{fa['build_id']}', '{fb['build_id']}')", BDB).split()
    S.check("the events for the executor carry the function's namespace",
            len(rows) == 6 and all(r.split(":")[0] == r.split(":")[1] for r in rows), rows)
    # the executor keeps functions per namespace once the lambda-executor side (branch t-a) is in;
    # before it, B's same name is refused there (one flat name space): a note, not a check
    inline = psql(f"select count(*) from webhook_deliveries w where w.target = 'lambda' and w.event_status = 'queued'"
                  f" and w.status = 'delivered' and w.build_id in ('{fa['build_id']}', '{fb['build_id']}')", BDB)
    st, _, body = call("GET", f"{S.url('lambda-executor')}/functions/{fb['function_id']}", None, {NS_H: b})
    print(f"# queued events delivered to the executor: {inline} of 2; B's function there: {st} {body[:100]!r}",
          flush=True)


def to_executor(run, stub):
    """The calls a build-master makes to the executor for a function carry its namespace."""
    ns, name = f"ts-{run}", f"stub-{run}"
    st, r = create(ns, name, master="build-master-stub")
    S.check("create through the second build-master", st == 202, (st, r))
    if st != 202:
        return
    wait_build(ns, r["build_id"])
    st, _ = bm("DELETE", f"/functions/{name}", ns, master="build-master-stub")
    with Receiver.lock:
        calls = list(StubExecutor.calls)
    queued = [c for c in calls if c[0] == "POST" and c[1] == f"/webhooks/build-status/{r['build_id']}"]
    dels = [c for c in calls if c[0] == "DELETE" and c[1] == f"/functions/{r['function_id']}"]
    S.check("the inline queued event reaches the executor with the function's namespace (header and body)",
            queued and queued[0][2] == ns and queued[0][3] == ns, calls[:4])
    S.check("the delete reaches the executor with the function's namespace", st == 204 and len(dels) == 1 and
            dels[0][2] == ns, (st, dels))


def nothing_left(ns, name):
    return psql(f"select (select count(*) from build_functions where namespace = '{ns}' and name = '{name}')"
                f" + (select count(*) from builds b join build_functions f on f.id = b.function_id"
                f" where f.namespace = '{ns}' and f.name = '{name}')", BDB) == "0"


def quota(run):
    ns, n = f"q-{run}", 3
    ok = [create(ns, f"q{i}-{run}", quota=n) for i in range(n)]
    S.check(f"max_functions {n}: {n} creates are 202", all(r[0] == 202 for r in ok), [r[0] for r in ok])
    before = packages()
    st, body = create(ns, f"q{n}-{run}", quota=n)
    want = {"code": "quota_exceeded", "message": f"namespace {ns} has reached its max_functions quota ({n})",
            "quota": "max_functions", "limit": n}
    got = dict(body["error"]) if isinstance(body, dict) and "error" in body else body
    rid = got.pop("request_id", None) if isinstance(got, dict) else None
    S.check(f"the {n + 1}th is 403 quota_exceeded, quota and limit named", st == 403 and got == want and rid, (st, body))
    S.check("...and nothing is left behind: no function row, no build, no package in S3",
            nothing_left(ns, f"q{n}-{run}") and packages() == before, (packages(), before))
    for bad in ("", "-1", "3.5", "x", "3 x", "+3", "0x3"):
        st, body = create(ns, f"qbad-{run}", quota=bad)
        S.check(f"quota header {bad!r} is 400", st == 400 and body["error"]["code"] == "invalid_header", (st, body))
    wait_build(ns, ok[0][1]["build_id"])
    st, _ = bm("DELETE", f"/functions/q0-{run}", ns)
    st2, _ = create(ns, f"q{n}-{run}", quota=n)
    S.check("a delete frees a slot", st == 204 and st2 == 202, (st, st2))
    st, _ = create(ns, f"qfree-{run}")
    S.check("without the header there is no limit", st == 202, st)
    st, _ = create(f"q2-{run}", f"q{n}-{run}", quota=n)
    S.check("another namespace has its own count", st == 202, st)


def quota_race(run):
    rounds, lim = 3, 3
    for r in range(rounds):
        ns = f"qr{r}-{run}"
        before = packages()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            res = list(ex.map(lambda i: create(ns, f"r{i}-{run}", quota=lim)[0], range(8)))
        live = psql(f"select count(*) from build_functions where namespace = '{ns}' and deleted_at is null", BDB)
        # the refused ones got past the unlocked pre-check together: the transaction's check
        # refused them, and their packages are gone from S3 too
        S.check(f"round {r + 1}: 8 parallel creates with max_functions {lim}: exactly {lim} ok, the rest 403,"
                f" {lim} packages left", sorted(res) == [202] * lim + [403] * (8 - lim) and live == str(lim)
                and packages() == before + lim, (sorted(res), live, packages() - before))


def main():
    run = uuid.uuid4().hex[:8]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubExecutor)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        real = S.env["MINILAMBDA_EXECUTOR_WEBHOOK_URL"]
        S.env["MINILAMBDA_EXECUTOR_WEBHOOK_URL"] = f"http://127.0.0.1:{stub.server_address[1]}"
        S.start("build-master-stub", "build-master")
        S.env["MINILAMBDA_EXECUTOR_WEBHOOK_URL"] = real
        a, b, name, fa, fb = same_name(run, hook)
        cross(run, a, b, name, fa)
        events(run, hook, a, b, fa, fb)
        to_executor(run, stub)
        quota(run)
        quota_race(run)
    finally:
        S.stop_all()
        srv.shutdown()
        stub.shutdown()
    raise SystemExit(1 if S.failures else 0)


main()
