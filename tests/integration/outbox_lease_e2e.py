"""Outbox lease recovery (issue 15 item 7) with the real build-master and build-workers on the
test stack; the build-status webhooks go to a receiver in this script that can hold a request.

  1. dead owner: worker A's 'building' delivery is held unanswered; A is kill -9ed; a worker
     restarted at once delivers that same delivery (same webhook-id) and then 'completed'
     within LEASE_MAX_S (the lease itself is 8 × 10 s + 30 s = 110 s);
  2. live owner: worker A's 'building' delivery is held HOLD_S (inside its 10 s request timeout)
     while worker B runs alongside: B does not take the lease (no second arrival of that
     webhook-id during the hold), and A settles it once released;
  3. the row records its owner while leased (lease_owner = the claim's worker_id) and the
     owner clears it on settling.
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import base64, http.server, json, os, signal, threading, time
from mlstack import Suite, call, make_zip, psql

PORTS = {"build-master": 32082, "build-worker": 32092, "build-worker-b": 32093}
RECV_PORT = 32099
LEASE_MAX_S = 5.0
HOLD_S = 6.0
S = Suite("test-outbox-lease", PORTS, {"MINILAMBDA_EXECUTOR_WEBHOOK_URL": f"http://127.0.0.1:{RECV_PORT}"})
APP = "def handler(event, context):\n    return {'ok': True}\n"
ZIP = base64.b64encode(make_zip({"app.py": APP})).decode()


def note(msg):
    print("# " + msg, flush=True)


class Receiver:
    """Answers every webhook 204, except that while `hold` is set the first 'building' one is
    held until `release` is set (then answered 204, or dropped if `drop`)."""

    def __init__(self):
        self.arrivals, self.lock = [], threading.Lock()
        self.hold, self.release, self.held = threading.Event(), threading.Event(), threading.Event()
        recv = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    status = json.loads(body).get("status")
                except ValueError:
                    status = None
                wid = self.headers.get("webhook-id")
                with recv.lock:
                    recv.arrivals.append((time.time(), wid, status))
                    hold = recv.hold.is_set() and status == "building" and not recv.held.is_set()
                    if hold:
                        recv.held.set()
                if hold and not recv.release.wait(300):
                    return
                try:
                    self.send_response(204)
                    self.end_headers()
                except OSError:
                    pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", RECV_PORT), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.arrivals.clear()
        self.release.clear()
        self.held.clear()
        self.hold.set()

    def of(self, wid=None, status=None):
        with self.lock:
            return [a for a in self.arrivals if (wid is None or a[1] == wid) and (status is None or a[2] == status)]


def wait_until(fn, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def create(name):
    st, _, body = call("POST", S.url("build-master") + "/functions",
                       json.dumps({"name": name, "runtime": "python3", "handler": "app.handler",
                                   "code_base64": ZIP}).encode(), {"Content-Type": "application/json"})
    return st, body


def held_row(wid):
    return psql(f"SELECT coalesce(lease_owner, '-'), worker_id, status FROM webhook_deliveries WHERE id = '{wid}'",
                "MINILAMBDA_BUILD_DB_URL").split("|")


def dead_owner(rx, run):
    rx.reset()
    st, body = create(f"lease-dead-{run}")
    S.check("dead owner: create accepted", st == 202, (st, body[:200]))
    held = wait_until(lambda: rx.of(status="building"), 30)
    if not S.check("dead owner: a 'building' delivery is in flight", held):
        return
    wid = held[0][1]
    owner, worker, _ = held_row(wid)
    S.check("the leased row records its owner (lease_owner = worker_id)", owner != "-" and owner == worker,
            (owner, worker))
    S.procs["build-worker"].send_signal(signal.SIGKILL)
    S.procs["build-worker"].wait()
    t_kill = time.time()
    S.start("build-worker")
    again = wait_until(lambda: [a for a in rx.of(wid) if a[0] > t_kill], 60)
    done = wait_until(lambda: [a for a in rx.of(status="completed") if a[0] > t_kill], 60)
    dt = (again[0][0] - t_kill) if again else None
    dc = (done[0][0] - t_kill) if done else None
    note(f"dead owner: held delivery re-sent {dt if dt is None else round(dt, 2)} s after the kill, "
         f"'completed' {dc if dc is None else round(dc, 2)} s after (lease 110 s)")
    S.check(f"dead owner: the held delivery is re-sent within {LEASE_MAX_S} s of the kill",
            dt is not None and dt <= LEASE_MAX_S, dt)
    S.check(f"dead owner: 'completed' follows within {LEASE_MAX_S + 2} s", dc is not None and dc <= LEASE_MAX_S + 2, dc)
    rx.release.set()  # the dead worker's socket is gone; nothing to answer
    settled = wait_until(lambda: psql(f"SELECT status || ':' || coalesce(lease_owner, '-') FROM webhook_deliveries"
                                      f" WHERE id = '{wid}'", "MINILAMBDA_BUILD_DB_URL") == "delivered:-", 10)
    S.check("the settled row has no lease owner", settled)


def live_owner(rx, run):
    rx.reset()
    S.start("build-worker-b", "build-worker")
    try:
        st, body = create(f"lease-live-{run}")
        S.check("live owner: create accepted", st == 202, (st, body[:200]))
        held = wait_until(lambda: rx.of(status="building"), 30)
        if not S.check("live owner: a 'building' delivery is in flight", held):
            return
        wid = held[0][1]
        time.sleep(HOLD_S)
        during = len(rx.of(wid))
        owner_during = held_row(wid)[0]
        rx.release.set()
        delivered = wait_until(lambda: psql(f"SELECT status FROM webhook_deliveries WHERE id = '{wid}'",
                                            "MINILAMBDA_BUILD_DB_URL") == "delivered", 10)
        attempts = psql(f"SELECT attempts FROM webhook_deliveries WHERE id = '{wid}'", "MINILAMBDA_BUILD_DB_URL")
        note(f"live owner: {during} arrival(s) of the held delivery in {HOLD_S} s with a second worker running; "
             f"attempts {attempts}")
        S.check(f"live owner: its lease is not stolen during a {HOLD_S} s hold (1 arrival)", during == 1, during)
        S.check("live owner: the row stays leased by it while held", owner_during != "-",
                owner_during)
        S.check("live owner: it settles the delivery itself (delivered, 1 attempt)", delivered and attempts == "1",
                (delivered, attempts))
    finally:
        S.procs["build-worker-b"].send_signal(signal.SIGTERM)
        S.procs["build-worker-b"].wait(60)


def main():
    rx = Receiver()
    run = base64.b32encode(os.urandom(5)).decode().lower()
    try:
        S.start("build-master")
        S.start("build-worker")
        dead_owner(rx, run)
        live_owner(rx, run)
    finally:
        rx.release.set()
        S.stop_all()
    raise SystemExit(1 if S.failures else 0)


main()
