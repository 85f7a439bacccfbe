"""Tail latency benchmark (make bench, issue 21): every figure as a ratio within one run.

On a private native stack (ports from BENCH_LATENCY_PORT_BASE, default 26500, to base+531;
the daemons at base+80.. and nginx at base+90) with the four daemons (-O2, argv[1] is their bin dir,
MINILAMBDA_LOG_LEVEL=warn), functions built by the real pipeline (concurrency 64, a rate limit
far above the load so the gateway takes a Redis decision on every request but throttles none):
  closed  closed loop, 8 and 32 in flight, a trivial python3 function, direct to the executor,
          through nginx (Debian's, 2 workers, keep-alive upstream, adding the internal header)
          and through the gateway (JWT + rate limit); the paths take turns, round after round
          (the order rotates), medians of the rounds; also gateway vs nginx side by side;
  open    open loop at 70 % of that path's 32-in-flight throughput, direct and gateway;
  assign  the same closed (32) and open-loop measurements for seed 004's assignment function
          (tests/bench/functions/assign: ~3.7 KB of JSON in, consistent hashing);
  cold    python3 and nodejs cold starts (config change → first response) interleaved with
          the time of a fresh interpreter (`/usr/bin/python3 -c pass`, `node -e 0`).
Load comes from build/bench/loadgen (BENCH_LOADGEN overrides), JSON results.

Options: --label NAME (stored with the raw numbers), --compare FILE.json (an earlier run's raw
numbers: "before" columns in the closed and open-loop tables), --from FILE.json (render a
stored run again, no measuring). Environment: BENCH_QUICK=1 (every duration ~5× shorter),
BENCH_ONLY=closed,open,assign,cold, BENCH_OPEN_S (30), BENCH_OUT (docs/benchmarks.md).
Writes the raw numbers to .run/bench-latency.json (and .run/bench-latency-<label>.json)."""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "bench")
RUN = os.path.join(ROOT, ".run", "bench-latency-stack")
LOGS = os.path.join(ROOT, ".run", "bench-latency")
PORT_BASE = int(os.environ.get("BENCH_LATENCY_PORT_BASE", "26500"))
# the native stack's ports run from its base+369 (epmd) to base+900 (S3): based 369 below,
# they start at PORT_BASE and stay clear of a stack based at PORT_BASE+500 (its daemons at +180..)
STACK_BASE = PORT_BASE - 369
PORTS = {"gateway": PORT_BASE + 80, "lambda-executor": PORT_BASE + 81, "build-master": PORT_BASE + 82,
         "build-worker": PORT_BASE + 92}
NGINX_PORT = PORT_BASE + 90
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md"))
SCALE = 0.2 if os.environ.get("BENCH_QUICK") == "1" else 1.0
ROUND_S, WARM_S, ROUNDS = 8 * SCALE, 2 * SCALE, 3
OPEN_S = float(os.environ.get("BENCH_OPEN_S", 30)) * SCALE
COLD_N = max(4, round(40 * SCALE))
OPEN_SHARE = 0.7
RATE_LIMIT = 100000  # per second, and the burst: far above any load here, so nothing is refused
KEPT_UP = 0.95  # an open-loop run answering less than this share of its rate was overloaded
PARTS = ("closed", "open", "assign", "cold")
ONLY = [p for p in os.environ.get("BENCH_ONLY", ",".join(PARTS)).split(",") if p]
PATHS = ("direct", "nginx", "gateway")
TRIVIAL = "def handler(event, context):\n    return {\"ok\": True, \"n\": event.get(\"n\")}\n"
NODE_TRIVIAL = "exports.handler = async (event) => ({ ok: true, n: event.n });\n"
TARGET = {"p99_mean": 3.0, "open_p99_p50": 5.0, "open_max_p50": 20.0, "gw_nginx_thr": 0.9, "gw_nginx_p99_ms": 1.0,
          "cold_p50": 0.25, "cold_p99": 0.75}


def loadgen_bin(bin_dir):
    return os.environ.get("BENCH_LOADGEN") or os.path.join(bin_dir, "..", "bench", "loadgen")


