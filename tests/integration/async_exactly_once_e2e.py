"""Exactly-once completion of async invocations (issue 15 item 5, docs/async.md): Event
invokes with and without a client X-Invocation-Id (invalid → 400; the same id twice → one
execution), then kill -9 of the executor under async load and a restart: 0 lost, no
completed event re-run, the cut events recorded as attempt 2 (audit and async_completions),
no sandbox process outliving its executor. Functions report each execution (with a run
nonce) to a sink here. Prints "ok - ..." / "not ok - ..." per check."""
import http.server, json, os, sys, threading, time, uuid

from mlstack import Suite, call, psql

TAG = uuid.uuid4().hex
BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 1700  # clear of the stack's own ports
S = Suite("test-async-once", {"build-master": BASE + 2, "build-worker": BASE + 3, "lambda-executor": BASE + 1},
          {"MINILAMBDA_ASYNC_CONSUMERS": "6", "MINILAMBDA_FUNCTION_NETWORK": "true",
           "MINILAMBDA_NETWORK_HOST": "true"})  # the sink is on this host's loopback
EXEC = S.url("lambda-executor")
SINK_PORT = BASE + 9
APP = """
import json, os, time, urllib.request, uuid
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
def _post(doc):
    req = urllib.request.Request(os.environ["SINK"], data=json.dumps(doc).encode(),
                                 headers={"Content-Type": "application/json"})
    _open(req, timeout=10).read()
def handler(event, context):
    doc = {"id": context.invocation_id, "run": uuid.uuid4().hex}
    _post(dict(doc, phase="start"))
    time.sleep(event.get("sleep", 0))
    _post(dict(doc, phase="end"))
    return {"n": event.get("n")}
"""
records, lock = [], threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        doc["t"] = time.time()
        with lock:
            records.append(doc)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def runs():
    """{invocation id: {run nonce: {"start": t, "end": t or None}}}"""
    out = {}
    with lock:
        for r in records:
            out.setdefault(r["id"], {}).setdefault(r["run"], {"start": None, "end": None})[r["phase"]] = r["t"]
    return out


def event(fn, body, inv=None):
    h = {"Content-Type": "application/json", "X-Invocation-Type": "Event"}
    if inv:
        h["X-Invocation-Id"] = inv
    return call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(body).encode(), h)


def record(inv):
    st, _, body = call("GET", f"{EXEC}/invocations/{inv}")
    return json.loads(body) if st == 200 else {}


def wait(pred, timeout, step=0.3):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def orphans(exclude):
    """Live processes whose environment carries this run's tag (sandboxes), minus exclude."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            if f"ONCE_TAG={TAG}".encode() in open(f"/proc/{d}/environ", "rb").read().split(b"\0") and \
                    open(f"/proc/{d}/stat").read().split(") ")[1][0] != "Z":
                found.append(int(d))
        except OSError:
            pass
    return found


def ids_and_dedup(fn):
    st, h, body = event(fn, {"n": "bad"}, "not-a-uuid")
    S.check("a malformed X-Invocation-Id is a 400 invalid_invocation_id",
            st == 400 and json.loads(body)["error"]["code"] == "invalid_invocation_id", (st, body[:200]))
    inv = str(uuid.uuid4())
    first = event(fn, {"n": "dup", "sleep": 0.5}, inv)
    second = event(fn, {"n": "dup", "sleep": 0.5}, inv.upper())
    S.check("the client's id is the invocation's id, answered on the 202 (twice, idempotent)",
            first[0] == 202 and second[0] == 202 and first[1].get("X-Invocation-Id") == inv ==
            json.loads(second[2])["invocation_id"], (first[:2], second[:2]))
    wait(lambda: record(inv).get("status") == "succeeded", 30)
    time.sleep(3)  # the second copy has been consumed (acked without running)
    n = len(runs().get(inv, {}))
    S.check(f"the same id sent twice ran once ({n} executions)", n == 1, n)
    row = psql(f"SELECT state, attempt, result_status FROM async_completions WHERE invocation_id = '{inv}'")
    S.check("its completion is recorded durably (completed, attempt 1, succeeded)",
            row == "completed|1|succeeded", row)


def kill_under_load(fn):
    ids = []
    for i in range(24):
        st, _, body = event(fn, {"n": i, "sleep": 2})
        if st == 202:
            ids.append(json.loads(body)["invocation_id"])
    wait(lambda: sum(1 for r in list(records) if r["phase"] == "start" and r["id"] in ids) >= 8, 30, 0.05)
    time.sleep(0.7)
    t_kill = time.time()
    S.procs["lambda-executor"].kill()
    S.procs["lambda-executor"].wait()
    time.sleep(0.5)
    orph = orphans(set())
    S.check(f"no sandbox process outlives its executor by 0.5 s ({len(orph)})", not orph, orph)
    S.start("lambda-executor")
    wait(lambda: all(record(i).get("status") == "succeeded" for i in ids), 90, 1)
    time.sleep(2)
    ex, recs = runs(), {i: record(i) for i in ids}
    lost = [i for i in ids if recs[i].get("status") != "succeeded" or not any(r["end"] for r in ex.get(i, {}).values())]
    cut = {i for i in ids if any(r["start"] < t_kill and (not r["end"] or r["end"] >= t_kill) for r in ex.get(i, {}).values())}
    rerun_done = [i for i in ids if len(ex.get(i, {})) > 1 and any(r["end"] and r["end"] < t_kill for r in ex[i].values())]
    extra = [i for i in ids if len(ex.get(i, {})) > 1 and i not in cut]
    att2 = {i for i in cut if recs[i].get("attempts") == 2 and
            psql(f"SELECT attempt FROM async_completions WHERE invocation_id = '{i}'") == "2"}
    print(f"# accepted {len(ids)}, cut {len(cut)}, re-executions {sum(len(ex.get(i, {})) - 1 for i in ids)}, "
          f"lost {len(lost)}, completed-then-rerun {len(rerun_done)}", flush=True)
    S.check(f"0 lost of {len(ids)} accepted", len(ids) == 24 and not lost, lost[:3])
    S.check(f"no event whose execution had completed ran again ({len(rerun_done)})", not rerun_done, rerun_done[:3])
    S.check(f"the only re-executions are the {len(cut)} cut events", not extra and cut, extra[:3])
    S.check(f"every cut event is recorded as attempt 2 in its audit row and its completion ({len(att2)}/{len(cut)})",
            cut and att2 == cut, sorted(cut - att2)[:3])


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", SINK_PORT), Sink)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        S.start("lambda-executor")
        S.start("build-master")
        S.start("build-worker")
        fn = f"once-{TAG[:8]}"
        f = S.deploy(fn, {"app.py": APP}, env={"SINK": f"http://127.0.0.1:{SINK_PORT}/", "ONCE_TAG": TAG}, concurrency=16,
                     timeout_s=30)
        if not S.check("the sink function deployed", f and f["state"] == "active", f):
            return
        call("POST", f"{EXEC}/functions/{fn}/invoke", b'{"n":"warm"}', {"Content-Type": "application/json"})
        ids_and_dedup(fn)
        kill_under_load(fn)
    finally:
        S.stop_all()
        srv.shutdown()
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
