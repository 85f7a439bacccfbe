"""Issue 18 through the gateway (docs/logs.md), on the real daemons with a tenant's JWT: a
function's stdout/stderr/platform lines read back by GET /functions/{fn}/logs, filtered by
request id and stream; ?follow=1 streams a new line as Server-Sent Events through the gateway's
streaming proxy; the build's log and its webhook deliveries (a receiver answering 500: each
attempt visible, then a redelivery once it answers 204); every request in the gateway's access
log, allowed and refused; another namespace gets 404 for all of it. Prints ok/not ok."""
import base64, http.client, http.server, json, os, sys, threading, time, uuid

import mlstack
from mlstack import Suite, call, make_zip

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2300  # clear of the stack's own ports
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3}
RECEIVER_PORT = BASE + 4
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
RUN = uuid.uuid4().hex[:6]
FOLLOW_RID = f"follow-{RUN}"
NS_A, NS_B = f"logs-a-{RUN}", f"logs-b-{RUN}"
S = Suite("test-logs-gateway", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
GW = S.url("gateway")
ACCESS_LOG = os.path.join(S.logs, f"access-{RUN}.log")
APP = """import sys, time
def handler(event, context):
    print("out-" + event.get("tag", ""), flush=True)
    print("err-" + event.get("tag", ""), file=sys.stderr, flush=True)
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""
ALL = "functions:read functions:write functions:invoke"


def jwt(claims):
    return mlstack.jwt(JWT_SECRET, claims, "logs-e2e")


def jcall(method, path, auth, doc=None, headers=None):
    return mlstack.jcall(GW, method, path, auth, doc, headers)


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that answers 500 until told to answer 204."""
    status, seen = 500, []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.seen.append(Receiver.status)
        self.send_response(Receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def logs(auth, fn, query):
    lines, cursor = [], None
    for _ in range(50):
        st, doc = jcall("GET", f"/functions/{fn}/logs?{query}" + (f"&cursor={cursor}" if cursor else ""), auth)
        if st != 200:
            return st, lines
        lines += doc.get("lines") or []
        cursor = doc.get("next_cursor")
        if not cursor:
            break
    return 200, lines


def wait_logs(auth, fn, query, pred, timeout=20):
    end, got = time.time() + timeout, (0, [])
    while time.time() < end:
        got = logs(auth, fn, query)
        if got[0] == 200 and pred(got[1]):
            break
        time.sleep(0.2)
    return got


def function_logs(a, fn):
    st, hdrs, r = call("POST", f"{GW}/functions/{fn}/invoke", b'{"tag": "one"}',
                       dict(a, **{"Content-Type": "application/json"}))
    rid = {k.lower(): v for k, v in hdrs.items()}.get("x-invocation-id", "")
    S.check("invoke through the gateway", st == 200 and rid, (st, hdrs, r))
    st, lines = wait_logs(a, fn, f"request_id={rid}", lambda ls: any(l["message"].startswith("REPORT") for l in ls))
    msgs = [(l["stream"], l["message"]) for l in lines]
    S.check("the invocation's lines through the gateway: START, stdout, stderr, END, REPORT in order",
            st == 200 and len(msgs) >= 5 and msgs[0][1].startswith(f"START RequestId: {rid}")
            and ("stdout", "out-one") in msgs and ("stderr", "err-one") in msgs
            and msgs[-2][1] == f"END RequestId: {rid}" and msgs[-1][1].startswith(f"REPORT RequestId: {rid}"), (st, msgs))
    st, only = logs(a, fn, f"request_id={rid}&stream=stderr")
    S.check("stream=stderr filters", st == 200 and [l["message"] for l in only] == ["err-one"], (st, only))
    st, doc = jcall("GET", f"/invocations/{rid}", a)
    S.check("GET /invocations/{id} links to its log lines",
            st == 200 and (doc.get("logs") or {}).get("href", "").endswith(f"/functions/{fn}/logs?request_id={rid}"), doc)
    return rid


def follow(a, fn):
    """A follower through the gateway sees a new line soon after the function prints it."""
    host, port = "127.0.0.1", PORTS["gateway"]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", f"/functions/{fn}/logs?follow=1&since=1s",
                 headers=dict(a, Accept="text/event-stream", **{"X-Request-Id": FOLLOW_RID}))
    resp = conn.getresponse()
    S.check("follow through the gateway answers text/event-stream",
            resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream"),
            (resp.status, resp.getheader("Content-Type")))
    tag, got = f"follow-{uuid.uuid4().hex[:6]}", {}

    def reader():
        for raw in resp:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("data:"):
                doc = json.loads(line[5:])
                if doc.get("message") == "out-" + tag:
                    got["at"] = time.time()
                    return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.5)
    sent = time.time()
    jcall("POST", f"/functions/{fn}/invoke", a, {"tag": tag, "sleep": 2})
    t.join(10)
    # the line is printed at the start of a 2 s invocation: it must arrive before the call ends
    S.check("follow: the line arrives while the invocation still runs", "at" in got and got["at"] - sent < 2.0, got)
    print(f"# follow through the gateway: line after {1000 * (got.get('at', sent) - sent):.0f} ms from the call", flush=True)
    conn.close()


