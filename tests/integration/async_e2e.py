"""Async invocations end to end (issue 5): Event invocations, 1,000 events exactly once,
retries then the dead-letter queue, the on_failure destination, replay, and a broker restart.
Prints "ok - ..." / "not ok - ..." per check."""
import base64, concurrent.futures, hashlib, hmac, http.server, json, os, signal, subprocess, sys
import threading, time, uuid

from mlstack import RUN, ROOT, Suite, call, psql, scrape as mlstack_scrape

S = Suite("test-async", {"build-master": 31582, "build-worker": 31592, "lambda-executor": 31581,
                         "executor-b": 31583},
          {"MINILAMBDA_ASYNC_CONSUMERS": "4", "MINILAMBDA_QUEUE_STATS_INTERVAL_MS": "200"})
EXEC = S.url("lambda-executor")

APP = """
import time
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise RuntimeError("always fails: " + str(event.get("n")))
    return {"n": event.get("n"), "id": context.invocation_id if hasattr(context, "invocation_id") else None}
"""

received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def event(fn, ev, timeout=30):
    return call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(ev).encode(),
                {"Content-Type": "application/json", "X-Invocation-Type": "Event"}, timeout)


def wait_invocation(inv, want, timeout=60):
    end, rec = time.time() + timeout, None
    while time.time() < end:
        st, _, body = call("GET", f"{EXEC}/invocations/{inv}")
        if st == 200:
            rec = json.loads(body)
            if rec["status"] in want:
                return rec
        time.sleep(0.2)
    return rec


def scrape():
    """The executor's /metrics as {"name{labels}": value}."""
    return mlstack_scrape(EXEC)[0]


def wait_metric(want, timeout=15):
    """Polls /metrics until want(values) holds; returns the last values."""
    end, m = time.time() + timeout, {}
    while time.time() < end:
        m = scrape()
        if want(m):
            break
        time.sleep(0.2)
    return m


def count(fn, where="true"):
    return int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                    f" where f.name = '{fn}' and {where}"))


def main():
    run = uuid.uuid4().hex[:8]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    for name in ("lambda-executor", "build-master", "build-worker"):
        S.start(name)
    try:
        fn = f"async-{run}"
        f = S.deploy(fn, {"app.py": APP})
        S.check("function deployed", f and f["state"] == "active", f)
        basics(fn)
        thousand(fn)
        dead_letters(run, srv)
        broker_restart(fn)
        executor_killed(fn)
    finally:
        S.stop_all()
        srv.shutdown()
    sys.exit(1 if S.failures else 0)


def basics(fn):
    st, h, body = event(fn, {"n": 1})
    r = json.loads(body)
    S.check("Event: 202 {invocation_id, status: queued}", st == 202 and r.get("status") == "queued"
            and len(r.get("invocation_id", "")) == 36, (st, body))
    rec = wait_invocation(r["invocation_id"], ("succeeded", "failed"))
    S.check("the event runs and its record shows the result", rec and rec["status"] == "succeeded"
            and rec.get("result", {}).get("n") == 1 and rec.get("trigger") == "http_async", rec)
    cons = 'minilambda_queue_consumers{queue="minilambda.invocations"}'
    m = wait_metric(lambda m: m.get(cons) == 4)
    S.check("minilambda_queue_consumers shows the executor's 4 async consumers on the invocation queue",
            m.get(cons) == 4 and 'minilambda_queue_messages{queue="minilambda.invocations"}' in m, m.get(cons))
    st, _, _ = event(fn, {"big": "x" * (256 * 1024)})
    S.check("an Event body over 256 KiB: 413", st == 413, st)
    st, _, _ = event(f"missing-{uuid.uuid4().hex[:6]}", {})
    S.check("Event for an unknown function: 404", st == 404, st)


