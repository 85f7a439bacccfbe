"""Cold start through HTTP with and without stem cells (docs/sandbox.md "Stem cells"), against
the interpreters' own start-up timed in the same loop (issue 21 item 4). Not part of make bench.

  ML_BIN_DIR=build/bin /usr/bin/python3 tests/bench/stem_cold.py [rounds] [n]

A private stack (ML_RUN_DIR, default .run/stem-cold-stack, ports ML_PORT_BASE or 24000+); one
python3 and one nodejs function built by the real pipeline; then `rounds` times the executor
is restarted with MINILAMBDA_STEM_CELLS=0 (today's path) and =2, alternated, and each time n
cold starts per runtime are timed (a PATCH of memory_mb forces a new instance; the time is the
invoke's answer), each next to a fresh `/usr/bin/python3 -c pass` and `node -e 0`. Prints
p50/p99 per variant and runtime, and the ratios to the interpreter's p50 and p99.
STEM_COLD_MAIN=DIR (a checkout of the commit before stem cells, built): its executor
(DIR/build/bin, DIR's runtimes) is a third variant "main" in the rotation."""
import json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("ML_BIN_DIR", os.path.join(ROOT, "build", "bin"))
os.environ.setdefault("ML_RUN_DIR", os.path.join(ROOT, ".run", "stem-cold-stack"))
os.environ.setdefault("ML_PORT_BASE", "24000")
os.environ["ML_ROOT"] = ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
BASE = int(os.environ["ML_PORT_BASE"])


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def stack():
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], check=True,
                   stdout=subprocess.DEVNULL)
    for line in open(os.path.join(os.environ["ML_RUN_DIR"], "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            os.environ[k] = v.strip("'\"")
    for side in ("build", "lambda"):
        subprocess.run([os.path.join(os.environ["ML_BIN_DIR"], "ml-migrate"),
                        os.environ[f"MINILAMBDA_{side.upper()}_DB_URL"], os.path.join(ROOT, "migrations", side)],
                       check=True, stdout=subprocess.DEVNULL)


def spawn_ms(argv):
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return (time.monotonic() - t) * 1000


def stop_executor(S):
    p = S.procs.pop("lambda-executor")
    p.terminate()
    p.wait(120)   # its audit spill file is locked until it is gone


def main():
    stack()
    from mlstack import Suite, call
    S = Suite("stem-cold", {"build-master": BASE + 182, "build-worker": BASE + 192, "lambda-executor": BASE + 181},
              {"MINILAMBDA_LOG_LEVEL": "warn"})
    fns = {"python3": "stemc-py-" + os.urandom(3).hex(), "nodejs": "stemc-js-" + os.urandom(3).hex()}
    res = {}   # (variant, what) -> [ms]
    paths = {}
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        S.deploy(fns["python3"], {"app.py": "def handler(event, context):\n    return {'ok': True}\n"})
        S.deploy(fns["nodejs"], {"index.js": "exports.handler = async () => ({ ok: true });\n"},
                 runtime="nodejs", handler="index.handler")
        stop_executor(S)
        time.sleep(1)
        import mlstack
        main_dir = os.environ.get("STEM_COLD_MAIN")
        variants = (["main"] if main_dir else []) + ["fresh", "stem"]
        for r in range(ROUNDS * len(variants)):
            variant = variants[r % len(variants)]
            if variant == "main":
                mlstack.BIN, saved = os.path.join(main_dir, "build", "bin"), dict(S.env)
                S.env["MINILAMBDA_RUNTIMES_DIR"] = os.path.join(main_dir, "services/lambda-executor/runtimes")
                S.start("lambda-executor")
                mlstack.BIN, S.env = os.environ["ML_BIN_DIR"], saved
            else:
                S.start("lambda-executor", MINILAMBDA_STEM_CELLS="0" if variant == "fresh" else "2")
            ex = S.url("lambda-executor")
            for i in range(N + 4):   # the first 4: warm-up (the stems of each key start lazily)
                for rt, fn in fns.items():
                    call("PATCH", f"{ex}/functions/{fn}", json.dumps({"memory_mb": 128 + i % 2}).encode(),
                         {"Content-Type": "application/json"})
                    t = time.monotonic()
                    st, h, body = call("POST", f"{ex}/functions/{fn}/invoke", b"{}", {"Content-Type": "application/json"})
                    ms = (time.monotonic() - t) * 1000
                    if st != 200 or h.get("X-Cold-Start") != "true":
                        print(f"# {rt}: {st} cold={h.get('X-Cold-Start')} {body[:200]}", file=sys.stderr)
                        continue
                    if i >= 4:
                        res.setdefault((variant, rt), []).append(ms)
                if i == 3:   # the measured part starts: its stem / fresh counts are the difference
                    warm = call("GET", ex + "/metrics")[2].decode().splitlines()
                if i >= 4:
                    res.setdefault((variant, "python3 -c pass"), []).append(spawn_ms(["/usr/bin/python3", "-c", "pass"]))
                    res.setdefault((variant, "node -e 0"), []).append(spawn_ms(["node", "-e", "0"]))
            _, _, m = call("GET", ex + "/metrics")
            cnt = lambda lines: {l.split()[0]: float(l.split()[1]) for l in lines if l.startswith("minilambda_cold_starts_total")}
            a, b = cnt(warm), cnt(m.decode().splitlines())
            paths[(variant, r)] = [f"{k[k.index('{'):]} {b[k] - a.get(k, 0):.0f}" for k in b]
            stop_executor(S)
            time.sleep(1)
    finally:
        S.stop_all()
    print(f"cold start through HTTP, {ROUNDS} alternated rounds per variant, n={N} per round; uptime:"
          f" {open('/proc/loadavg').read().split()[:3]}")
    for variant in ("main", "fresh", "stem"):
        for rt, interp in (("python3", "python3 -c pass"), ("nodejs", "node -e 0")):
            v, b = res.get((variant, rt), []), res.get((variant, interp), [])
            if not v or not b:
                continue
            print(f"| {variant:5} | {rt:7} | n={len(v)} | p50 {statistics.median(v):6.1f} ms | p99 {pct(v, 99):6.1f} ms "
                  f"| {interp} p50 {statistics.median(b):6.1f} ms p99 {pct(b, 99):6.1f} ms "
                  f"| ratio p50 {statistics.median(v) / statistics.median(b):.2f}x, p99 {pct(v, 99) / statistics.median(b):.2f}x"
                  f" (of the interpreter's p50), {pct(v, 99) / pct(b, 99):.2f}x (of its p99) |")
    for k, v in sorted(paths.items()):
        print("# measured cold starts by path", k, " ".join(v))


if __name__ == "__main__":
    main()