def load(prog, url, headers, body_file, conns, seconds, warm, rate=None):
    """One loadgen run (closed loop without rate); its JSON answer as a dict."""
    cmd = [prog, "-X", "POST", "-B", body_file, "-c", str(conns), "-d", f"{seconds:g}", "-w", f"{warm:g}",
           "-t", os.environ.get("BENCH_LOADGEN_THREADS", "1"), "-T", "10", "--json"]
    for h in headers:
        cmd += ["-H", h]
    if rate:
        cmd += ["-R", f"{rate:.0f}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + warm + 120)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen exited {out.returncode}: {out.stderr.strip()[:300]}")
    return json.loads(out.stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pctl(xs, p):
    """Nearest rank on sorted xs (n=40: the 99th is the largest)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def mark(ok):
    return "✓" if ok else "✗"


def interpreter(runtime):
    """The baseline's interpreter: the executor's default python, or the node it finds the
    same way (MINILAMBDA_NODE, the usual paths, then PATH)."""
    if runtime == "python3":
        return [os.environ.get("MINILAMBDA_PYTHON") or "/usr/bin/python3", "-c", "pass"]
    node = os.environ.get("MINILAMBDA_NODE") or next(
        (p for p in ("/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs") if os.access(p, os.X_OK)), None) \
        or shutil.which("node")
    return [node, "-e", "0"]


class Bench:
    """The stack, the daemons, nginx and the functions of one run; raw results in self.data."""

    def __init__(self, S, auth, prog):
        self.S, self.prog = S, prog
        self.auth_h = f"Authorization: {auth['Authorization']}"
        from mlstack import INTERNAL_HEADER, INTERNAL_TOKEN
        self.internal_h = f"{INTERNAL_HEADER}: {INTERNAL_TOKEN}"
        self.bodies = {"trivial": os.path.join(LOGS, "trivial.json"),
                       "assign": os.path.join(HERE, "functions", "assign", "event.json")}
        with open(self.bodies["trivial"], "w") as f:
            f.write('{"n": 1}')
        self.fns, self.warmed = {}, set()
        self.data = {"closed": {}, "open": {}, "cold": {}, "cold_during_rounds": {}}

    def target(self, workload, path):
        """(URL, headers) of a workload's invoke on one path."""
        fn = self.fns[workload]
        port = {"direct": PORTS["lambda-executor"], "nginx": NGINX_PORT, "gateway": PORTS["gateway"]}[path]
        h = ["Content-Type: application/json"] + ([self.auth_h] if path == "gateway" else
                                                 [self.internal_h] if path == "direct" else [])
        return f"http://127.0.0.1:{port}/functions/{fn}/invoke", h

    def run(self, workload, path, conns, seconds, warm, rate=None):
        url, h = self.target(workload, path)
        r = load(self.prog, url, h, self.bodies[workload], conns, seconds, warm, rate)
        print(f"# {workload} {path} c={conns}{f' R={rate:.0f}' if rate else ''}: {r['throughput']:.0f}/s "
              f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} max {r['max_ms']:.1f} ms "
              f"non2xx {r['non2xx']} errors {r['errors']}", flush=True)
        return r

    def cold_starts(self, by_path=False):
        """The executor's cold starts so far; by_path: {"stem": n, "fresh": n} from
        minilambda_cold_starts_total where the executor has stem cells ({} otherwise)."""
        from mlstack import scrape
        values = scrape(self.S.url("lambda-executor"))[0]
        if by_path:
            out = {}
            for k, v in values.items():
                if k.startswith("minilambda_cold_starts_total{") and 'path="' in k:
                    path = k.split('path="', 1)[1].split('"', 1)[0]
                    out[path] = out.get(path, 0) + v
            return out
        return sum(v for k, v in values.items() if k.startswith("minilambda_cold_start_duration_seconds_count"))

    def closed(self, workload, paths, conc):
        """Rounds of closed-loop runs, the paths taking turns (the order rotates each round)."""
        res = self.data["closed"].setdefault(workload, {})
        self.warm(workload)
        c0 = self.cold_starts()
        for r in range(ROUNDS):
            for c in conc:
                for path in paths[r % len(paths):] + paths[:r % len(paths)]:
                    res.setdefault(path, {}).setdefault(str(c), []).append(
                        self.run(workload, path, c, ROUND_S, WARM_S))
        self.data["cold_during_rounds"][workload] = self.cold_starts() - c0

    def warm(self, workload):
        """Once per workload: as many instances as the open loop's connections may want, so
        the rounds measure warm invocations (the cold starts during them are counted)."""
        if workload not in self.warmed:
            self.warmed.add(workload)
            self.run(workload, "direct", 64, 2 * WARM_S, 0)

    def saturation(self, workload, path):
        """That path's 32-in-flight closed-loop throughput (median of the rounds), measured
        now with one round when the closed part did not run."""
        rounds = self.data["closed"].get(workload, {}).get(path, {}).get("32")
        if not rounds:
            rounds = [self.run(workload, path, 32, ROUND_S, WARM_S)]
            self.data["closed"].setdefault(workload, {}).setdefault(path, {})["32"] = rounds
        return med([x["throughput"] for x in rounds])

    def open(self, workload, paths):
        res = self.data["open"].setdefault(workload, {})
        self.warm(workload)
        rates = {p: OPEN_SHARE * self.saturation(workload, p) for p in paths}
        for p in paths:
            res[p] = self.run(workload, p, 64, OPEN_S, WARM_S, rates[p])
            res[p]["saturation"] = rates[p] / OPEN_SHARE

    def cold(self):
        """Config change → first response, interleaved with a fresh interpreter's start."""
        from mlstack import call
        res = {rt: {"cold": [], "baseline": [], "warm_answers": 0, "cmd": " ".join(interpreter(rt))}
               for rt in ("python3", "nodejs")}
        paths0 = self.cold_starts(by_path=True)
        for i in range(COLD_N):
            for rt in res:
                fn = self.fns["cold-" + rt]
                st, _, body = call("PATCH", f"{self.S.url('lambda-executor')}/functions/{fn}",
                                   json.dumps({"memory_mb": 128 + i % 2}).encode(), {"Content-Type": "application/json"})
                if st != 200:
                    raise RuntimeError(f"PATCH {fn}: {st} {body[:200]}")
                t = time.monotonic()
                st, h, body = call("POST", f"{self.S.url('lambda-executor')}/functions/{fn}/invoke", b'{"n": 1}',
                                   {"Content-Type": "application/json"})
                ms = (time.monotonic() - t) * 1000
                if st != 200:
                    raise RuntimeError(f"invoke {fn}: {st} {body[:200]}")
                if h.get("X-Cold-Start") == "true":
                    res[rt]["cold"].append(ms)
                else:
                    res[rt]["warm_answers"] += 1
                t = time.monotonic()
                subprocess.run(interpreter(rt), check=True, stdout=subprocess.DEVNULL)
                res[rt]["baseline"].append((time.monotonic() - t) * 1000)
        self.data["cold"] = res
        paths1 = self.cold_starts(by_path=True)
        self.data["cold_paths"] = {k: v - paths0.get(k, 0) for k, v in paths1.items()}