def thousand(fn):
    before = count(fn)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        res = list(ex.map(lambda i: event(fn, {"n": i}), range(1000)))
    ids = [json.loads(b)["invocation_id"] for st, _, b in res if st == 202]
    S.check("1,000 events: all accepted (202)", len(ids) == 1000, len(ids))
    end = time.time() + 120
    while time.time() < end and count(fn, "i.status = 'succeeded'") < before + 1000:
        time.sleep(0.5)
    time.sleep(2)
    done = count(fn, "i.status = 'succeeded'")
    S.check("exactly 1,000 invocations finish, none lost or duplicated",
            done == before + 1000 and count(fn) == before + 1000 and
            count(fn, "i.attempts <> 1 and i.status = 'succeeded'") == 0, (done, before))
    ev = psql(f"select count(*), count(*) filter (where e.outcome = 'succeeded' and e.payload_sha256 is not null"
              f" and e.invocation_ids = array[e.id]) from event_audit e join functions f on f.id = e.function_id"
              f" where f.name = '{fn}' and e.type = 'http_async'")
    S.check("each async event has an event_audit row: size, sha256, outcome, its invocation",
            ev == f"{before + 1000}|{before + 1000}", ev)


def verify(secret, h, body):
    key = base64.b64decode(secret[len("whsec_"):])
    msg = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(s == "v1," + want for s in h["webhook-signature"].split())


def dead_letters(run, srv):
    fn = f"failing-{run}"
    S.deploy(fn, {"app.py": APP})
    hook = f"http://127.0.0.1:{srv.server_address[1]}/failure"
    st, _, body = call("PATCH", f"{EXEC}/functions/{fn}", json.dumps({"on_failure_url": hook, "max_retries": 2}).encode(),
                       {"Content-Type": "application/json"})
    S.check("PATCH on_failure_url and max_retries", st == 200, (st, body))
    dlq0 = scrape().get("minilambda_dlq_messages", -1)
    st, _, body = event(fn, {"fail": True, "n": 42})
    inv = json.loads(body)["invocation_id"]
    rec = wait_invocation(inv, ("dead_lettered",), timeout=60)
    S.check("an always-failing event ends dead_lettered after 1 + max_retries attempts",
            rec and rec["status"] == "dead_lettered" and rec["attempts"] == 3, rec)
    items = wait_dlq(fn)
    S.check("it appears in GET /functions/{fn}/dlq with its event and error",
            len(items) == 1 and items[0]["invocation_id"] == inv and items[0]["event"] == {"fail": True, "n": 42}
            and "always fails" in (items[0]["error_message"] or ""), items)
    end = time.time() + 20
    while time.time() < end and not received:
        time.sleep(0.2)
    ok = bool(received) and json.loads(received[0][1]).get("invocation_id") == inv
    S.check("on_failure_url receives the invocation record", ok, received[:1])
    own = psql(f"select webhook_secret from build_functions where name = '{fn}' and deleted_at is null",
               "MINILAMBDA_BUILD_DB_URL")
    S.check("the destination is signed (Standard Webhooks, the function's own whsec_ secret)",
            ok and verify(own, {k.lower(): v for k, v in received[0][0].items()}, received[0][1]))
    end, depth = time.time() + 15, 0
    while time.time() < end and (depth := dlq_depth()) < 1:
        time.sleep(1)  # the management API refreshes queue stats every few seconds
    S.check("a dead-lettered message sits in the RabbitMQ dead-letter queue", depth >= 1, depth)
    dead = 'minilambda_queue_messages{queue="minilambda.invocations.dead"}'
    m = wait_metric(lambda m: m.get(dead, 0) >= 1 and m.get("minilambda_dlq_messages") == dlq0 + 1)
    S.check("the executor's gauges show it: the dead queue's depth, and minilambda_dlq_messages + 1",
            dlq0 >= 0 and m.get(dead, 0) >= 1 and m.get("minilambda_dlq_messages") == dlq0 + 1,
            (dlq0, m.get(dead), m.get("minilambda_dlq_messages")))
    if not items:
        return
    st, _, body = call("POST", f"{EXEC}/dlq/{items[0]['id']}/replay")
    r = json.loads(body)
    S.check("replay: 202 with a new invocation linked to the original",
            st == 202 and r.get("replay_of") == inv and r.get("invocation_id") != inv, (st, body))
    rec = wait_invocation(r.get("invocation_id"), ("dead_lettered",), timeout=60)
    S.check("the replay runs again (and fails again here)", rec and rec["attempts"] == 3
            and rec.get("trigger") == "dlq_replay", rec)
    links = psql(f"select invocation_ids::text from event_audit where id = '{r.get('invocation_id')}' and type = 'dlq_replay'")
    S.check("the replay's event_audit row links the new and the original invocation",
            links == "{" + r.get("invocation_id", "") + "," + inv + "}", links)
    st, _, _ = call("DELETE", f"{EXEC}/dlq/{items[0]['id']}")
    S.check("DELETE /dlq/{id}: 204, then 404", st == 204 and call("DELETE", f"{EXEC}/dlq/{items[0]['id']}")[0] == 404)


