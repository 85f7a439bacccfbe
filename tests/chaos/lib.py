"""Shared parts of the fault-injection suite (tests/chaos): the private platform, fault
switches on its backing servers, HTTP clients and an open-loop load generator, the execution
sink functions report to, a webhook hold proxy, and the report (tables + checks).

Everything runs on the chaos stack (.run/chaos-stack, ports CHAOS_PORT_BASE+, default 26000)
that tests/chaos/run.sh started; nothing here touches the test stack or a `make run` stack."""
import asyncio, base64, http.client, http.server, json, os, socket, subprocess, sys, threading, time, urllib.parse, uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from mlstack import (BIN, INTERNAL_HEADER, INTERNAL_TOKEN, ROOT, RUN, Suite, call,  # noqa: E402,F401 (make_zip: re-exported)
                     make_zip, psql)

BASE = int(os.environ.get("CHAOS_PORT_BASE", "26000"))
PORTS = {"gateway": BASE + 80, "lambda-executor": BASE + 81, "build-master": BASE + 82,
         "build-worker": BASE + 92}
PROXY_PORT, SINK_PORT = BASE + 93, BASE + 94
STACK_SH = os.path.join(ROOT, "infrastructure/dev/stack.sh")
RUN_ID = uuid.uuid4().hex[:6]
TAG = "chaos-" + RUN_ID  # in the executor's and every function's environment: finds orphans
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()


def note(msg):
    print("# " + msg, flush=True)


# ---------------------------------------------------------------- the platform

def platform():
    """The four daemons on the chaos stack, configured as a deployment would be except for
    generous build and default rate limits (the scenarios set their own per function)."""
    s = Suite("chaos", dict(PORTS), {
        "MINILAMBDA_JWT_SECRET": JWT_SECRET,
        "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
        "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
        "MINILAMBDA_BUILD_RATE_LIMIT_PER_MIN": "100000", "MINILAMBDA_BUILD_RATE_LIMIT_BURST": "100000",
        "MINILAMBDA_DEFAULT_RATE_LIMIT_RPS": "100000", "MINILAMBDA_DEFAULT_RATE_LIMIT_BURST": "100000",
        "MINILAMBDA_FUNCTION_NETWORK": "true",  # functions report each execution to the sink
        "MINILAMBDA_NETWORK_HOST": "true",      # ... on this host's loopback (docs/network.md)
        "MINILAMBDA_ASYNC_CONSUMERS": "8", "MINILAMBDA_LOG_LEVEL": "warn"})
    s.token = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "chaos"], capture_output=True,
                             text=True, check=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
    return s


def start_executor(S):
    S.start("lambda-executor", CHAOS_TAG=TAG)


def executor_alive(S):
    p = S.procs.get("lambda-executor")
    return p is not None and p.poll() is None


def kill9(S, name):
    p = S.procs[name]
    p.kill()
    p.wait()


def healthy(url, timeout=2):
    try:
        return call("GET", url + "/health", timeout=timeout)[0] == 200
    except OSError:
        return False


def wait_until(pred, timeout, step=0.2):
    """Polls pred until it is truthy or timeout seconds passed; returns its last value."""
    end, v = time.time() + timeout, None
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return v


# ---------------------------------------------------------------- fault switches

def stack_env():
    env = {}
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v.strip("'\"")
    return env


def _pid(path):
    try:
        return int(open(path).read().strip())
    except (OSError, ValueError):
        return None


def stack_start():
    """Starts whatever server of the chaos stack is down (stack.sh reuses the running ones)."""
    subprocess.run(["bash", STACK_SH, "start"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, ML_RUN_DIR=RUN))


def pg_stop():
    data = stack_env()["ML_STACK_PG_DATA"]
    pg_ctl = os.path.join(stack_env()["ML_STACK_PG_BIN"], "pg_ctl")
    subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", data, "-m", "fast", "-W", "stop"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    pid = _pid(os.path.join(data, "postmaster.pid"))
    wait_until(lambda: pid is None or not os.path.exists(f"/proc/{pid}"), 10)


def pg_up():
    try:
        psql("select 1")
        return True
    except subprocess.CalledProcessError:
        return False


def rabbit_up():
    """The broker's AMQP port accepts connections."""
    port = urllib.parse.urlparse(stack_env()["MINILAMBDA_AMQP_URL"]).port
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def rabbit_stop():
    """SIGTERM to the broker's VM (a clean shutdown, ~6 s); returns once it is gone."""
    pid = _pid(os.path.join(RUN, "rabbitmq", "beam.pid"))
    if pid:
        os.kill(pid, 15)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}") or
                   open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", 30)