def start_nginx(executor_port, internal_h):
    """nginx 1.22 proxying the executor: 2 workers, keep-alive upstream, the internal header
    added as a sibling service would; returns its pid file."""
    d = os.path.join(LOGS, "nginx")
    os.makedirs(d, exist_ok=True)
    name, value = internal_h.split(": ", 1)
    conf = f"""worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream executor {{ server 127.0.0.1:{executor_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{NGINX_PORT};
        client_max_body_size 8m;
        location / {{
            proxy_pass http://executor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header {name} {value};
        }}
    }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    subprocess.run(["/usr/sbin/nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d], check=True)
    return os.path.join(d, "nginx.pid")


def stop_nginx(pidfile):
    try:
        os.kill(int(open(pidfile).read()), signal.SIGQUIT)
    except (OSError, ValueError):
        pass


def measure(args, bin_dir):
    """Starts everything, runs the parts, stops everything; the raw numbers."""
    import batching_bench  # its stack_env starts and migrates the native stack of its module's RUN and PORT_BASE
    batching_bench.RUN, batching_bench.PORT_BASE = RUN, STACK_BASE
    os.environ["ML_RUN_DIR"] = RUN
    prog = loadgen_bin(bin_dir)
    if not os.access(prog, os.X_OK):
        raise SystemExit(f"latency: no load generator at {prog} (make build/bench/loadgen, or BENCH_LOADGEN)")
    os.makedirs(LOGS, exist_ok=True)
    env = batching_bench.stack_env()
    from mlstack import Suite, call  # after the stack: it reads the stack's internal token file
    jwt_secret = os.urandom(24).hex()
    S = Suite("bench-latency", PORTS, {
        "MINILAMBDA_LOG_LEVEL": "warn", "MINILAMBDA_JWT_SECRET": jwt_secret,
        "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
        "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
    pidfile, t0, load0 = None, time.monotonic(), os.getloadavg()[0]
    git = ["git", "-C", ROOT, "log", "-1", "--format=%h"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    # the last commit that changed the daemons: what a "before" and an "after" differ in
    daemons = subprocess.run(git + ["--", "services", "shared"], capture_output=True, text=True).stdout.strip()
    try:
        B = Bench(S, S.start_platform("bench"), prog)
        pidfile = start_nginx(PORTS["lambda-executor"], B.internal_h)
        tag = os.urandom(3).hex()
        funcs = [("trivial", {"app.py": TRIVIAL}, "python3", "app.handler"),
                 ("assign", {"app.py": open(os.path.join(HERE, "functions", "assign", "app.py")).read()},
                  "python3", "app.handler"),
                 ("cold-python3", {"app.py": TRIVIAL}, "python3", "app.handler"),
                 ("cold-nodejs", {"index.js": NODE_TRIVIAL}, "nodejs", "index.handler")]
        for key, files, runtime, handler in funcs:
            B.fns[key] = f"lat-{key}-{tag}"
            f = S.deploy(B.fns[key], files, runtime=runtime, handler=handler, concurrency=64,
                         rate_limit={"rps": RATE_LIMIT, "burst": RATE_LIMIT})
            if (f or {}).get("state") != "active":
                raise RuntimeError(f"{key} did not build: {f}")
        # each path answers, and the gateway took its decision under the function's own limit
        for workload in ("trivial", "assign"):
            for path in PATHS:
                url, hs = B.target(workload, path)
                st, h, body = call("POST", url, open(B.bodies[workload], "rb").read(),
                                   dict(x.split(": ", 1) for x in hs))
                if st != 200 or (path == "gateway" and h.get("RateLimit-Limit") != str(RATE_LIMIT)):
                    raise RuntimeError(f"{workload} via {path}: {st} {h} {body[:200]}")
                if workload == "assign" and len(json.loads(body)["assignments"]) != 18:
                    raise RuntimeError(f"assign answered {body[:300]}")
        print(f"# setup {time.monotonic() - t0:.0f} s", flush=True)
        if "closed" in ONLY:
            B.closed("trivial", list(PATHS), (8, 32))
        if "open" in ONLY:
            B.open("trivial", ["direct", "gateway"])
        if "assign" in ONLY:
            B.closed("assign", ["direct", "gateway"], (32,))
            B.open("assign", ["direct", "gateway"])
        if "cold" in ONLY:
            B.cold()
    finally:
        if pidfile:
            stop_nginx(pidfile)
        S.stop_all()
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"], env=env,
                       stdout=subprocess.DEVNULL)
    B.data.update(label=args.label, when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), quick=SCALE != 1,
                  only=ONLY, round_s=ROUND_S, warm_s=WARM_S, rounds=ROUNDS, open_s=OPEN_S, cold_n=COLD_N,
                  wall_s=round(time.monotonic() - t0), loadavg=[round(load0, 1), round(os.getloadavg()[0], 1)], commit=commit,
                  daemons_commit=daemons)
    return B.data


def closed_stats(rounds, conns):
    """Medians over the rounds: each figure's own median; p99 ÷ mean per round, then its median."""
    thr = [r["throughput"] for r in rounds]
    ratio = [r["p99_ms"] / (conns / r["throughput"] * 1000) for r in rounds]
    return {"thr": med(thr), "mean": conns / med(thr) * 1000, "p50": med([r["p50_ms"] for r in rounds]),
            "p99": med([r["p99_ms"] for r in rounds]), "p999": med([r["p999_ms"] for r in rounds]),
            "max": med([r["max_ms"] for r in rounds]), "ratio": med(ratio), "ratios": ratio,
            "bad": sum(r["non2xx"] + r["errors"] for r in rounds)}


