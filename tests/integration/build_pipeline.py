"""Build pipeline end to end: build-master + two build-workers against the real stack.

Prints "ok - ..." / "not ok - ..." per check (tests/run.sh counts them). Webhook signatures
are verified here with Python's hmac, independently of the project's C signer.
"""
import base64, hashlib, hmac, http.server, io, json, os, signal, socket, subprocess, sys
import tempfile, threading, time, urllib.error, urllib.request, uuid, zipfile

import mlstack

ROOT = os.environ.get("ML_ROOT", os.getcwd())
BIN = os.environ["ML_BIN_DIR"]
RUN = os.environ["ML_RUN_DIR"]
MASTER_PORT, WORKER_PORTS = 31182, (31192, 31193)
MASTER = f"http://127.0.0.1:{MASTER_PORT}"
LOGS = os.path.join(ROOT, ".run", "test-build-pipeline")
INTERNAL_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
failures = 0


def check(name, cond, detail=""):
    global failures
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {detail}"), flush=True)
    failures += 0 if cond else 1
    return cond


def psql(sql, db="build_service_db"):
    url = os.environ["MINILAMBDA_BUILD_DB_URL"]
    out = subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# ---------------------------------------------------------------- webhook receiver

class Receiver(http.server.BaseHTTPRequestHandler):
    events, fail_first = [], {}
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = self.path
        with Receiver.lock:
            n = Receiver.fail_first.get(key, 0)
            if n > 0:
                Receiver.fail_first[key] = n - 1
                self.send_response(500); self.end_headers(); return
            Receiver.events.append((self.path, dict(self.headers), body))
        self.send_response(204); self.end_headers()

    def log_message(self, *a):
        pass


def verify(secret, headers, body):
    """Standard Webhooks, from the spec: v1,base64(HMAC-SHA256(key, id.ts.body))."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return want in sigs and abs(time.time() - int(headers["webhook-timestamp"])) < 300


def events_for(path):
    with Receiver.lock:
        return [(h, b) for p, h, b in Receiver.events if p == path]


# ---------------------------------------------------------------- daemons

procs = {}


def env_for(port_var, port):
    e = dict(os.environ)
    e.update({port_var: str(port), "MINILAMBDA_BIND_ADDR": "127.0.0.1",
              "MINILAMBDA_EXECUTOR_WEBHOOK_URL": "http://127.0.0.1:1",  # no executor in this test
              "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK": "true",
              "MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS": "300,300,300,300",
              "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": INTERNAL_SECRET,
              "MINILAMBDA_BUILD_SWEEP_AFTER_S": "1",
              "MINILAMBDA_QUEUE_STATS_INTERVAL_MS": "200",
              "MINILAMBDA_BUILD_SCRATCH_DIR": os.path.join(LOGS, "scratch")})
    return e


def start(name, binary, port_var, port):
    log = open(os.path.join(LOGS, name + ".log"), "ab")
    procs[name] = subprocess.Popen([os.path.join(BIN, binary)], env=env_for(port_var, port),
                                   stdout=log, stderr=subprocess.STDOUT)
    wait_health(port)


def wait_health(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"port {port} not healthy")


def stop_all():
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------- client helpers

def scrape(port):
    return mlstack.scrape(f"http://127.0.0.1:{port}")


def worker_total(metric, reason):
    """A reason's count summed over both workers."""
    return sum(scrape(p)[0].get(f'{metric}{{reason="{reason}"}}', 0) for p in WORKER_PORTS)


def wait_metric(port, want, timeout=15):
    """Polls port's /metrics until want(values) holds; returns the last values."""
    end, m = time.time() + timeout, {}
    while time.time() < end:
        m, _ = scrape(port)
        if want(m):
            break
        time.sleep(0.2)
    return m