def wait_dlq(fn, timeout=10):
    """The function's DLQ items, once there are any. The invocation record turns dead_lettered
    (audit flush) a moment before the DLQ row's transaction commits (docs/async.md)."""
    end, items = time.time() + timeout, []
    while time.time() < end and not items:
        st, _, body = call("GET", f"{EXEC}/functions/{fn}/dlq")
        items = json.loads(body).get("items", []) if st == 200 else []
        if not items:
            time.sleep(0.1)
    return items


def dlq_depth():
    env = {}
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v.strip("'\"")
    st, _, body = call("GET", env["MINILAMBDA_RABBITMQ_MGMT_URL"] + "/api/queues/%2f/minilambda.invocations.dead",
                       headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    return json.loads(body).get("messages", 0) if st == 200 else -1


def broker_restart(fn):
    accepted, stop = [], threading.Event()

    def stream():
        i = 0
        while not stop.is_set():
            st, _, body = event(fn, {"n": i}, timeout=10)
            if st == 202:
                accepted.append(json.loads(body)["invocation_id"])
            i += 1
            time.sleep(0.01)
    t = threading.Thread(target=stream)
    t.start()
    time.sleep(2)
    with open(os.path.join(RUN, "rabbitmq", "beam.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)
    time.sleep(2)
    m = wait_metric(lambda m: m.get("minilambda_queue_stats_up") == 0, timeout=5)
    S.check("broker killed: minilambda_queue_stats_up 0 and no stale queue series",
            m.get("minilambda_queue_stats_up") == 0 and not any(k.startswith("minilambda_queue_messages") for k in m),
            {k: v for k, v in m.items() if k.startswith("minilambda_queue")})
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], check=True, capture_output=True)
    time.sleep(3)
    m = wait_metric(lambda m: m.get("minilambda_queue_stats_up") == 1, timeout=20)
    S.check("broker back: the queue gauges reconnect by themselves", m.get("minilambda_queue_stats_up") == 1,
            m.get("minilambda_queue_stats_up"))
    stop.set()
    t.join()
    ids = ",".join(f"'{i}'" for i in accepted)
    done_sql = f"select count(*) from invocations where status = 'succeeded' and id in ({ids})"
    end = time.time() + 120
    while time.time() < end and int(psql(done_sql)) < len(accepted):
        time.sleep(0.5)
    done = int(psql(done_sql))
    # an event whose confirm was lost in the crash got a 503 yet may still run: at least once
    S.check(f"RabbitMQ killed and restarted during a stream: every 202'd event completes ({done}/{len(accepted)})",
            done == len(accepted) and len(accepted) > 50)


def executor_killed(fn):
    """kill -9 of an executor mid-invocation: its unacked events go back to the queue and
    complete on the other executor."""
    S.start("executor-b", "lambda-executor")
    ids = []
    for i in range(12):
        st, _, body = event(fn, {"sleep": 2, "n": i})
        if st == 202:
            ids.append(json.loads(body)["invocation_id"])
    time.sleep(1)  # both executors are now inside invocations
    S.procs["lambda-executor"].send_signal(signal.SIGKILL)
    S.procs["lambda-executor"].wait()
    q = ",".join(f"'{i}'" for i in ids)
    end = time.time() + 90
    while time.time() < end and int(psql(f"select count(*) from invocations where status = 'succeeded' and id in ({q})")) < len(ids):
        time.sleep(0.5)
    done = int(psql(f"select count(*) from invocations where status = 'succeeded' and id in ({q})"))
    S.check(f"an executor killed mid-invocation: its events complete on the other one ({done}/{len(ids)})",
            done == len(ids) == 12)
    S.start("lambda-executor")  # for stop_all's clean-exit bookkeeping


if __name__ == "__main__":
    main()