def before_closed(before, workload, path, conns):
    rounds = ((before or {}).get("closed", {}).get(workload, {}).get(path, {}).get(str(conns)))
    return closed_stats(rounds, conns) if rounds else None


def closed_table(data, before, workload, paths, conc, summary):
    lines = ["| path | in flight | req/s | mean | p50 | p99 | p99.9 | max | p99 ÷ mean (rounds) | target | |"
             + (" before: req/s | before: p99 ÷ mean |" if before else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if before else "")]
    for c in conc:
        for path in paths:
            rounds = data["closed"].get(workload, {}).get(path, {}).get(str(c))
            if not rounds:
                continue
            s = closed_stats(rounds, c)
            ok = s["ratio"] <= TARGET["p99_mean"]
            bad = f" *({s['bad']} non-2xx/errors)*" if s["bad"] else ""
            # the target is the platform's (direct, gateway); nginx is the yardstick beside them
            target = f"≤ {TARGET['p99_mean']:g}× | {mark(ok)}" if path != "nginx" else "— (reference) |"
            row = (f"| {path} | {c} | {s['thr']:.0f}{bad} | {s['mean']:.2f} ms | {s['p50']:.2f} ms | {s['p99']:.2f} ms | "
                   f"{s['p999']:.1f} ms | {s['max']:.1f} ms | **{s['ratio']:.1f}×** "
                   f"({', '.join(f'{x:.1f}' for x in s['ratios'])}) | {target} |")
            b = before_closed(before, workload, path, c)
            if before:
                row += f" {b['thr']:.0f} ({s['thr'] / b['thr']:.2f}× now) | {b['ratio']:.1f}× |" if b else " — | — |"
            lines.append(row)
            if path == "nginx":
                continue
            summary.append(f"| {workload}, closed loop {c} in flight, {path}: p99 ÷ mean | {s['ratio']:.1f}× {mark(ok)} | "
                           f"≤ {TARGET['p99_mean']:g}× |")
            if b:
                summary.append(f"| {workload}, saturation {c} in flight, {path}: req/s now ÷ before ({before.get('label')}"
                               f", another run) | {s['thr'] / b['thr']:.2f}× {mark(s['thr'] >= b['thr'])} | ≥ 1× |")
    return lines


