"""The lambda-executor scopes everything by namespace (docs/tenants.md, "In the executor"),
against the real test stack.

Two source functions are built by the build-master (in default) so that real artifacts sit in
S3: one answers "A", one "B" (and fails on {"fail": true}). Then signed build-status events,
sent here straight to the executor's webhook, create a function of the *same name* `hello`
in two fresh namespaces, team-a's on artifact A and team-b's on artifact B. Every route
family is checked: another namespace's object answers 404 with the same body as a missing
one, the same namespace works, lists are disjoint, invoke runs the right code, no header acts
in default, a bad header is 400 invalid_namespace; a later event never moves a function.
Prints "ok - ..." / "not ok - ..." per check.
"""
import json, sys, time, uuid

from mlstack import Suite, active_artifact, call, post_build_event, psql, scrape

S = Suite("test-namespaces-exec", {"build-master": 32582, "build-worker": 32592, "lambda-executor": 32581},
          {"MINILAMBDA_ASYNC_CONSUMERS": "2"})
EXEC = S.url("lambda-executor")
HDR = "X-Minilambda-Namespace"
TAG = uuid.uuid4().hex[:6]
NS_A, NS_B = f"ta-{TAG}", f"tb-{TAG}"

APP = """
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"code": "%s"}
"""


def req(method, path, ns=None, body=None, headers=None):
    """(status, parsed body or raw bytes) of a call to the executor, in namespace ns."""
    h = {"Content-Type": "application/json"} if body is not None else {}
    if ns is not None:
        h[HDR] = ns
    h.update(headers or {})
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    st, _, raw = call(method, EXEC + path, data, h)
    try:
        return st, json.loads(raw) if raw else None
    except ValueError:
        return st, raw


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"


def deliver(fid, name, ns, artifact, handler="app.handler"):
    """A signed 'completed' build event for function fid named name in namespace ns (None: the
    member is left out) on artifact (prefix, sha256); returns the webhook's status."""
    bid = str(uuid.uuid4())
    fn = {"name": name, "runtime": "python3", "handler": handler,
          "config": {"memory_mb": 128, "timeout_s": 30, "env": {}}}
    if ns is not None:
        fn["namespace"] = ns
    doc = {"type": "build.status", "build_id": bid, "function_id": fid, "status": "completed",
           "error": None, "timestamp": iso(time.time()), "function": fn,
           "artifact": {"prefix": artifact[0], "sha256": artifact[1], "size_bytes": 100, "files": 1}}
    return post_build_event(EXEC, S.secret, doc)


def same_404(got, missing, what):
    """another namespace's object answers exactly as a missing one (message aside from the id)."""
    (st, body), (mst, mbody) = got, missing
    code = lambda b: b.get("error", {}).get("code") if isinstance(b, dict) else None
    S.check(what + ": 404 like a missing one", st == 404 and mst == 404 and code(body) == code(mbody) == "not_found",
            (got, missing))


def list_ids(ns):
    ids, cursor = set(), None
    for _ in range(200):
        st, b = req("GET", "/functions?limit=100" + (f"&cursor={cursor}" if cursor else ""), ns)
        if st != 200:
            return None
        ids |= {f["id"] for f in b["functions"]}
        cursor = b.get("next_cursor")
        if not cursor:
            break
    return ids


def wait_inv(inv, ns, want, timeout=60):
    end, rec = time.time() + timeout, None
    while time.time() < end:
        st, rec = req("GET", f"/invocations/{inv}", ns)
        if st == 200 and rec["status"] in want:
            return rec
        time.sleep(0.2)
    return rec


def setup():
    a = S.deploy(f"src-a-{TAG}", {"app.py": APP % "A"})
    b = S.deploy(f"src-b-{TAG}", {"app.py": APP % "B"})
    if not (S.check("source functions built", a and b and a["state"] == b["state"] == "active", (a, b))):
        return None
    ids = {"a": str(uuid.uuid4()), "b": str(uuid.uuid4()), "d": str(uuid.uuid4())}
    S.check("hello created in team-a by a build event",
            deliver(ids["a"], "hello", NS_A, active_artifact(a["id"])) == 200)
    S.check("hello created in team-b by a build event (same name)",
            deliver(ids["b"], "hello", NS_B, active_artifact(b["id"])) == 200)
    S.check("an event without function.namespace creates in default",
            deliver(ids["d"], f"only-default-{TAG}", None, active_artifact(a["id"])) == 200)
    return ids


