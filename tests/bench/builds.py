"""Build pipeline benchmark (make bench): a private native stack, the real build-master and
build-workers, a local webhook receiver. Appends a section to docs/benchmarks.md.

Measures, for a 100 KiB python ZIP:
  - latency POST /functions -> 'completed' webhook received, one build at a time, 1 worker;
  - throughput (builds/s) for a burst of builds, 1 worker vs 2 workers;
  - build-master acceptance rate (202s/s, publisher confirms on), against GET /health on the
    same server as the HTTP baseline;
  - a worker's RSS before and after 1,000 builds.
"""
import base64, http.server, io, json, os, random, signal, statistics, subprocess, sys
import threading, time, urllib.request, uuid, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin")
OUT = os.path.join(ROOT, "docs", "benchmarks.md")
from benchmd import append_section  # noqa: E402  (tests/bench is the script's own folder)
RUN = os.path.join(ROOT, ".run", "bench-stack")
WORK = os.path.join(ROOT, ".run", "bench")
MASTER_PORT, WORKER_PORTS = 29182, (29192, 29193)
MASTER = f"http://127.0.0.1:{MASTER_PORT}"
N_LATENCY = int(os.environ.get("BENCH_BUILDS_LATENCY", 100))
N_BURST = int(os.environ.get("BENCH_BUILDS_BURST", 300))
N_ACCEPT = int(os.environ.get("BENCH_ACCEPT", 600))
N_SOAK = int(os.environ.get("BENCH_SOAK", 1000))

completed = {}          # build_id -> time the 'completed' webhook arrived
cv = threading.Condition()


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["status"] in ("completed", "failed"):
            with cv:
                completed[body["build_id"]] = (time.monotonic(), body["status"])
                cv.notify_all()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def pkg():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.py", "def handler(event, context):\n    return event\n")
        z.writestr("data.bin", random.randbytes(100 * 1024))
    return base64.b64encode(buf.getvalue()).decode()


