"""Webhook deliveries (docs/logs.md §4) on the test stack, services called directly as the
gateway would (X-Minilambda-Namespace; mlstack adds the internal token). A python receiver
answers what the test tells it (500, 410, 200) and records what it gets.

  1. build side (retry schedule 200 ms, 4 s via MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS): the
     build's 'queued' webhook to a receiver answering 500 shows in GET /builds/{id}/deliveries
     as pending with two attempts (status 500, a duration each) and a next retry about 4 s
     ahead; redeliver is 409 while it is pending; after the third 500 it is failed; the
     internal notification of the executor is not listed; once the receiver answers 200,
     redeliver is 202 with a new pending row (new id, redelivery_of = the original), which is
     delivered: same body, new webhook-id;
  2. destinations: an async invocation that fails with an on_failure destination; the receiver
     answers 500 (pending, one attempt, next retry ahead; 409), then 410 (failed), then 200:
     redeliver through POST /invocations/{id}/deliveries/{did}/redeliver is delivered;
  3. another namespace (and an unknown delivery): 404 on every route.
Prints "ok - ..." / "not ok - ..."."""
import base64, datetime, http.server, json, os, threading, time, uuid
from mlstack import Suite, call, make_zip, ns_call

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2390
PORTS = {"lambda-executor": BASE, "build-master": BASE + 1, "build-worker": BASE + 2}
S = Suite("test-deliveries", PORTS, {"MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS": "200,4000"})
FAILING = "def handler(event, context):\n    raise RuntimeError('always fails')\n"


class Receiver(http.server.BaseHTTPRequestHandler):
    answer = {"/build": 500, "/failure": 500}
    got = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Receiver.lock:
            Receiver.got.append((self.path, self.headers.get("webhook-id"), body))
            code = Receiver.answer.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def svc(name, method, path, ns, body=None):
    return ns_call(S.url(name), method, path, ns, body)


def until(fn, timeout=30, step=0.1):
    end, v = time.time() + timeout, None
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return v


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def find(deliveries, key, value):
    return next((d for d in deliveries if d.get(key) == value and d.get("redelivery_of") is None), None)


def builds(run, ns, hook):
    name = f"hooked-{run}"
    st, b = svc("build-master", "POST", "/functions", ns,
                {"name": name, "runtime": "python3", "handler": "app.handler", "webhook_url": hook + "/build",
                 "code_base64": base64.b64encode(make_zip({"app.py": "def handler(e, c):\n    return e\n"})).decode()})
    bid = b["build_id"]
    path = f"/builds/{bid}/deliveries"

    def queued_pending_twice():
        st, b = svc("build-master", "GET", path, ns)
        d = find(b["deliveries"], "event", "queued") if st == 200 else None
        return (d, time.time()) if d and d["status"] == "pending" and d["attempts"] == 2 and len(d["attempt_log"]) == 2 else None

    got = until(queued_pending_twice, 30, 0.05)
    d, now = got if got else (None, 0)
    S.check("the failing user webhook is listed as pending with two attempts, status 500 each, and a duration",
            d and [a["attempt"] for a in d["attempt_log"]] == [1, 2] and all(a["status_code"] == 500 and a["error"]
            and a["duration_ms"] >= 0 and a["at"] for a in d["attempt_log"]) and d["last_status_code"] == 500
            and d["url"] == hook + "/build" and d["delivered_at"] is None, d)
    S.check("its next_attempt_at is the next retry, about 4 s ahead",
            d and d["next_attempt_at"] and 1.0 < ts(d["next_attempt_at"]) - now < 6.0, d and (d["next_attempt_at"], now))
    if not d:
        return bid, None
    st, r = svc("build-master", "POST", f"{path}/{d['id']}/redeliver", ns)
    S.check("redeliver while the original is pending: 409", st == 409 and r["error"]["code"] == "delivery_pending", (st, r))

    def queued_failed():
        st, b = svc("build-master", "GET", path, ns)
        q = find(b["deliveries"], "event", "queued")
        return (q, b) if q and q["status"] == "failed" else None

    got = until(queued_failed, 30)
    q, listing = got if got else (None, None)
    S.check("after the third 500 it is failed, next_attempt_at null",
            q and q["attempts"] == 3 and len(q["attempt_log"]) == 3 and q["next_attempt_at"] is None, q)
    S.check("only the user's webhooks are listed (not the executor's notification)",
            listing and all(x["url"] == hook + "/build" for x in listing["deliveries"]), listing)
    with Receiver.lock:
        Receiver.answer["/build"] = 200
        first = [(i, b) for p, i, b in Receiver.got if p == "/build" and i == d["id"]]
    st, r = svc("build-master", "POST", f"{path}/{d['id']}/redeliver", ns)
    new = r.get("delivery") if st == 202 and isinstance(r, dict) else None
    S.check("after the receiver is fixed, redeliver: 202 with a new pending row (new id, redelivery_of the original)",
            new and new["id"] != d["id"] and new["redelivery_of"] == d["id"] and new["status"] == "pending"
            and new["event"] == "queued" and new["attempts"] == 0 and new["attempt_log"] == [], (st, r))
    if not new:
        return bid, d["id"]

    def delivered():
        st, b = svc("build-master", "GET", path, ns)
        x = next((x for x in b["deliveries"] if x["id"] == new["id"]), None)
        return x if x and x["status"] == "delivered" else None

    x = until(delivered, 30)
    S.check("the redelivery is delivered: one attempt, 200, delivered_at set",
            x and x["attempts"] == 1 and x["attempt_log"][0]["status_code"] == 200 and x["delivered_at"], x)
    with Receiver.lock:
        again = [(i, b) for p, i, b in Receiver.got if p == "/build" and i == new["id"]]
    S.check("the receiver got the same body under the new webhook-id",
            first and again and again[-1][1] == first[0][1], (first[:1], again[:1]))
    return bid, d["id"]