def redis_pid():
    return _pid(os.path.join(RUN, "redis", "redis.pid"))


def orphans(exclude=()):
    """Live processes carrying this run's tag in their environment (the executor's sandboxes
    and their functions) other than the pids in exclude."""
    found, needle = [], f"CHAOS_TAG={TAG}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude:
            continue
        try:
            if needle in open(f"/proc/{d}/environ", "rb").read().split(b"\0"):
                if open(f"/proc/{d}/stat").read().split(") ")[1][0] != "Z":
                    found.append(int(d))
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- HTTP

class Client:
    """One keep-alive connection (per thread); reconnects once on a broken connection.
    Transport errors answer status 0."""

    def __init__(self, port, token=None):
        self.port, self.token, self.conn = port, token, None

    def req(self, method, path, body=None, headers=None, timeout=30):
        h = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        if body is not None:
            h.setdefault("Content-Type", "application/json")
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
                if self.conn:
                    self.conn.close()
                self.conn = None
                if attempt:
                    return 0, {}, b""


async def _one(conn, req, timeout):
    r, w = conn
    method, path, headers, body = req
    head = f"{method} {path} HTTP/1.1\r\nHost: chaos\r\nContent-Length: {len(body)}\r\n"
    head += f"{INTERNAL_HEADER}: {INTERNAL_TOKEN}\r\n"  # as a sibling service would
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    w.write(head.encode() + b"\r\n" + body)
    raw = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
    lines = raw.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    data = await asyncio.wait_for(r.readexactly(int(hdrs.get("content-length", "0"))), timeout)
    return int(lines[0].split(" ")[1]), hdrs, data


async def _open_loop(port, make_req, rate, duration, conns, timeout):
    pool, out, t0 = asyncio.Queue(), [], time.monotonic()
    for _ in range(conns):
        pool.put_nowait(None)

    async def fire(i):
        req, ts = make_req(i), time.time()
        c = await pool.get()
        try:
            if c is None:
                c = await asyncio.open_connection("127.0.0.1", port)
            st, h, data = await _one(c, req, timeout)
            if h.get("connection", "").lower() == "close":
                c[1].close()
                c = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError):
            if c:
                c[1].close()
            c, st, h, data = None, 0, {}, b""
        pool.put_nowait(c)
        out.append({"i": i, "ts": ts, "t": time.time(), "status": st, "headers": h, "body": data})

    tasks, i = [], 0
    while time.monotonic() - t0 < duration:
        due = t0 + i / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        tasks.append(asyncio.ensure_future(fire(i)))
        i += 1
    await asyncio.gather(*tasks)
    while not pool.empty():
        c = pool.get_nowait()
        if c:
            c[1].close()
    return sorted(out, key=lambda x: x["i"])


def open_loop(port, make_req, rate, duration, conns=32, timeout=15):
    """Sends make_req(i) = (method, path, headers, body) at a fixed rate for duration seconds
    over at most conns connections (a request waits for a free one); one dict per request:
    i, ts and t (wall times of the send and the answer), status (0: transport error or timeout), headers, body."""
    return asyncio.run(_open_loop(port, make_req, rate, duration, conns, timeout))


def background(fn, *args):
    """Runs fn(*args) on a thread; the returned object's .get() joins and returns the result."""
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", fn(*args)), daemon=True)
    th.start()

    class Handle:
        @staticmethod
        def get():
            th.join()
            return box.get("r")
    return Handle


# ---------------------------------------------------------------- the execution sink

SINK_APP = """
import json, os, time, urllib.request, uuid
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
def _post(doc):
    req = urllib.request.Request(os.environ["CHAOS_SINK"], data=json.dumps(doc).encode(),
                                 headers={"Content-Type": "application/json"})
    _open(req, timeout=10).read()
def handler(event, context):
    doc = {"id": context.invocation_id, "n": event.get("n"), "run": uuid.uuid4().hex}
    _post(dict(doc, phase="start"))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    _post(dict(doc, phase="end"))
    return {"n": event.get("n")}
"""
ECHO_APP = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n')}\n"


class Sink:
    """Receives the sink function's "start"/"end" reports: each execution has its own run
    nonce, so executions per invocation id (or per event number n) are counted exactly."""

    def __init__(self):
        self.lock, self.records = threading.Lock(), []
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                doc["t"] = time.time()
                with sink.lock:
                    sink.records.append(doc)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", SINK_PORT), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{SINK_PORT}/"

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def executions(self, key="id", recs=None):
        """{key value: {run nonce: {"start": t, "end": t or None}}}"""
        out = {}
        for r in recs if recs is not None else self.snapshot():
            e = out.setdefault(r.get(key), {}).setdefault(r["run"], {"start": None, "end": None})
            e[r["phase"]] = r["t"]
        return out


