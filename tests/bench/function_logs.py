"""Function-log benchmark (make bench; docs/logs.md §1): log ingestion under invoke load, and
invoke throughput with MINILAMBDA_FUNCTION_LOGS on vs off, in one run on a private stack.

  - ingestion: a python3 function printing 100 lines (~80 bytes) per call, invoked by 32
    clients in a closed loop; lines stored per second while the invocations run (rows in
    function_logs at the end of the load ÷ its duration) and until the last one is stored;
  - throughput: the same function and one printing 10 lines, invokes/s with the writer on,
    then the executor restarted with MINILAMBDA_FUNCTION_LOGS=off (only the 4 KiB tail kept).
Appends a section to docs/benchmarks.md (BENCH_OUT overrides the file)."""
import asyncio, os, re, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, ".run", "bench-logs-stack")
PORT_BASE = os.environ.get("BENCH_LOGS_PORT_BASE", "29000")
os.environ.setdefault("ML_BIN_DIR", sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin"))
os.environ["ML_RUN_DIR"], os.environ["ML_ROOT"] = RUN, ROOT
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from loadgen import closed_loop  # noqa: E402  (mlstack reads the environment above)
from benchmd import append_section  # noqa: E402  (tests/bench is the script's own folder)
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "docs", "benchmarks.md"))
N_INGEST = int(os.environ.get("BENCH_LOGS_INVOKES", 4000))
N_TPUT = int(os.environ.get("BENCH_LOGS_TPUT_INVOKES", 6000))
PRINTER = """
LINE = "benchmark line: the quick brown fox jumps over the lazy dog %05d ........."
def handler(event, context):
    for i in range(NLINES):
        print(LINE % i)
    return {"ok": True}
"""


def stack_env():
    env = dict(os.environ, ML_RUN_DIR=RUN, ML_PORT_BASE=PORT_BASE)
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for line in open(os.path.join(RUN, "stack.env")):
        if line.startswith("export "):
            k, v = line[7:].strip().split("=", 1)
            os.environ[k] = v.strip("'\"")
    os.environ.pop("MINILAMBDA_INTERNAL_TOKEN_FILE", None)  # mlstack already chose the token (import time)
    for side in ("build", "lambda"):
        subprocess.run([os.path.join(os.environ["ML_BIN_DIR"], "ml-migrate"), os.environ[f"MINILAMBDA_{side.upper()}_DB_URL"],
                        os.path.join(ROOT, "migrations", side)], check=True, stdout=subprocess.DEVNULL)
    return env


def dropped(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return sum(float(v) for v in re.findall(rb"^minilambda_function_log_lines_dropped_total\{[^}]*\} (\S+)", r.read(), re.M))


def ingestion(psql, port, fn):
    """(lines/s during the load, lines/s until all stored, invokes/s, lines stored, lines dropped)."""
    count = lambda: int(psql(f"select count(*) from function_logs where function = '{fn}'"))  # noqa: E731
    c0, d0, t0 = count(), dropped(port), time.monotonic()
    rps, _ = asyncio.run(closed_loop(port, f"/functions/{fn}/invoke", N_INGEST))
    t1, c1 = time.monotonic(), count()
    last, stable_since = c1, time.monotonic()
    while time.monotonic() - stable_since < 1.0 and time.monotonic() - t1 < 120:  # until the writer is done
        time.sleep(0.05)
        c = count()
        if c != last:
            last, stable_since = c, time.monotonic()
    return ((c1 - c0) / (t1 - t0), (last - c0) / (stable_since - t0), rps, last - c0, dropped(port) - d0)


def main():
    from mlstack import Suite, psql
    env = stack_env()
    S = Suite("bench-logs", {"build-master": int(PORT_BASE) + 182, "build-worker": int(PORT_BASE) + 192,
                             "lambda-executor": int(PORT_BASE) + 181}, {"MINILAMBDA_LOG_LEVEL": "warn"})
    rows, tag = [], os.urandom(3).hex()
    f100, f10 = f"logs100-{tag}", f"logs10-{tag}"
    port = S.ports["lambda-executor"]
    try:
        S.start("lambda-executor")
        for name in ("build-master", "build-worker"):
            S.start(name)
        S.deploy(f100, {"app.py": PRINTER.replace("NLINES", "100")}, concurrency=64)
        S.deploy(f10, {"app.py": PRINTER.replace("NLINES", "10")}, concurrency=64)
        for fn in (f100, f10):
            asyncio.run(closed_loop(port, f"/functions/{fn}/invoke", 500))  # warm instances
        during, total, rps100_on, stored, lost = ingestion(psql, port, f100)
        rows.append(f"| log ingestion: 100 lines/invoke, 32 clients, {N_INGEST} invokes ({rps100_on:.0f} invokes/s) | "
                    f"{during:,.0f} lines/s stored while invoking; {total:,.0f} lines/s to the last line "
                    f"({stored:,} stored, {lost:.0f} dropped) | ≥ 20,000 lines/s |")
        rps10_on, _ = asyncio.run(closed_loop(port, f"/functions/{f10}/invoke", N_TPUT))
        S.procs["lambda-executor"].terminate()
        S.procs["lambda-executor"].wait(60)
        S.start("lambda-executor", MINILAMBDA_FUNCTION_LOGS="off")
        for fn in (f100, f10):
            asyncio.run(closed_loop(port, f"/functions/{fn}/invoke", 500))
        rps100_off, _ = asyncio.run(closed_loop(port, f"/functions/{f100}/invoke", N_INGEST))
        rps10_off, _ = asyncio.run(closed_loop(port, f"/functions/{f10}/invoke", N_TPUT))
        rows.append(f"| invokes/s, 10 lines/invoke, 32 clients, {N_TPUT} invokes: logs on / off | "
                    f"{rps10_on:.0f} / {rps10_off:.0f} ({(rps10_on / rps10_off - 1) * 100:+.1f} %) | — |")
        rows.append(f"| invokes/s, 100 lines/invoke, 32 clients, {N_INGEST} invokes: logs on / off | "
                    f"{rps100_on:.0f} / {rps100_off:.0f} ({(rps100_on / rps100_off - 1) * 100:+.1f} %) | — |")
    finally:
        S.stop_all()
        subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "stop", "--purge"], env=env,
                       stdout=subprocess.DEVNULL)
    append_section(OUT, "Function logs", [
               "Command: `make bench` → `tests/bench/function_logs.py`: a private stack (ports "
               f"{PORT_BASE}+), functions built by the real pipeline, invoked directly on the lambda-executor (`-O2`)."], rows)


if __name__ == "__main__":
    main()