def open_table(data, before, workload, summary):
    lines = ["| path | rate (70 % of sat.) | achieved | p50 | p90 | p99 | p99.9 | max | p99 ÷ p50 | max ÷ p50 |"
             " errors | client late p99 |" + (" before: p99 ÷ p50 | before: max ÷ p50 |" if before else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if before else "")]
    for path, r in data["open"].get(workload, {}).items():
        a, m = r["p99_ms"] / r["p50_ms"], r["max_ms"] / r["p50_ms"]
        # a server that falls behind the arrival rate queues without bound: every request is
        # late by about as much, so small ratios would say nothing good
        kept_up = r["throughput"] >= KEPT_UP * r["rate"]
        oa, om = kept_up and a <= TARGET["open_p99_p50"], kept_up and m <= TARGET["open_max_p50"]
        over = "" if kept_up else " *(overloaded)*"
        row = (f"| {path} | {r['rate']:.0f}/s (of {r['saturation']:.0f}) | {r['throughput']:.0f}/s{over} | {r['p50_ms']:.2f} ms | "
               f"{r['p90_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['p999_ms']:.1f} ms | {r['max_ms']:.1f} ms | "
               f"**{a:.1f}×** {mark(oa)} (≤ {TARGET['open_p99_p50']:g}) | **{m:.0f}×** {mark(om)} (≤ {TARGET['open_max_p50']:g}) | "
               f"{r['non2xx'] + r['errors']} | {r.get('sent_late_p99_ms', 0):.2f} ms |")
        b = (before or {}).get("open", {}).get(workload, {}).get(path)
        if before:
            row += (f" {b['p99_ms'] / b['p50_ms']:.1f}× | {b['max_ms'] / b['p50_ms']:.0f}× |" if b else " — | — |")
        lines.append(row)
        over = "" if kept_up else " (overloaded: did not keep up with the rate)"
        summary.append(f"| {workload}, open loop 70 %, {path}: p99 ÷ p50 | {a:.1f}× {mark(oa)}{over} | "
                       f"≤ {TARGET['open_p99_p50']:g}× |")
        summary.append(f"| {workload}, open loop 70 %, {path}: max ÷ p50 | {m:.0f}× {mark(om)}{over} | "
                       f"≤ {TARGET['open_max_p50']:g}× |")
    return lines