def build_log_and_deliveries(a, b, fn):
    st, builds = jcall("GET", f"/functions/{fn}/builds", a)
    bid = ((builds or {}).get("builds") or [{}])[0].get("build_id", "")
    st, doc = jcall("GET", f"/builds/{bid}/log", a)
    steps = [l.get("step") for l in (doc or {}).get("lines") or []]
    S.check("the build's log through the gateway: download, extract, upload, done",
            st == 200 and all(s in steps for s in ("download", "extract", "upload")), (st, doc))
    end, dl = time.time() + 30, []
    while time.time() < end:
        st, doc = jcall("GET", f"/builds/{bid}/deliveries", a)
        dl = (doc or {}).get("deliveries") or []
        if dl and any(x.get("attempts", 0) >= 2 for x in dl):
            break
        time.sleep(0.3)
    attempts = [t for d in dl for t in d.get("attempt_log") or []]
    S.check("deliveries: the failed webhook's attempts with status 500 are visible",
            len(attempts) >= 2 and all(t.get("status_code") == 500 for t in attempts), dl)
    build_follow(a, bid)
    redeliver(a, bid)
    for who, auth in (("other namespace", b),):
        for path in (f"/functions/{fn}/logs", f"/builds/{bid}/log", f"/builds/{bid}/deliveries"):
            st, _ = jcall("GET", path, auth)
            S.check(f"{who}: GET {path.replace(fn, '{fn}').replace(bid, '{id}')} -> 404", st == 404, st)
    return bid, dl


def build_follow(a, bid):
    """A finished build's log followed through the gateway: every line, then the stream ends."""
    conn = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=15)
    conn.request("GET", f"/builds/{bid}/log?follow=1", headers=a)
    resp = conn.getresponse()
    steps = []
    try:
        for raw in resp:
            line = raw.decode(errors="replace")
            if line.startswith("data:"):
                steps.append(json.loads(line[5:]).get("step"))
        ended = True
    except OSError as e:
        ended = e
    S.check("build log ?follow=1 through the gateway streams every line and ends after done",
            resp.status == 200 and ended is True and steps and steps[-1] == "done" and "upload" in steps,
            (resp.status, ended, steps))
    conn.close()


def redeliver(a, bid):
    """Once the receiver is fixed, a redelivery of the failed terminal event is delivered."""
    end, dl = time.time() + 30, []
    while time.time() < end:
        dl = (jcall("GET", f"/builds/{bid}/deliveries", a)[1] or {}).get("deliveries") or []
        if dl and all(d.get("status") != "pending" for d in dl):
            break
        time.sleep(0.3)
    failed = [d for d in dl if d.get("status") == "failed"]
    Receiver.status = 204
    st, doc = jcall("POST", f"/builds/{bid}/deliveries/{failed[-1]['id'] if failed else 'none'}/redeliver", a, {})
    S.check("redeliver through the gateway -> 202", st == 202, (st, doc, dl))
    new_id = ((doc or {}).get("delivery") or {}).get("id")
    end, got = time.time() + 30, None
    while time.time() < end and not got:
        dl = (jcall("GET", f"/builds/{bid}/deliveries", a)[1] or {}).get("deliveries") or []
        got = [d for d in dl if d.get("id") == new_id and d.get("status") == "delivered"]
        time.sleep(0.3)
    S.check("the redelivery reaches the fixed receiver", bool(got) and 204 in Receiver.seen, dl)


def access_log(a, fn):
    """The follower left while its stream was idle: the gateway learns it at the stream's next
    line (or keepalive), so one more invocation ends it; then its access-log line is written."""
    jcall("POST", f"/functions/{fn}/invoke", a, {"tag": "after-follow"})
    end, lines = time.time() + 20, []
    while time.time() < end:
        lines = [json.loads(l) for l in open(ACCESS_LOG) if l.strip()]
        if any(l.get("request_id") == FOLLOW_RID for l in lines):
            break
        time.sleep(0.2)
    ok = [l for l in lines if l.get("route") == "/functions/{fn}/logs" and l.get("auth") == "allowed"]
    refused = [l for l in lines if l.get("auth") == "refused"]
    S.check("access log: the logs reads are there, allowed, with subject and namespace",
            ok and ok[0].get("subject") == "logs-e2e" and ok[0].get("namespace") == NS_A, ok[:1])
    follow = [l for l in ok if l.get("request_id") == FOLLOW_RID and l.get("upstream") == "lambda-executor"
              and l.get("bytes_out", 0) > 100]
    S.check("access log: a followed stream's line names its upstream and counts its bytes", follow, ok)
    S.check("access log: the refused request is there with why",
            refused and refused[-1].get("status") == 401 and refused[-1].get("auth_error"), refused[-1:])


def main():
    t0 = time.time()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        S.start("gateway", MINILAMBDA_ACCESS_LOG=ACCESS_LOG)
        a, b = jwt({"scope": ALL, "ns": NS_A}), jwt({"scope": ALL, "ns": NS_B})
        fn = f"logs-{RUN}"
        doc = {"name": fn, "runtime": "python3", "handler": "app.handler",
               "webhook_url": f"http://127.0.0.1:{RECEIVER_PORT}/hook",
               "code_base64": base64.b64encode(make_zip({"app.py": APP})).decode()}
        st, made = jcall("POST", "/functions", a, doc)
        st2, f = jcall("GET", f"/functions/{fn}?wait=active&timeout_s=60", a)
        S.check("create through the gateway", st == 202 and st2 == 200 and f.get("state") == "active", (st, made, st2, f))
        function_logs(a, fn)
        follow(a, fn)
        build_log_and_deliveries(a, b, fn)
        st, _ = jcall("GET", f"/functions/{fn}/logs", {})
        S.check("no token: 401", st == 401, st)
        access_log(a, fn)
    finally:
        S.stop_all()
        srv.shutdown()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
