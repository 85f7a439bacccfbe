"""Dependency install benchmark (make bench; docs/build-pipeline.md "Dependencies", issue 19):
what installing requirements.txt costs a build, and what the S3 cache of installed trees saves.

On a private native stack (ports BENCH_DEPS_PORT_BASE, default 27000+) with the real
build-master, one build-worker and the lambda-executor, and a local PEP 503 index
(tests/integration/depfixtures.py) serving 20 small pure-python wheels, N rounds
(BENCH_DEPS_ROUNDS, default 5) of:
  (a) a build without dependencies (a new function, app.py only);
  (b) a first build with the 20 dependencies (a new function; its requirements.txt carries a
      per-round comment, so the cache key is new: a miss, pip runs in the sandbox);
  (c) a code-only rebuild of (b)'s function (PUT /functions/{fn}/code, app.py changed, the same
      requirements.txt: a hit, the tree comes from S3).
Each time is POST/PUT -> the build's `completed` webhook received. The hit path is also
checked by the build-worker's minilambda_build_dep_cache_total counters and a function is
invoked to prove the installed packages are there. Appends a section to docs/benchmarks.md
(BENCH_OUT overrides the file): median and max of each, and the ratio hit / no-deps (target
<= 2x, the issue's)."""
import base64, http.server, json, os, random, re, shutil, statistics, subprocess, sys, tempfile
import threading, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, ".run", "bench-deps-stack")
PORT_BASE = int(os.environ.get("BENCH_DEPS_PORT_BASE", "27000"))
os.environ.setdefault("ML_BIN_DIR", sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin"))
os.environ["ML_RUN_DIR"], os.environ["ML_ROOT"] = RUN, ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from depfixtures import PyIndex, make_wheel  # noqa: E402  (tests/integration, added above)
from benchmd import append_section  # noqa: E402  (tests/bench is the script's own folder)
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md"))
ROUNDS = int(os.environ.get("BENCH_DEPS_ROUNDS", 5))
NDEPS = 20
PORTS = {"lambda-executor": PORT_BASE + 181, "build-master": PORT_BASE + 182, "build-worker": PORT_BASE + 192}

completed = {}          # build_id -> (time the final webhook arrived, status)
cv = threading.Condition()


class Receiver(http.server.BaseHTTPRequestHandler):
    """The functions' webhook_url: notes when each build's final status arrives."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("status") in ("completed", "failed"):
            with cv:
                completed.setdefault(body["build_id"], (time.monotonic(), body["status"], body.get("error")))
                cv.notify_all()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def stack_env():
    """Starts the private stack (Postgres, Redis, RabbitMQ, S3), migrates, exports stack.env."""
    env = dict(os.environ, ML_RUN_DIR=RUN, ML_PORT_BASE=str(PORT_BASE))
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            os.environ[k] = v.strip("'\"")
    for side in ("build", "lambda"):
        subprocess.run([os.path.join(os.environ["ML_BIN_DIR"], "ml-migrate"), os.environ[f"MINILAMBDA_{side.upper()}_DB_URL"],
                        os.path.join(ROOT, "migrations", side)], check=True, stdout=subprocess.DEVNULL)
    return env


def wheels(index, work):
    """NDEPS wheels benchdepNN 1.0.0 (a module with VALUE = NN and ~16 KiB of data) added to
    index; (requirement lines, total bytes of the wheels)."""
    rnd, reqs, total = random.Random(19), [], 0
    for i in range(NDEPS):
        data = base64.b64encode(rnd.randbytes(12 * 1024)).decode()
        path = make_wheel(os.path.join(work, "wheels"), f"benchdep{i:02d}", "1.0.0",
                          {f"benchdep{i:02d}/__init__.py": f"VALUE = {i}\nDATA = {data!r}\n"})
        index.add(path)
        total += os.path.getsize(path)
        reqs.append(f"benchdep{i:02d}==1.0.0")
    return reqs, total


APP_NODEPS = "def handler(event, context):\n    return {'ok': True}\n"
APP_DEPS = ("import importlib\n"
            f"MODS = [importlib.import_module('benchdep%02d' % i) for i in range({NDEPS})]\n"
            "def handler(event, context):\n"
            "    return sum(m.VALUE for m in MODS)\n")


def submit(S, method, path, doc):
    """POST/PUT to the build-master; (build_id, the monotonic time it was sent)."""
    from mlstack import call
    t0 = time.monotonic()
    st, _, body = call(method, S.url("build-master") + path, json.dumps(doc).encode(),
                       {"Content-Type": "application/json"})
    if st != 202:
        raise RuntimeError(f"{method} {path}: {st} {body[:300]!r}")
    return json.loads(body)["build_id"], t0


def install_ms(S, bid):
    """The install step's own time from the build's log (GET /builds/{id}/log): the cache
    restore's, or the installer's in the sandbox; None when the log has neither line."""
    from mlstack import call
    st, _, body = call("GET", f"{S.url('build-master')}/builds/{bid}/log?limit=1000")
    for line in json.loads(body)["lines"] if st == 200 else []:
        m = re.search(r"restored from the cache \(.* (\d+) ms\)|the installer finished in (\d+) ms", line["message"])
        if line["step"] == "install" and m:
            return int(m.group(1) or m.group(2))
    return None


def timed_build(S, method, path, doc, timeout=600):
    """(milliseconds from the request to the build's `completed` webhook, the install step's
    milliseconds or None)."""
    from mlstack import make_zip
    files = doc.pop("files")
    doc["code_base64"] = base64.b64encode(make_zip(files)).decode()
    bid, t0 = submit(S, method, path, doc)
    end = time.monotonic() + timeout
    with cv:
        while bid not in completed:
            if not cv.wait(max(0.0, end - time.monotonic())):
                raise RuntimeError(f"build {bid} did not finish in {timeout} s")
    t, status, error = completed[bid]
    if status != "completed":
        raise RuntimeError(f"build {bid} ({method} {path}) {status}: {error}")
    return (t - t0) * 1000, install_ms(S, bid)


def cache_counts(S):
    """(hits, misses) of the build-worker's pip dependency cache."""
    from mlstack import call
    _, _, body = call("GET", S.url("build-worker") + "/metrics")
    counts = {"hit": 0.0, "miss": 0.0}
    for labels, v in re.findall(rb"^minilambda_build_dep_cache_total\{([^}]*)\} (\S+)$", body, re.M):
        m = re.search(rb'result="([^"]+)"', labels)
        if b'ecosystem="pip"' in labels and m and m.group(1).decode() in counts:
            counts[m.group(1).decode()] += float(v)
    return counts["hit"], counts["miss"]


def stats(xs):
    return f"median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms"


def main():
    env = stack_env()
    from mlstack import Suite, call
    work = tempfile.mkdtemp(prefix="ml-bench-deps-")
    index = PyIndex(os.path.join(work, "index"))
    reqs, wheel_bytes = wheels(index, work)
    index_url = index.start()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    S = Suite("bench-deps", PORTS, {"MINILAMBDA_LOG_LEVEL": "warn", "MINILAMBDA_PIP_INDEX_URL": index_url})
    tag = uuid.uuid4().hex[:8]
    nodeps, miss, hit, miss_step, hit_step = [], [], [], [], []
    try:
        S.start("lambda-executor")
        for name in ("build-master", "build-worker"):
            S.start(name)

        def requirements(label):
            return f"# bench {tag} {label}\n" + "\n".join(reqs) + "\n"

        def one_round(label, record):
            a = timed_build(S, "POST", "/functions", {
                "name": f"nodeps-{tag}-{label}", "runtime": "python3", "handler": "app.handler",
                "webhook_url": hook, "files": {"app.py": APP_NODEPS}})
            fn = f"deps-{tag}-{label}"
            b = timed_build(S, "POST", "/functions", {
                "name": fn, "runtime": "python3", "handler": "app.handler", "webhook_url": hook,
                "files": {"app.py": APP_DEPS, "requirements.txt": requirements(label)}})
            c = timed_build(S, "PUT", f"/functions/{fn}/code", {
                "webhook_url": hook,
                "files": {"app.py": APP_DEPS + f"# code change {label}\n", "requirements.txt": requirements(label)}})
            if record:
                nodeps.append(a[0])
                miss.append(b[0])
                hit.append(c[0])
                miss_step.append(b[1])
                hit_step.append(c[1])
            return fn

        one_round("warmup", False)
        hits0, misses0 = cache_counts(S)
        for i in range(ROUNDS):
            fn = one_round(f"r{i}", True)
            print(f"round {i}: no deps {nodeps[-1]:.0f} ms, miss {miss[-1]:.0f} ms, hit {hit[-1]:.0f} ms", flush=True)
        hits1, misses1 = cache_counts(S)
        if (hits1 - hits0, misses1 - misses0) != (ROUNDS, ROUNDS):
            raise RuntimeError(f"cache counters: +{hits1 - hits0:.0f} hits, +{misses1 - misses0:.0f} misses "
                               f"over {ROUNDS} rounds (expected +{ROUNDS} each)")
        # the rebuilt function runs with its installed dependencies
        S.wait_state(fn, want=("active",))
        st, _, body = call("POST", f"{S.url('lambda-executor')}/functions/{fn}/invoke", b"{}",
                           {"Content-Type": "application/json"})
        if st != 200 or json.loads(body) != sum(range(NDEPS)):
            raise RuntimeError(f"invoke {fn}: {st} {body[:300]!r}")
    finally:
        S.stop_all()
        srv.shutdown()
        index.stop()
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"], env=env,
                       stdout=subprocess.DEVNULL)
    ratio = statistics.median(hit) / statistics.median(nodeps)
    step = lambda xs: f"{statistics.median(xs):.0f} ms" if None not in xs else "not in the log"  # noqa: E731
    rows = [f"| (a) build without dependencies (n={ROUNDS}) | {stats(nodeps)} | — |",
            f"| (b) first build with {NDEPS} dependencies, cache miss: pip in the sandbox (n={ROUNDS}) | {stats(miss)} | — |",
            f"| (c) code-only rebuild, same {NDEPS} dependencies, cache hit: restored from S3 (n={ROUNDS}) | {stats(hit)} | — |",
            f"| the install step alone (build log, medians): (b) pip in the sandbox / (c) cache restore | "
            f"{step(miss_step)} / {step(hit_step)} | — |",
            f"| rebuild with dependencies / build without (medians, c / a) | {ratio:.2f}× | ≤ 2× |",
            f"| cache counters over the rounds (`minilambda_build_dep_cache_total{{ecosystem=\"pip\"}}`) | "
            f"+{hits1 - hits0:.0f} hit, +{misses1 - misses0:.0f} miss | one each per round |"]
    append_section(OUT, "Build dependencies", [
        "Command: `make bench` → `tests/bench/build_deps_bench.py`: a private stack (ports "
        f"{PORT_BASE}+), build-master, one build-worker and the lambda-executor (`-O2`); a local PEP 503",
        f"index served by the bench ({NDEPS} pure-python wheels, {wheel_bytes / 1024:.0f} KiB in all, pinned in",
        "`requirements.txt`). Time: `POST /functions` (or `PUT /functions/{fn}/code`) → the build's `completed`",
        "webhook received. (b) changes a comment in `requirements.txt` every round, so its cache key is new."], rows)


if __name__ == "__main__":
    main()