def gw_nginx_table(data, summary):
    trivial = data["closed"].get("trivial", {})
    lines = ["| in flight | gateway req/s | nginx req/s | gateway ÷ nginx (rounds) | target | | gateway p99 | nginx p99 |"
             " gateway − nginx p99 (rounds) | target | |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in (32, 8):
        g, n = trivial.get("gateway", {}).get(str(c)), trivial.get("nginx", {}).get(str(c))
        if not g or not n:
            continue
        thr = [a["throughput"] / b["throughput"] for a, b in zip(g, n)]
        p99 = [a["p99_ms"] - b["p99_ms"] for a, b in zip(g, n)]
        ot, op = med(thr) >= TARGET["gw_nginx_thr"], med(p99) <= TARGET["gw_nginx_p99_ms"]
        lines.append(f"| {c} | {med([a['throughput'] for a in g]):.0f} | {med([b['throughput'] for b in n]):.0f} | "
                     f"**{med(thr):.2f}×** ({', '.join(f'{x:.2f}' for x in thr)}) | ≥ {TARGET['gw_nginx_thr']:g}× | {mark(ot)} | "
                     f"{med([a['p99_ms'] for a in g]):.2f} ms | {med([b['p99_ms'] for b in n]):.2f} ms | "
                     f"**{med(p99):+.2f} ms** ({', '.join(f'{x:+.2f}' for x in p99)}) | ≤ +{TARGET['gw_nginx_p99_ms']:g} ms | "
                     f"{mark(op)} |")
        summary.append(f"| gateway ÷ nginx throughput, {c} in flight | {med(thr):.2f}× {mark(ot)} | ≥ {TARGET['gw_nginx_thr']:g}× |")
        summary.append(f"| gateway p99 − nginx p99, {c} in flight | {med(p99):+.2f} ms {mark(op)} | ≤ +{TARGET['gw_nginx_p99_ms']:g} ms |")
    return lines


def cold_table(data, summary):
    lines = ["| runtime | cold starts (of n) | cold p50 | cold p99 | fresh interpreter p50 | p99 |"
             " cold p50 ÷ interpreter p50 | target | | cold p99 ÷ interpreter p99 | target | |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rt, r in data["cold"].items():
        if not r["cold"]:
            lines.append(f"| {rt} | 0 of {len(r['baseline'])} (no `X-Cold-Start: true` answer) | | | | | | | ✗ | | | ✗ |")
            summary.append(f"| {rt} cold start | no cold start seen ✗ | — |")
            continue
        c50, c99, b50, b99 = med(r["cold"]), pctl(r["cold"], 99), med(r["baseline"]), pctl(r["baseline"], 99)
        o50, o99 = c50 / b50 <= TARGET["cold_p50"], c99 / b99 <= TARGET["cold_p99"]
        lines.append(f"| {rt} | {len(r['cold'])} of {len(r['baseline'])} | {c50:.1f} ms | {c99:.1f} ms | {b50:.1f} ms | "
                     f"{b99:.1f} ms | **{c50 / b50:.2f}×** | ≤ {TARGET['cold_p50']:g}× | {mark(o50)} | **{c99 / b99:.2f}×** | "
                     f"≤ {TARGET['cold_p99']:g}× | {mark(o99)} |")
        summary.append(f"| {rt} cold start p50 ÷ `{r['cmd']}` p50 | {c50 / b50:.2f}× {mark(o50)} | ≤ {TARGET['cold_p50']:g}× |")
        summary.append(f"| {rt} cold start p99 ÷ `{r['cmd']}` p99 | {c99 / b99:.2f}× {mark(o99)} | ≤ {TARGET['cold_p99']:g}× |")
    return lines


def render(data, before, command):
    """The section's intro (setup and the five tables) and the summary rows (each target, ✓/✗)."""
    summary = []
    q = " (**quick mode**: not for comparing)" if data.get("quick") else ""
    intro = [f"Command: `{command}`{q}; {data['when']}, commit {data.get('commit', '?')}"
             + (f" (daemons as of {data['daemons_commit']})" if data.get("daemons_commit") else "")
             + (f", label `{data['label']}`" if data.get("label") else "")
             + (f"; \"before\" columns: `{before.get('label') or '?'}` of {before.get('when')}" if before else "")
             + (f"; load average {data['loadavg'][0]:g} at the start, {data['loadavg'][1]:g} at the end (2 cores)"
                if data.get("loadavg") else "") + ".",
             f"A private stack (ML_PORT_BASE {STACK_BASE}), the four daemons (`-O2`, log level warn), functions built by",
             "the real pipeline (concurrency 64; rate limit 100,000/s, so every gateway request takes a Redis decision",
             "and none is refused). Load: `build/bench/loadgen` (one client thread, keep-alive; open loop: latency from",
             "each request's due time). Paths: **direct** to the lambda-executor (internal header), **nginx** 1.22 (2",
             "workers, keep-alive upstream, adds the internal header) proxying the same executor, **gateway** (JWT +",
             f"Redis rate limit). Closed loop: {ROUNDS} rounds of {data['round_s']:g} s after {data['warm_s']:g} s warm-up,",
             "the paths taking turns within each round (the order rotates); medians of the rounds; mean = in flight ÷",
             f"throughput. Open loop: {data['open_s']:g} s at 70 % of that path's 32-in-flight throughput, 64 connections",
             f"(a run that answers less than {KEPT_UP:.0%} of its rate was overloaded: its ratios count as ✗). Before the",
             "first round of each workload, 64 connections direct start the instances.",
             "Raw numbers: `.run/bench-latency.json` (`--compare` adds them as \"before\" columns to a later run).", ""]
    if data["closed"].get("trivial"):
        intro += ["**Closed loop, trivial python3 function** (cold starts during the rounds: "
                  f"{data['cold_during_rounds'].get('trivial', 0):.0f})", ""]
        intro += closed_table(data, before, "trivial", list(PATHS), (8, 32), summary) + [""]
    if data["open"].get("trivial"):
        intro += ["**Open loop, trivial python3 function**", ""] + open_table(data, before, "trivial", summary) + [""]
    gvn = gw_nginx_table(data, summary)
    if len(gvn) > 2:
        intro += ["**Gateway vs nginx, same executor, same rounds** (per-round ratios and differences, median)", ""]
        intro += gvn + [""]
    if data["closed"].get("assign") or data["open"].get("assign"):
        intro += ["**Assignment workload** (seed 004: `tests/bench/functions/assign`, a 3.7 KB event of 20 experiments;",
                  "the same targets as the trivial function, for reference)", ""]
        intro += closed_table(data, before, "assign", ["direct", "gateway"], (32,), summary) + [""]
        intro += open_table(data, before, "assign", summary) + [""]
    if data["cold"]:
        intro += ["**Cold starts** (PATCH memory_mb → first invoke answering `X-Cold-Start: true`, direct; each",
                  "interleaved with one run of the fresh interpreter, timed by the harness from spawn to exit; p50 ratios",
                  "divide by the interpreter's p50, p99 ratios by its p99; at n=40 the p99 is the largest)", ""]
        intro += cold_table(data, summary)
        if data.get("cold_paths"):
            intro += ["", "Where those cold starts came from (`minilambda_cold_starts_total`, both runtimes): "
                      + ", ".join(f"{k} {v:.0f}" for k, v in sorted(data["cold_paths"].items())) + "."]
        intro += [""]
    intro += ["**Targets** (issue 21), from the tables above:"]
    return intro, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bin_dir", nargs="?", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--label", default="")
    ap.add_argument("--compare", help="an earlier run's .run/bench-latency*.json")
    ap.add_argument("--from", dest="from_json", help="render this stored run instead of measuring")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    os.environ.setdefault("ML_BIN_DIR", bin_dir)
    os.environ["ML_RUN_DIR"], os.environ["ML_ROOT"] = RUN, ROOT
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    bad = [p for p in ONLY if p not in PARTS]
    if bad:
        raise SystemExit(f"latency: BENCH_ONLY parts are {','.join(PARTS)}, not {','.join(bad)}")
    before = json.load(open(args.compare)) if args.compare else None
    if args.from_json:
        data = json.load(open(args.from_json))
    else:
        data = measure(args, bin_dir)
        os.makedirs(os.path.join(ROOT, ".run"), exist_ok=True)
        for name in ["bench-latency.json"] + ([f"bench-latency-{args.label}.json"] if args.label else []):
            with open(os.path.join(ROOT, ".run", name), "w") as f:
                json.dump(data, f, indent=1)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_QUICK", "BENCH_ONLY", "BENCH_OPEN_S") if k in os.environ)
    command = (f"{env + ' ' if env else ''}make bench` → `tests/bench/latency.py {os.path.relpath(bin_dir, ROOT)}"
               + (f" --label {args.label}" if args.label else "") + (f" --compare {args.compare}" if args.compare else ""))
    intro, rows = render(data, before, command)
    append_section(OUT, "Tail latency (issue 21)", intro, rows)
    print(f"# latency: {data.get('wall_s', 0)} s of measuring; raw numbers in .run/bench-latency.json", flush=True)


sys.path.insert(0, HERE)
from benchmd import append_section  # noqa: E402

if __name__ == "__main__":
    main()