def post(doc):
    token = open(os.environ["MINILAMBDA_INTERNAL_TOKEN_FILE"]).read().strip()  # the stack's (stack.env)
    req = urllib.request.Request(MASTER + "/functions", data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Minilambda-Internal": token})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202, r.status
        return json.loads(r.read())["build_id"]


def submit(code, hook):
    return post({"name": "b" + uuid.uuid4().hex[:20], "runtime": "python3", "handler": "app.handler",
                 "webhook_url": hook, "code_base64": code})


def wait_done(ids, timeout=600):
    end = time.monotonic() + timeout
    with cv:
        while not all(i in completed for i in ids):
            if not cv.wait(max(0.0, end - time.monotonic())):
                raise RuntimeError(f"{sum(i not in completed for i in ids)} builds not completed")
    bad = [i for i in ids if completed[i][1] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} builds failed")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def parallel(n, threads, fn):
    it, lock, out = iter(range(n)), threading.Lock(), []

    def run():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            r = fn(i)
            with lock:
                out.append(r)
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


procs = {}


def start(name, binary, port_var, port, env):
    e = dict(os.environ, **env, **{port_var: str(port)})
    procs[name] = subprocess.Popen([os.path.join(BIN, binary)], env=e,
                                   stdout=open(os.path.join(WORK, name + ".log"), "ab"),
                                   stderr=subprocess.STDOUT)
    end = time.time() + 60
    while time.time() < end:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(name + " not healthy")


def stop(name):
    p = procs.pop(name)
    p.send_signal(signal.SIGTERM)
    p.wait(60)


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def main():
    os.makedirs(WORK, exist_ok=True)
    env_stack = dict(os.environ, ML_RUN_DIR=RUN, ML_PORT_BASE="29000")
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], env=env_stack,
                   check=True, stdout=subprocess.DEVNULL)
    env = {}
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            env[k] = v.strip("'\"")
    os.environ.update(env)
    for side in ("build", "lambda"):
        subprocess.run([os.path.join(BIN, "ml-migrate"), env[f"MINILAMBDA_{side.upper()}_DB_URL"],
                        os.path.join(ROOT, "migrations", side)], check=True, stdout=subprocess.DEVNULL)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    common = {"MINILAMBDA_BIND_ADDR": "127.0.0.1", "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK": "true",
              "MINILAMBDA_EXECUTOR_WEBHOOK_URL": "http://127.0.0.1:1", "MINILAMBDA_LOG_LEVEL": "warn",
              "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
              "MINILAMBDA_BUILD_SCRATCH_DIR": os.path.join(WORK, "scratch")}
    rows = []
    try:
        start("master", "build-master", "MINILAMBDA_BUILD_MASTER_PORT", MASTER_PORT, common)
        start("w1", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[0], common)
        code = pkg()
        for _ in range(5):  # warm-up
            wait_done([submit(code, hook)])
        lat = []
        for _ in range(N_LATENCY):
            t0 = time.monotonic()
            bid = submit(code, hook)
            wait_done([bid])
            lat.append((completed[bid][0] - t0) * 1000)
        rows.append(f"| POST → `completed` webhook, one at a time, 1 worker (n={N_LATENCY}) | "
                    f"p50 {statistics.median(lat):.0f} ms, p99 {pct(lat, 99):.0f} ms | target p50 ≤ 250 ms, p99 ≤ 1 s |")
        rates = {}
        for workers in (1, 2):
            if workers == 2:
                start("w2", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[1], common)
            t0 = time.monotonic()
            ids = parallel(N_BURST, 8, lambda i: submit(code, hook))
            wait_done(ids)
            rates[workers] = N_BURST / (time.monotonic() - t0)
        rows.append(f"| builds/s, burst of {N_BURST} submitted by 8 clients: 1 worker vs 2 workers | "
                    f"{rates[1]:.1f} vs {rates[2]:.1f} builds/s | target ≥ 20 with two workers |")
        stop("w2")
        stop("w1")
        # acceptance rate with no worker draining the queue, against GET /health as baseline
        t0 = time.monotonic()
        parallel(N_ACCEPT, 16, lambda i: urllib.request.urlopen(MASTER + "/health", timeout=10).read())
        health_rate = N_ACCEPT / (time.monotonic() - t0)
        t0 = time.monotonic()
        ids = parallel(N_ACCEPT, 16, lambda i: submit(code, hook))
        accept_rate = N_ACCEPT / (time.monotonic() - t0)
        rows.append(f"| build-master 202s/s, 16 clients, publisher confirms on (baseline: GET /health, same server) | "
                    f"{accept_rate:.0f} /s (health: {health_rate:.0f} /s) | target ≥ 200 /s |")
        start("w1", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[0], common)
        start("w2", "build-worker", "MINILAMBDA_BUILD_WORKER_PORT", WORKER_PORTS[1], common)
        wait_done(ids)
        pid = procs["w1"].pid
        warm = parallel(100, 8, lambda i: submit(code, hook))
        wait_done(warm)
        before = rss_kib(pid)
        soak = parallel(N_SOAK, 8, lambda i: submit(code, hook))
        wait_done(soak)
        after = rss_kib(pid)
        rows.append(f"| worker RSS before → after {N_SOAK} more builds (2 workers) | "
                    f"{before / 1024:.1f} → {after / 1024:.1f} MiB ({(after - before) / 1024:+.1f} MiB) | target growth < 5 MiB |")
    finally:
        for name in list(procs):
            stop(name)
        srv.shutdown()
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"],
                       env=env_stack, stdout=subprocess.DEVNULL)
    append_section(OUT, "Build pipeline", [
               "Command: `make bench` → `tests/bench/builds.py`: a private native stack (ports 29000+),",
               "build-master and build-workers built with `-O2`, a local webhook receiver; a 100 KiB python",
               "ZIP (incompressible data + `app.py`)."], rows)


if __name__ == "__main__":
    main()
