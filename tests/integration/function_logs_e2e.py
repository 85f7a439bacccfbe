"""Function logs end to end (docs/logs.md §1) against the real test stack: functions built by
the build pipeline run on a lambda-executor whose log writer stores their lines, and
GET /functions/{fn}/logs reads them back (direct, with the internal token).

A function printing to stdout and stderr, raising, timing out and flooding 50 MB: each
invocation's lines come back complete and ordered between START and END/REPORT, the flood cut
at the per-invocation limit with its marker; an async (Event) invocation's lines; filters and
400s naming the bad parameter; another namespace's 404; GET /invocations/{id} links its logs;
a fake Loki receives the batches with the right labels (never request_id), and a failing one
is counted. Prints "ok - ..." / "not ok - ..." per check."""
import http.client, http.server, json, os, sys, threading, time, urllib.parse, uuid

from mlstack import Suite, call, scrape

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2200  # clear of the stack's own ports
LOKI_PORT = BASE + 4
S = Suite("test-function-logs", {"lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3},
          {"MINILAMBDA_LOKI_URL": f"http://127.0.0.1:{LOKI_PORT}", "MINILAMBDA_LOG_LEVEL": "warn",
           "MINILAMBDA_ASYNC_CONSUMERS": "2", "MINILAMBDA_LOG_MAX_FOLLOWERS": "3"})
EXEC = S.url("lambda-executor")
HDR = "X-Minilambda-Namespace"
TAG = uuid.uuid4().hex[:6]
FLOOD = 50 << 20

APP = r"""
import sys, time
def handler(event, context):
    a = event.get("action")
    print("out line 1")
    print("WARN something odd", file=sys.stderr)
    print("caf\u00e9 out line 2", flush=True)
    if a == "raise":
        raise ValueError("bad input " + str(event.get("x")))
    if a == "sleep":
        time.sleep(10)
    if a == "stamp":
        print("stamp " + repr(time.time()), flush=True)
        time.sleep(0.3)
    if a == "flood":
        chunk = ("y" * 1023 + "\n") * 1024
        for _ in range(%d):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    return {"ok": True}
""" % (FLOOD // (1 << 20))

loki = {"pushes": [], "fail": False}


class FakeLoki(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/loki/api/v1/push" and not loki["fail"]:
            loki["pushes"].append(json.loads(body))
            self.send_response(204)
        else:
            self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def invoke(fn, event, ns=None, headers=None):
    h = {"Content-Type": "application/json", **({HDR: ns} if ns else {}), **(headers or {})}
    return call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(event).encode(), h, 60)


def logs(fn, ns=None, **params):
    st, _, body = call("GET", f"{EXEC}/functions/{fn}/logs?" + urllib.parse.urlencode(params, doseq=True),
                       None, {HDR: ns} if ns else {})
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def all_lines(fn, **params):
    """Every line for params, following next_cursor."""
    out, cursor = [], None
    for _ in range(100):
        p = dict(params, limit=1000, **({"cursor": cursor} if cursor else {}))
        st, page = logs(fn, **p)
        if st != 200:
            return None
        out += page["lines"]
        cursor = page["next_cursor"]
        if not cursor:
            return out
    return out


def wait_lines(fn, rid, pred, timeout=15):
    end = time.time() + timeout
    while True:
        lines = all_lines(fn, request_id=rid) or []
        if pred(lines) or time.time() > end:
            return lines
        time.sleep(0.1)


def has_end(lines):
    return any(l["message"].startswith("REPORT RequestId:") for l in lines)


def framed(lines, rid):
    """START first, then END, then REPORT last; ts never goes back."""
    msgs = [l["message"] for l in lines]
    ts = [l["ts"] for l in lines]
    return (len(msgs) >= 3 and msgs[0].startswith(f"START RequestId: {rid}") and
            msgs[-2] == f"END RequestId: {rid}" and msgs[-1].startswith(f"REPORT RequestId: {rid}\t")
            and ts == sorted(ts))


class Follower:
    """GET ...?follow=1 read on a thread: events as (received at, id, line)."""

    def __init__(self, fn, ns=None, headers=None, **params):
        self.conn = http.client.HTTPConnection("127.0.0.1", S.ports["lambda-executor"], timeout=30)
        h = {**({HDR: ns} if ns else {}), **(headers or {})}
        self.conn.request("GET", f"/functions/{fn}/logs?" + urllib.parse.urlencode(dict(params, follow=1)), headers=h)
        self.resp = self.conn.getresponse()
        self.status, self.ctype = self.resp.status, self.resp.getheader("Content-Type")
        self.events, self.comments = [], 0
        if self.status == 200:
            threading.Thread(target=self.read, daemon=True).start()
        else:
            self.body = self.resp.read()

    def read(self):
        ev = {}
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    ev["id"] = line[4:]
                elif line.startswith("data: "):
                    ev["data"] = json.loads(line[6:])
                elif line.startswith(":"):
                    self.comments += 1
                elif line == "" and ev:
                    self.events.append((time.time(), ev.get("id"), ev.get("data")))
                    ev = {}
        except (OSError, ValueError, AttributeError, http.client.HTTPException):  # closed by the test
            pass

    def wait(self, pred, timeout=10):
        end = time.time() + timeout
        while time.time() < end and not pred(self.events):
            time.sleep(0.01)
        return pred(self.events)

    def close(self):
        self.conn.close()


def check_follow(fn, rid):
    back = Follower(fn, request_id=rid, since="1h")
    want = [l["message"] for l in all_lines(fn, request_id=rid)]
    S.check("follow: 200 text/event-stream, first the stored lines that match", back.status == 200
            and (back.ctype or "").startswith("text/event-stream")
            and back.wait(lambda e: len(e) >= len(want)) and [e[2]["message"] for e in back.events] == want,
            (back.status, back.ctype, len(back.events), len(want)))
    live = Follower(fn, q="stamp")
    delays = []
    for _ in range(5):
        invoke(fn, {"action": "stamp"})
    live.wait(lambda e: len(e) >= 5)
    for at, _, line in live.events:
        delays.append(at - float(line["message"].split()[1]))
    delays.sort()
    print(f"# follow delay (function print -> follower read), 5 lines: min {delays[0]*1000:.1f} ms, "
          f"median {delays[len(delays)//2]*1000:.1f} ms, max {delays[-1]*1000:.1f} ms" if delays else "# no delays", flush=True)
    S.check("follow: new lines arrive while the invocations run (each well under 1 s; target 100 ms)",
            len(delays) == 5 and delays[-1] < 1.0, delays)
    ids = [e[1] for e in live.events]
    resumed = Follower(fn, q="stamp", headers={"Last-Event-ID": ids[1]}) if len(ids) >= 5 else None
    S.check("follow: Last-Event-ID resumes right after that event",
            resumed and resumed.wait(lambda e: len(e) >= 3) and [e[1] for e in resumed.events[:3]] == ids[2:5],
            (ids, resumed and [e[1] for e in resumed.events]))
    extra = Follower(fn)
    S.check("follow: beyond MINILAMBDA_LOG_MAX_FOLLOWERS (3) → 429", extra.status == 429, extra.status)
    other = Follower(fn, ns=f"other-{TAG}")
    S.check("follow: another namespace's function → 404", other.status == 404, other.status)
    bad = Follower(fn, cursor="fzz")
    S.check("follow: a bad cursor → 400", bad.status == 400, bad.status)
    for f in (back, live, resumed, extra, other, bad):
        if f:
            f.close()


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", LOKI_PORT), FakeLoki)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    for name in ("build-master", "build-worker"):
        S.start(name)
    S.start("lambda-executor")
    fn = f"logs-{TAG}"
    f = S.deploy(fn, {"app.py": APP}, timeout_s=2)
    if not S.check("the function builds", f and f["state"] == "active", f):
        return

    st, h, body = invoke(fn, {})
    rid = h.get("X-Invocation-Id")
    lines = wait_lines(fn, rid, has_end)
    msgs = [l["message"] for l in lines]
    # stdout and stderr are two pipes: their relative order is the reader's, each one's own is kept
    S.check("a successful invocation's lines: START, output, END, REPORT in order", st == 200 and framed(lines, rid)
            and sorted(msgs[1:-2]) == sorted(["out line 1", "WARN something odd", "café out line 2"])
            and msgs.index("out line 1") < msgs.index("café out line 2"), msgs)
    by = {l["message"]: l for l in lines}
    S.check("stream and level per line (stderr WARN → warn, stdout → info)",
            by.get("out line 1", {}).get("stream") == "stdout" and by["out line 1"]["level"] == "info"
            and by.get("WARN something odd", {}).get("stream") == "stderr"
            and by["WARN something odd"]["level"] == "warn"
            and all(l["request_id"] == rid and l["version"] == "$LATEST" for l in lines), lines[:6])
    S.check("the stdout lines alone (stream=stdout)",
            [l["message"] for l in all_lines(fn, request_id=rid, stream="stdout")] == ["out line 1", "café out line 2"])
    S.check("stream repeated (stream=stdout&stream=platform) is a list",
            [l["stream"] for l in all_lines(fn, request_id=rid, stream=["stdout", "platform"])]
            == ["platform", "stdout", "stdout", "platform", "platform"], all_lines(fn, request_id=rid, stream=["stdout", "platform"]))
    S.check("q filters on the message", [l["message"] for l in all_lines(fn, request_id=rid, q="café")] == ["café out line 2"])

    st, h, _ = invoke(fn, {"action": "raise", "x": 7})
    rid_err = h.get("X-Invocation-Id")
    lines = wait_lines(fn, rid_err, has_end)
    S.check("an erroring invocation: its traceback is in the log, framed", framed(lines, rid_err)
            and any("bad input 7" in l["message"] for l in lines), [l["message"] for l in lines][-6:])

    st, h, _ = invoke(fn, {"action": "sleep"})
    rid_to = h.get("X-Invocation-Id")
    lines = wait_lines(fn, rid_to, has_end)
    S.check("a timed-out invocation: 'Task timed out after 2.00 seconds' before END", framed(lines, rid_to)
            and any("Task timed out after 2.00 seconds" in l["message"] for l in lines[-4:]),
            [l["message"] for l in lines][-4:])

    t0 = time.time()
    st, h, _ = invoke(fn, {"action": "flood"})
    rid_fl = h.get("X-Invocation-Id")
    lines = wait_lines(fn, rid_fl, has_end, timeout=60)
    kept = sum(len(l["message"]) + 1 for l in lines if l["stream"] == "stdout")
    marker = [l["message"] for l in lines if "log output truncated" in l["message"]]
    S.check("a 50 MB flood: cut at 4 MiB, marked, still framed and answered", st == 200 and framed(lines, rid_fl)
            and kept <= 4 << 20 and kept > (4 << 20) - 70000 and len(marker) == 1
            and "(limit 4194304 bytes per invocation)" in marker[0], (st, kept, marker, time.time() - t0))
    y = [l for l in lines if l["stream"] == "stdout" and l["message"].startswith("y")]
    S.check("the flood's kept lines are whole and complete up to the cut",
            all(l["message"] == "y" * 1023 for l in y) and len(y) > 4000, len(y))

    st, _, body = call("POST", f"{EXEC}/functions/{fn}/invoke", b"{}",
                       {"Content-Type": "application/json", "X-Invocation-Type": "Event"})
    rid_ev = json.loads(body).get("invocation_id") if st == 202 else None
    lines = wait_lines(fn, rid_ev, has_end, timeout=30)
    S.check("an async (Event) invocation's lines", st == 202 and framed(lines, rid_ev)
            and "out line 1" in [l["message"] for l in lines], (st, [l["message"] for l in lines]))

    st, _, body = call("GET", f"{EXEC}/invocations/{rid}")
    href = json.loads(body).get("logs", {}).get("href") if st == 200 else None
    S.check("GET /invocations/{id} links its logs", href == f"/functions/{fn}/logs?request_id={rid}", (st, body[:200]))

    st, page = logs(fn, since="1h", limit=2)
    S.check("pages: limit and next_cursor", st == 200 and len(page["lines"]) == 2 and page["next_cursor"], page)
    everything = all_lines(fn, since="1h")
    per_request = sum(len(all_lines(fn, request_id=r) or []) for r in {l["request_id"] for l in everything or []})
    S.check("all lines, paged: each once (as many as per request), oldest first", everything is not None
            and len(everything) == per_request
            and [l["ts"] for l in everything] == sorted(l["ts"] for l in everything), (len(everything or []), per_request))
    bad = {}
    for p, v in (("since", "soon"), ("until", "x"), ("limit", "0"), ("limit", "1001"), ("stream", "stdin"),
                 ("request_id", "nope"), ("cursor", "zz")):
        st, r = logs(fn, **{p: v})
        bad[p + "=" + v] = (st, r.get("error", {}).get("code") if isinstance(r, dict) else r)
        if st != 400 or p not in json.dumps(r):
            bad[p + "=" + v] += ("not named",)
    S.check("a bad parameter: 400 invalid_request naming it",
            all(v[0] == 400 and len(v) == 2 for v in bad.values()), bad)
    st, r = logs(fn, ns=f"other-{TAG}")
    st2, r2 = logs(f"nope-{TAG}")
    S.check("another namespace's function and an unknown one: 404", st == 404 and st2 == 404, (st, st2))

    check_follow(fn, rid)

    ns = f"ret-{TAG}"
    st, _, body = call("PATCH", f"{EXEC}/admin/namespaces/{ns}", json.dumps({"log_retention_days": 3}).encode(),
                       {"Content-Type": "application/json"})
    st2, _, body2 = call("GET", f"{EXEC}/admin/namespaces/{ns}")
    st3, _, _ = call("PATCH", f"{EXEC}/admin/namespaces/{ns}", json.dumps({"log_retention_days": 366}).encode(),
                     {"Content-Type": "application/json"})
    st4, _, body4 = call("PATCH", f"{EXEC}/admin/namespaces/{ns}",
                         json.dumps({"log_retention_days": None, "quotas": {"max_functions": 5}}).encode(),
                         {"Content-Type": "application/json"})
    S.check("admin API: log_retention_days set (1..365), read back, 400 outside, null restores the default",
            st == 200 and json.loads(body).get("log_retention_days") == 3 and st2 == 200
            and json.loads(body2).get("log_retention_days") == 3 and st3 == 400 and st4 == 200
            and json.loads(body4).get("log_retention_days") is None
            and json.loads(body4)["quotas"]["max_functions"] == 5, (st, body[:200], st2, st3, st4, body4[:200]))

    m, _ = scrape(EXEC)
    S.check("metrics: lines stored by stream, invocation_limit drops counted",
            m.get('minilambda_function_log_lines_total{stream="stdout"}', 0) > 4000
            and m.get('minilambda_function_log_lines_total{stream="platform"}', 0) >= 15
            and m.get('minilambda_function_log_lines_dropped_total{reason="invocation_limit"}', 0) > 40000,
            {k: v for k, v in m.items() if "function_log" in k})

    streams = [s for p in loki["pushes"] for s in p["streams"]]
    labels = {tuple(sorted(s["stream"].items())) for s in streams}
    values = [json.loads(v[1]) for s in streams if s["stream"].get("function") == fn for v in s["values"]]
    S.check("Loki gets the batches: labels service/function/namespace/level only, request_id in the line",
            streams and all(set(s["stream"]) == {"service", "function", "namespace", "level"}
                            and s["stream"]["service"] == "function" for s in streams)
            and any(v.get("request_id") == rid and v.get("message") == "out line 1" for v in values),
            (len(streams), list(labels)[:3]))
    loki["fail"] = True
    before = m.get("minilambda_function_log_loki_push_failures_total", 0)
    invoke(fn, {})
    end = time.time() + 10
    while time.time() < end and scrape(EXEC)[0].get("minilambda_function_log_loki_push_failures_total", 0) <= before:
        time.sleep(0.1)
    S.check("a failing Loki push is counted (the store is unaffected)",
            scrape(EXEC)[0].get("minilambda_function_log_loki_push_failures_total", 0) > before)
    srv.shutdown()


if __name__ == "__main__":
    try:
        main()
    finally:
        S.stop_all()
    sys.exit(1 if S.failures else 0)