def check_functions(ids):
    st, fa = req("GET", "/functions/hello", NS_A)
    st2, fb = req("GET", "/functions/hello", NS_B)
    S.check("GET hello in each namespace finds its own", st == st2 == 200 and fa["id"] == ids["a"]
            and fb["id"] == ids["b"] and fa["namespace"] == NS_A and fb["namespace"] == NS_B, (fa, fb))
    missing = req("GET", f"/functions/{uuid.uuid4()}", NS_A)
    same_404(req("GET", f"/functions/{ids['b']}", NS_A), missing, "GET another namespace's id")
    same_404(req("GET", "/functions/hello"), req("GET", f"/functions/nope-{TAG}"), "GET hello without a header (default)")
    st, d = req("GET", f"/functions/only-default-{TAG}")
    S.check("no header acts in default", st == 200 and d["namespace"] == "default", (st, d))
    same_404(req("GET", f"/functions/{ids['d']}", NS_A), missing, "GET a default function's id from team-a")
    same_404(req("GET", f"/functions/{ids['b']}?wait=active&timeout_s=1", NS_A), missing, "?wait=active on another namespace's id")
    la, lb, ld = list_ids(NS_A), list_ids(NS_B), list_ids(None)
    S.check("lists are per namespace and disjoint", la == {ids["a"]} and lb == {ids["b"]}
            and ids["d"] in ld and ids["a"] not in ld and ids["b"] not in ld, (la, lb))
    same_404(req("PATCH", f"/functions/{ids['b']}", NS_A, {"memory_mb": 256}), missing, "PATCH another namespace's id")
    S.check("... and team-b's function is unchanged", req("GET", "/functions/hello", NS_B)[1]["memory_mb"] == 128)
    st, p = req("PATCH", "/functions/hello", NS_A, {"memory_mb": 192})
    S.check("PATCH in the same namespace works", st == 200 and p["memory_mb"] == 192 and p["namespace"] == NS_A, (st, p))
    same_404(req("DELETE", f"/functions/{ids['b']}", NS_A), req("DELETE", f"/functions/nope-{TAG}", NS_A),
             "DELETE another namespace's id")
    S.check("... leaves team-b's function and no tombstone", req("GET", "/functions/hello", NS_B)[0] == 200
            and psql(f"SELECT count(*) FROM deleted_functions WHERE id = '{ids['b']}'") == "0")


def check_invoke(ids):
    ra = req("POST", "/functions/hello/invoke", NS_A, {})
    rb = req("POST", "/functions/hello/invoke", NS_B, {})
    S.check("invoke runs each namespace's own code", ra == (200, {"code": "A"}) and rb == (200, {"code": "B"}), (ra, rb))
    same_404(req("POST", f"/functions/{ids['b']}/invoke", NS_A, {}), req("POST", f"/functions/nope-{TAG}/invoke", NS_A, {}),
             "invoke another namespace's id")
    same_404(req("POST", "/functions/hello/invoke", None, {}), req("POST", f"/functions/nope-{TAG}/invoke", None, {}),
             "invoke hello without a header (default)")
    st, _ = req("POST", f"/functions/{ids['b']}/invoke", NS_A, {}, {"X-Invocation-Type": "DryRun"})
    S.check("DryRun of another namespace's id is 404", st == 404, st)
    st, _ = req("POST", f"/functions/{ids['b']}/invoke", NS_A, {}, {"X-Invocation-Type": "Event"})
    S.check("Event of another namespace's id is 404", st == 404, st)
    m = scrape(EXEC)[0]
    S.check("invocation metrics carry the namespace", any(k.startswith("minilambda_invocations_total{")
            and f'namespace="{NS_A}"' in k for k in m) and any(f'namespace="{NS_B}"' in k for k in m))


def check_invocations(ids):
    st, r = req("POST", "/functions/hello/invoke", NS_B, {"n": 1}, {"X-Invocation-Type": "Event"})
    inv = (r or {}).get("invocation_id") if st == 202 else None
    rec = wait_inv(inv, NS_B, ("succeeded",)) if inv else None
    S.check("an async invocation in team-b runs", rec and rec["status"] == "succeeded", (st, r, rec))
    missing = req("GET", f"/invocations/{uuid.uuid4()}", NS_A)
    same_404(req("GET", f"/invocations/{inv}", NS_A), missing, "GET another namespace's invocation")
    same_404(req("GET", f"/functions/{ids['b']}/invocations", NS_A), req("GET", f"/functions/{uuid.uuid4()}/invocations", NS_A),
             "list invocations of another namespace's id")
    st, la = req("GET", "/functions/hello/invocations?limit=100", NS_A)
    st2, lb = req("GET", "/functions/hello/invocations?limit=100", NS_B)
    S.check("invocation lists are per namespace", st == st2 == 200 and inv in {i["id"] for i in lb["invocations"]}
            and all(i["function_id"] == ids["a"] for i in la["invocations"]), (la, lb))