def request(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(MASTER + path, data=body, method=method,
                                 headers={"Content-Type": ctype} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def make_zip(files):
    """files: list of (ZipInfo or name, data)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def symlink_entry(name, target):
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = (0o120777 << 16)
    return zi, target


def create(name, zip_bytes, runtime="python3", handler="app.handler", webhook=None):
    doc = {"name": name, "runtime": runtime, "handler": handler,
           "code_base64": base64.b64encode(zip_bytes).decode()}
    if webhook:
        doc["webhook_url"] = webhook
    return request("POST", "/functions", json.dumps(doc).encode())


def wait_build(build_id, timeout=60, want=("completed", "failed")):
    end = time.time() + timeout
    while time.time() < end:
        st, b = request("GET", f"/builds/{build_id}")
        if st == 200 and b["status"] in want:
            return b
        time.sleep(0.1)
    return request("GET", f"/builds/{build_id}")[1]


PY_OK = make_zip([("app.py", "def handler(event, context):\n    return event\n")])


def main():
    os.makedirs(LOGS, exist_ok=True)
    subprocess.run(["rm", "-rf", os.path.join(LOGS, "scratch")], check=True)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}"
    run = uuid.uuid4().hex[:8]
    start("build-master", "build-master", "MINILAMBDA_BUILD_MASTER_PORT", MASTER_PORT)
    start("worker-a", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[0])
    start("worker-b", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[1])
    try:
        happy_path(run, hook)
        hostile_packages(run)
        webhook_retries(run, hook)
        sweeper(run)
        worker_killed(run)
        broker_down(run)
    finally:
        stop_all()
        srv.shutdown()
    sys.exit(1 if failures else 0)


def happy_path(run, hook):
    st, r = create(f"ok-{run}", PY_OK, webhook=hook + "/happy")
    if not check("POST /functions answers 202 with ids and a webhook secret", st == 202 and
                 r["status"] == "queued" and r["webhook_secret"].startswith("whsec_"), r):
        return
    b = wait_build(r["build_id"])
    check("the build completes", b["status"] == "completed", b)
    check("GET /builds shows the artifact with its sha256",
          b.get("artifact") and len(b["artifact"]["sha256"]) == 64 and b["artifact"]["files"] == 1, b)
    end = time.time() + 15
    while time.time() < end and len(events_for("/happy")) < 3:
        time.sleep(0.1)
    ev = events_for("/happy")
    statuses = [json.loads(body)["status"] for _, body in ev]
    check("webhooks queued, building, completed arrive in order", statuses == ["queued", "building", "completed"], statuses)
    check("every webhook carries a valid Standard Webhooks signature",
          len(ev) == 3 and all(verify(r["webhook_secret"], {k.lower(): v for k, v in h.items()}, body) for h, body in ev))
    check("a wrong secret does not verify (the check can fail)",
          len(ev) > 0 and not verify("whsec_" + base64.b64encode(b"x" * 32).decode(),
                                     {k.lower(): v for k, v in ev[0][0].items()}, ev[0][1]))
    sha = psql(f"select artifact_sha256 from builds where id = '{r['build_id']}'")
    check("the artifact recorded in Postgres matches the API", sha == b["artifact"]["sha256"])
    st, lst = request("GET", f"/functions/ok-{run}/builds")
    check("GET /functions/{fn}/builds lists the build", st == 200 and lst["builds"][0]["build_id"] == r["build_id"], lst)
    st, err = request("DELETE", f"/functions/ok-{run}")
    check("DELETE with the lambda-executor unreachable: 503, nothing deleted",
          st == 503 and request("GET", f"/functions/ok-{run}/builds")[0] == 200, (st, err))


def hostile_packages(run):
    sentinel = f"/tmp/ml-escape-{run}"
    many = make_zip([("app.py", "def handler(e, c): pass\n")] + [(f"f{i}", "") for i in range(10001)])
    bomb = make_zip([("app.py", "def handler(e, c): pass\n"), ("zeros", b"\0" * (300 << 20))])
    cases = [
        ("traversal", make_zip([("app.py", "x"), (f"../../../..{sentinel}", "pwned")]), "escapes the package"),
        ("absolute", make_zip([("app.py", "x"), (sentinel, "pwned")]), "absolute"),
        ("symlink", make_zip([("app.py", "x"), symlink_entry("link", "/tmp"), ("link/evil", "pwned")]), "link"),
        ("entries", many, "10000"),
        ("bomb", bomb, ""),
        ("nohandler", make_zip([("main.py", "x")]), "app.py"),
    ]
    reasons = ("traversal", "absolute_path", "symlink", "too_many_entries", "ratio", "too_large", "no_handler")
    before = {r: (worker_total("minilambda_extract_rejections_total", r),
                  worker_total("minilambda_build_rejections_total", r)) for r in reasons}
    ids = {}
    for tag, data, _ in cases:
        st, r = create(f"bad-{tag}-{run}", data)
        ids[tag] = r.get("build_id") if st == 202 else None
        check(f"hostile package '{tag}' is accepted for building (202)", st == 202, r)
    for tag, _, want in cases:
        if not ids[tag]:
            continue
        b = wait_build(ids[tag], timeout=120)
        check(f"hostile package '{tag}' fails with a specific message",
              b["status"] == "failed" and want in (b.get("error") or ""), b)
    delta = {r: (worker_total("minilambda_extract_rejections_total", r) - before[r][0],
                 worker_total("minilambda_build_rejections_total", r) - before[r][1]) for r in reasons}
    check("extract_rejections_total counts each hostile ZIP by reason (the handler check is not the extractor's)",
          all(delta[r][0] == 1 for r in ("traversal", "absolute_path", "symlink", "too_many_entries"))
          and delta["ratio"][0] + delta["too_large"][0] == 1 and delta["no_handler"][0] == 0, delta)
    check("build_rejections_total counts every refused package, no_handler included",
          all(delta[r][1] == delta[r][0] for r in reasons if r != "no_handler") and delta["no_handler"][1] == 1, delta)
    for port in (MASTER_PORT,) + WORKER_PORTS:
        lint = scrape(port)[1]
        check(f"/metrics on :{port} passes promtool check metrics", lint[:2] == (200, 0), lint)
    check("nothing was written outside the scratch directory", not os.path.exists(sentinel))
    left = [f for _, _, fs in os.walk(os.path.join(LOGS, "scratch")) for f in fs]
    check("scratch directories are removed after builds", left == [], left[:5])
    st, r = create(f"notzip-{run}", b"this is not a zip")
    check("not a ZIP: 400 at submission", st == 400 and r["error"]["code"] == "invalid_zip", r)


def webhook_retries(run, hook):
    Receiver.fail_first["/flaky"] = 2
    st, r = create(f"flaky-{run}", PY_OK, webhook=hook + "/flaky")
    b = wait_build(r["build_id"])
    end = time.time() + 20
    while time.time() < end and len(events_for("/flaky")) < 3:
        time.sleep(0.1)
    first = psql(f"select string_agg(a.status_code::text, ',' order by a.attempt) from webhook_attempts a"
                 f" join webhook_deliveries d on d.id = a.delivery_id where d.build_id = '{r['build_id']}'"
                 f" and d.target = 'user' and d.event_status = 'queued'")
    check("a receiver answering 500 twice gets the webhook on the third attempt", first == "500,500,204", first)
    statuses = [json.loads(body)["status"] for _, body in events_for("/flaky")]
    check("order still holds after retries", statuses == ["queued", "building", "completed"], statuses)


def sweeper(run):
    """A build inserted but never published (the master died before the confirm) is found by
    the sweeper, published, and built."""
    st, r = create(f"sweep-{run}", PY_OK)
    wait_build(r["build_id"])
    bid = str(uuid.uuid4())
    psql(f"insert into builds (id, function_id, runtime, handler, package_key, package_size, package_sha256,"
         f" created_at) select '{bid}', function_id, runtime, handler, package_key, package_size, package_sha256,"
         f" now() - interval '1 hour' from builds where id = '{r['build_id']}'")
    b = wait_build(bid, timeout=60)
    check("the sweeper publishes a build whose job was never confirmed, and it completes",
          b["status"] == "completed", b)
    check("the swept build is marked published",
          psql(f"select published_at is not null from builds where id = '{bid}'") == "t")


def worker_killed(run):
    # A package big enough that its build takes a while (random data, stored uncompressed).
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as z:
        z.writestr("app.py", "def handler(e, c): pass\n")
        for i in range(40):
            z.writestr(f"blob{i}", os.urandom(1 << 20))
    st, r = create(f"killed-{run}", big.getvalue())
    bid = r["build_id"]
    end, owner = time.time() + 30, ""
    while time.time() < end and not owner:
        owner = psql(f"select worker_id from builds where id = '{bid}' and status = 'building'")
        time.sleep(0.02)
    victim = next((n for n, p in procs.items() if owner.endswith(f":{p.pid}")), None)
    if not check("a worker picked up the big build", victim is not None, owner):
        return
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait()
    b = wait_build(bid, timeout=90)
    check("after kill -9 of its worker, the build completes on the other worker",
          b["status"] == "completed", b)
    other = psql(f"select worker_id from builds where id = '{bid}'")
    check("the build's final worker is the survivor", other != owner, other)
    dead_dir = os.path.join(LOGS, "scratch", f"w{procs[victim].pid}")
    start(victim, "build-worker", "MINILAMBDA_BUILD_WORKER_PORT",
          WORKER_PORTS[0] if victim == "worker-a" else WORKER_PORTS[1])
    check("a restarted worker removes the killed worker's scratch directory", not os.path.exists(dead_dir))


def stack(cmd):
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), cmd],
                   check=True, capture_output=True)


def kill_broker():
    """kill -9 of the broker's Erlang VM: confirmed messages must survive it."""
    with open(os.path.join(RUN, "rabbitmq", "beam.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        time.sleep(0.1)


def broker_down(run):
    # Builds queued while no worker runs, then the broker dies and comes back.
    for n in ("worker-a", "worker-b"):
        procs[n].send_signal(signal.SIGTERM)
        procs[n].wait(30)
    queued = []
    for i in range(5):
        st, r = create(f"durable-{i}-{run}", PY_OK)
        if st == 202:
            queued.append(r["build_id"])
    jobs = 'minilambda_queue_messages{queue="minilambda.build_jobs"}'
    m = wait_metric(MASTER_PORT, lambda m: m.get(jobs) == len(queued))
    check("build-master: minilambda_queue_messages shows the queued jobs, with no consumer",
          len(queued) == 5 and m.get(jobs) == 5 and
          m.get('minilambda_queue_consumers{queue="minilambda.build_jobs"}') == 0, m.get(jobs))
    kill_broker()
    m = wait_metric(MASTER_PORT, lambda m: m.get("minilambda_queue_stats_up") == 0)
    check("broker down: queue_stats_up 0 and no stale queue series",
          m.get("minilambda_queue_stats_up") == 0 and not any(k.startswith("minilambda_queue_messages") for k in m),
          {k: v for k, v in m.items() if k.startswith("minilambda_queue")})
    st, r = create(f"nobroker-{run}", PY_OK)
    check("broker down: POST /functions answers 503 with Retry-After", st == 503, r)
    check("broker down: no half-created function is left behind",
          psql(f"select count(*) from build_functions where name = 'nobroker-{run}'") == "0")
    stack("start")
    start("worker-a", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[0])
    done = [wait_build(b, timeout=120)["status"] for b in queued]
    check("every build 202'd before the broker restart completes", len(queued) == 5 and
          all(s == "completed" for s in done), done)
    wait_health(MASTER_PORT)
    m = wait_metric(MASTER_PORT, lambda m: m.get("minilambda_queue_stats_up") == 1 and jobs in m, timeout=30)
    check("broker back: the queue gauges reconnect by themselves",
          m.get("minilambda_queue_stats_up") == 1 and jobs in m, m.get("minilambda_queue_stats_up"))
    st, r = create(f"afterbroker-{run}", PY_OK)
    check("after the broker returns, submissions work again", st == 202, r)


if __name__ == "__main__":
    main()