# ---------------------------------------------------------------- webhook hold proxy

class Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a held delivery's sender hung up: expected


class HoldProxy:
    """Stands between the build side (build-master's inline delivery, the build-workers'
    outbox) and the executor's build-status webhook: forwards everything, except that
      - while hold is set, a delivery whose status is in statuses is read and never answered
        (the worker's dispatcher sits inside its lease);
      - with delay > 0, each delivery reaches the executor that many seconds late, even when
        its sender gave up waiting meanwhile (a slow link)."""

    def __init__(self, target):
        self.target, self.hold, self.held, self.delay = target, threading.Event(), [], 0.0
        self.release, self.statuses = threading.Event(), ("building", "completed")
        px = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status = json.loads(body).get("status") if self.command == "POST" else None
                except ValueError:
                    status = None
                if not status:  # not a build-status delivery (the build-master's DELETE, ...)
                    return self.forward(body)
                if px.hold.is_set() and status in px.statuses:
                    px.held.append((time.time(), self.path, status))
                    px.release.wait(300)
                    self.close_connection = True
                    return
                if px.delay:
                    time.sleep(px.delay)
                self.forward(body)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def forward(self, body):
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    st, _, data = call(self.command, px.target + self.path, body if body else None, hdrs, timeout=20)
                except OSError:
                    st, data = 502, b""
                self.send_response(st)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass
        self.srv = Quiet(("127.0.0.1", PROXY_PORT), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{PROXY_PORT}"


# ---------------------------------------------------------------- functions and records

def deploy(S, name, files, **config):
    """Creates a function through build-master and waits until the executor has it active."""
    f = S.deploy(name, files, **config)
    if not f or f.get("state") != "active":
        raise RuntimeError(f"deploy {name}: {f}")
    return f


def audit_ids(fn):
    """Invocation ids of fn's audit rows (a list: duplicates would show)."""
    out = psql(f"select i.id from invocations i join functions f on f.id = i.function_id where f.name = '{fn}'")
    return [x for x in out.split("\n") if x]


def audit_settle(fn, want, timeout=60):
    """Waits until fn has at least want audit rows, then until the count stops moving."""
    wait_until(lambda: len(audit_ids(fn)) >= want, timeout, 0.5)
    last = -1
    for _ in range(10):
        n = len(audit_ids(fn))
        if n == last:
            break
        last = n
        time.sleep(0.5)
    return audit_ids(fn)


def metrics(url):
    """A daemon's /metrics as {"name{labels}": value} ({} unless it answered 200)."""
    st, _, body = call("GET", url + "/metrics")
    out = {}
    for line in body.decode().splitlines() if st == 200 else []:
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


# ---------------------------------------------------------------- the report

class Scenario:
    """One scenario's counts and checks; prints a table and ok/not ok lines."""

    def __init__(self, name, title):
        self.name, self.title, self.rows, self.checks, self.t0 = name, title, [], [], time.time()
        print(f"\n=== {name}: {title}", flush=True)

    def counts(self, label, **c):
        self.rows.append((label, c))

    def check(self, what, cond, detail=""):
        self.checks.append((what, bool(cond)))
        print(("ok - " if cond else "not ok - ") + f"{self.name}: {what}" + ("" if cond else f"  # {detail}"),
              flush=True)
        return cond

    def table(self):
        cols = ["sent", "accepted", "executed", "audited", "duplicated", "lost"]
        extra = sorted({k for _, c in self.rows for k in c} - set(cols))
        head = ["", *cols, *extra]
        lines = [head] + [[label, *[str(c.get(k, "—")) for k in cols + extra]] for label, c in self.rows]
        w = [max(len(r[i]) for r in lines) for i in range(len(head))]
        for r in lines:
            print("  " + "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(r)), flush=True)

    def result(self):
        self.table()
        ok = all(c for _, c in self.checks) and bool(self.checks)
        dt = time.time() - self.t0
        print(f"--- {self.name}: {'PASS' if ok else 'FAIL'} ({dt:.0f} s)", flush=True)
        return {"name": self.name, "title": self.title, "pass": ok, "seconds": round(dt, 1),
                "rows": [{"label": l, **c} for l, c in self.rows],
                "checks": [{"what": w, "ok": c} for w, c in self.checks]}