def check_schedules(ids):
    st, s = req("POST", "/functions/hello/schedules", NS_A, {"cron": "0 0 1 1 *", "enabled": False})
    S.check("schedule created in team-a", st == 201, (st, s))
    sid = s.get("id") if st == 201 else str(uuid.uuid4())
    st, lb = req("GET", "/functions/hello/schedules", NS_B)
    S.check("team-b's hello does not list it", st == 200 and lb["schedules"] == [], (st, lb))
    missing = req("GET", f"/functions/{uuid.uuid4()}/schedules", NS_B)
    same_404(req("GET", f"/functions/{ids['a']}/schedules", NS_B), missing, "list schedules of another namespace's id")
    same_404(req("POST", f"/functions/{ids['a']}/schedules", NS_B, {"cron": "0 0 1 1 *"}), missing,
             "create a schedule on another namespace's id")
    same_404(req("DELETE", f"/functions/{ids['a']}/schedules/{sid}", NS_B),
             req("DELETE", f"/functions/{ids['a']}/schedules/{uuid.uuid4()}", NS_A), "delete another namespace's schedule")
    st, la = req("GET", "/functions/hello/schedules", NS_A)
    S.check("... it is still there", st == 200 and [x["id"] for x in la["schedules"]] == [sid], (st, la))
    st, _ = req("DELETE", f"/functions/hello/schedules/{sid}", NS_A)
    S.check("delete in the same namespace works", st == 204, st)


def check_dlq(ids):
    req("PATCH", "/functions/hello", NS_B, {"max_retries": 0})
    st, r = req("POST", "/functions/hello/invoke", NS_B, {"fail": True}, {"X-Invocation-Type": "Event"})
    rec = wait_inv((r or {}).get("invocation_id"), NS_B, ("dead_lettered",)) if st == 202 else None
    S.check("a failing event of team-b is dead-lettered", rec and rec["status"] == "dead_lettered", (st, r, rec))
    items, end = [], time.time() + 30
    while not items and time.time() < end:
        items = (req("GET", "/functions/hello/dlq", NS_B)[1] or {}).get("items", [])
        time.sleep(0.2)
    S.check("team-b lists its DLQ entry", len(items) == 1, items)
    st, la = req("GET", "/functions/hello/dlq", NS_A)
    S.check("team-a's hello lists none", st == 200 and la["items"] == [], (st, la))
    same_404(req("GET", f"/functions/{ids['b']}/dlq", NS_A), req("GET", f"/functions/{uuid.uuid4()}/dlq", NS_A),
             "list the DLQ of another namespace's id")
    dl = items[0]["id"] if items else str(uuid.uuid4())
    missing = req("POST", f"/dlq/{uuid.uuid4()}/replay", NS_A)
    same_404(req("POST", f"/dlq/{dl}/replay", NS_A), missing, "replay another namespace's DLQ entry")
    same_404(req("DELETE", f"/dlq/{dl}", NS_A), req("DELETE", f"/dlq/{uuid.uuid4()}", NS_A),
             "delete another namespace's DLQ entry")
    st, _ = req("DELETE", f"/dlq/{dl}", NS_B)
    S.check("delete in the same namespace works", st == 204, st)


def check_bad_header(ids):
    routes = [("GET", "/functions"), ("GET", "/functions/hello"), ("PATCH", "/functions/hello"),
              ("DELETE", "/functions/hello"), ("POST", "/functions/hello/invoke"),
              ("GET", f"/invocations/{uuid.uuid4()}"), ("GET", "/functions/hello/invocations"),
              ("GET", "/functions/hello/schedules"), ("POST", "/functions/hello/schedules"),
              ("DELETE", f"/functions/hello/schedules/{uuid.uuid4()}"), ("GET", "/functions/hello/dlq"),
              ("POST", f"/dlq/{uuid.uuid4()}/replay"), ("DELETE", f"/dlq/{uuid.uuid4()}")]
    bad = []
    for ns in ("Team-A", "-x", "a" * 64, "a_b"):
        for m, p in routes:
            st, b = req(m, p, ns, {"cron": "0 0 1 1 *"} if m in ("POST", "PATCH") else None)
            if st != 400 or (b or {}).get("error", {}).get("code") != "invalid_namespace":
                bad.append((ns, m, p, st, b))
    S.check("a bad namespace header is 400 invalid_namespace on every route", not bad, bad[:3])
    S.check("... and changed nothing", req("GET", "/functions/hello", NS_A)[0] == 200)


def check_no_move(ids):
    art = active_artifact(req("GET", f"/functions/src-b-{TAG}")[1]["id"])
    st = deliver(ids["a"], "hello", NS_B, art)
    st2, fa = req("GET", f"/functions/{ids['a']}", NS_A)
    S.check("a later event naming another namespace never moves the function", st in (200, 409) and st2 == 200
            and fa["namespace"] == NS_A and req("GET", f"/functions/{ids['a']}", NS_B)[0] == 404, (st, st2, fa))
    S.check("team-b's hello is still its own", req("GET", "/functions/hello", NS_B)[1]["id"] == ids["b"])


def main():
    try:
        S.start("build-worker")
        S.start("build-master")
        S.start("lambda-executor")
        ids = setup()
        if ids:
            for f in (check_functions, check_invoke, check_invocations, check_schedules, check_dlq,
                      check_bad_header, check_no_move):
                f(ids)
    finally:
        S.stop_all()
    print(f"# {S.failures} failure(s)")
    return 1 if S.failures else 0


if __name__ == "__main__":
    sys.exit(main())