def destinations(run, hook):
    fn = f"failing-{run}"
    S.deploy(fn, {"app.py": FAILING})
    ex = S.url("lambda-executor")
    st, _, body = call("PATCH", f"{ex}/functions/{fn}", json.dumps({"on_failure_url": hook + "/failure",
                                                                      "max_retries": 0}).encode(),
                       {"Content-Type": "application/json"})
    S.check("PATCH on_failure_url", st == 200, (st, body))
    st, _, body = call("POST", f"{ex}/functions/{fn}/invoke", b"{}", {"Content-Type": "application/json",
                                                                       "X-Invocation-Type": "Event"})
    inv = json.loads(body)["invocation_id"]
    path = f"/invocations/{inv}/deliveries"

    def pending_once():
        st, b = svc("lambda-executor", "GET", path, "default")
        d = find(b["deliveries"], "kind", "on_failure") if st == 200 else None
        return (d, time.time()) if d and d["status"] == "pending" and d["attempts"] == 1 and d["attempt_log"] else None

    got = until(pending_once, 60, 0.05)
    d, now = got if got else (None, 0)
    S.check("the on_failure destination is listed pending: attempt 1 answered 500, next retry ahead",
            d and d["attempt_log"][0]["status_code"] == 500 and d["next_attempt_at"]
            and ts(d["next_attempt_at"]) > now and d["url"] == hook + "/failure", d)
    if not d:
        return inv, None
    st, r = svc("lambda-executor", "POST", f"{path}/{d['id']}/redeliver", "default")
    S.check("redeliver while pending: 409", st == 409, (st, r))
    with Receiver.lock:
        Receiver.answer["/failure"] = 410

    def failed():
        st, b = svc("lambda-executor", "GET", path, "default")
        x = find(b["deliveries"], "kind", "on_failure")
        return x if x and x["status"] == "failed" else None

    x = until(failed, 30)
    S.check("the receiver's 410 ends it: failed after 2 attempts (500, 410)",
            x and [a["status_code"] for a in x["attempt_log"]] == [500, 410], x)
    with Receiver.lock:
        Receiver.answer["/failure"] = 200
    st, r = svc("lambda-executor", "POST", f"{path}/{d['id']}/redeliver", "default")
    new = r.get("delivery") if st == 202 and isinstance(r, dict) else None
    S.check("redeliver: 202, a new pending on_failure row (redelivery_of the original)",
            new and new["redelivery_of"] == d["id"] and new["kind"] == "on_failure" and new["status"] == "pending", (st, r))

    def delivered():
        st, b = svc("lambda-executor", "GET", path, "default")
        y = next((y for y in b["deliveries"] if new and y["id"] == new["id"]), None)
        return y if y and y["status"] == "delivered" else None

    y = until(delivered, 30)
    S.check("the redelivered destination is delivered (200)", y and y["attempt_log"][-1]["status_code"] == 200, y)
    return inv, d["id"]


def other_namespace(run, ns, bid, bdid, inv, idid):
    missing = str(uuid.uuid4())
    for other in (f"other-{run}", "default"):
        for ref, did in ((bid, bdid), (missing, bdid), (bid, missing)):
            st, _ = svc("build-master", "GET", f"/builds/{ref}/deliveries", other)
            pst, _ = svc("build-master", "POST", f"/builds/{ref}/deliveries/{did}/redeliver", other)
            if ref == bid and did == bdid:
                S.check(f"build deliveries from namespace {other}: 404 (GET and redeliver)", st == 404 and pst == 404, (st, pst))
    st, _ = svc("build-master", "POST", f"/builds/{bid}/deliveries/{missing}/redeliver", ns)
    S.check("an unknown delivery of one's own build: 404", st == 404, st)
    st, _ = svc("build-master", "GET", f"/builds/{missing}/deliveries", ns)
    S.check("an unknown build: 404", st == 404, st)
    if inv:
        st, _ = svc("lambda-executor", "GET", f"/invocations/{inv}/deliveries", f"other-{run}")
        pst, _ = svc("lambda-executor", "POST", f"/invocations/{inv}/deliveries/{idid}/redeliver", f"other-{run}")
        S.check("invocation deliveries from another namespace: 404 (GET and redeliver)", st == 404 and pst == 404, (st, pst))
        st, _ = svc("lambda-executor", "POST", f"/invocations/{inv}/deliveries/{missing}/redeliver", "default")
        S.check("an unknown delivery of one's own invocation: 404", st == 404, st)


def main():
    run = uuid.uuid4().hex[:8]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}"
    ns = f"hooks-{run}"
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        bid, bdid = builds(run, ns, hook)
        inv, idid = destinations(run, hook)
        other_namespace(run, ns, bid, bdid, inv, idid)
    finally:
        S.stop_all()
        srv.shutdown()
    raise SystemExit(1 if S.failures else 0)


main()
