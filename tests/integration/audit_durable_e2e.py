"""Durable audit under crash (issue 15 item 6, docs/audit.md), on the test stack:

1. Postgres stopped, N sync invocations served by the executor, the executor killed with
   SIGKILL, Postgres started, the executor restarted: exactly one audit row for each of the
   N served invocations (none lost, none twice), and the write-ahead log's old segments are
   deleted once written.
2. Postgres up, the executor killed with SIGKILL under concurrent load while a table lock
   holds the writer back (so hundreds of answered invocations' rows are only in the log):
   after a restart every invocation answered 200 has exactly one audit row. Rows beyond those are
   invocations the kill cut off between the log append and the response (at most one per
   in-flight request), counted and reported.
3. The checkpoint deleted: the whole log is replayed, and the rows stay one per invocation.
Prints ok/not ok lines."""
import concurrent.futures, glob, json, os, subprocess, sys, threading, time, uuid

from mlstack import ROOT, Suite, call, psql, scrape

PORTS = {"lambda-executor": 31881, "build-master": 31882, "build-worker": 31892}
S = Suite("test-audit-durable", PORTS, {"MINILAMBDA_LOG_LEVEL": "warn"})
EXEC = S.url("lambda-executor")
APP = "def handler(event, context):\n    return event\n"
SPILL = os.path.join(S.logs, "audit-exec.spill")


def invoke(fn, event, timeout=30):
    return call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(event).encode(),
                {"Content-Type": "application/json"}, timeout)


def pg_ctl(cmd):
    data, bindir = os.environ["ML_STACK_PG_DATA"], os.environ["ML_STACK_PG_BIN"]
    subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", f"{bindir}/pg_ctl -D {data} -w -m fast {cmd}"],
                   check=True, capture_output=True)


def pg_start():
    subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/stack.sh"), "start"], check=True,
                   capture_output=True)


def start_executor():
    S.start("lambda-executor", MINILAMBDA_AUDIT_SPILL_PATH=SPILL)


def kill9():
    p = S.procs["lambda-executor"]
    p.kill()  # SIGKILL: no drain, no flush
    p.wait(30)


def rows_of(ids):
    """{id: count of audit rows} for the given invocation ids."""
    if not ids:
        return {}
    lst = ",".join(f"'{i}'" for i in ids)
    out = subprocess.run(["psql", os.environ["MINILAMBDA_LAMBDA_DB_URL"], "-tA"], capture_output=True, text=True,
                         check=True, input=f"select id, count(*) from invocations where id in ({lst}) group by id;").stdout
    return {line.split("|")[0]: int(line.split("|")[1]) for line in out.splitlines() if line}


def fn_rows(fn):
    return int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                    f" where f.name = '{fn}'"))


def wait_rows(fn, want, timeout=60):
    end, n = time.time() + timeout, -1
    while time.time() < end:
        try:
            n = fn_rows(fn)
        except subprocess.CalledProcessError:
            n = -1
        if n >= want:
            break
        time.sleep(0.3)
    time.sleep(1.5)  # would anything more arrive (a duplicate cannot: id is the key)
    return fn_rows(fn)


def segments():
    return sorted(glob.glob(SPILL + ".*.wal"))


def postgres_down_then_crash(fn):
    st, h, _ = invoke(fn, {"warm": True})  # the function's metadata is cached from here
    S.check("warm-up invocation: 200", st == 200, st)
    before = wait_rows(fn, 1)
    pg_ctl("stop")
    served = []
    try:
        for i in range(80):
            st, h, _ = invoke(fn, {"i": i})
            if st == 200:
                served.append(h["X-Invocation-Id"])
        S.check(f"Postgres down: the executor serves the invocations ({len(served)}/80)", len(served) == 80,
                len(served))
        kill9()
        S.check("the audit rows wait in the write-ahead log on disk", len(segments()) >= 1, segments())
    finally:
        pg_start()
    start_executor()
    n = wait_rows(fn, before + len(served))
    got = rows_of(served)
    S.check(f"after kill -9 and restart: one audit row per served invocation ({len(got)}/{len(served)} ids, "
            f"{n - before} new rows)", len(got) == len(served) and n == before + len(served) and
            all(c == 1 for c in got.values()), (len(got), n, before))
    # once written, everything behind the checkpoint is deleted: only the current segment stays
    end = time.time() + 10
    while time.time() < end and len(segments()) > 1:
        time.sleep(0.2)
    S.check("written segments are deleted (one, current, segment left)", len(segments()) == 1, segments())


def crash_under_load(fn):
    before = fn_rows(fn)
    ok, sent, lock, stop = [], [0], threading.Lock(), threading.Event()

    def worker():
        while not stop.is_set():
            try:
                st, h, _ = invoke(fn, {"load": True}, timeout=10)
            except OSError:
                st, h = 0, {}
            with lock:
                sent[0] += 1
                if st == 200:
                    ok.append(h["X-Invocation-Id"])

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(worker) for _ in range(8)]
        time.sleep(1)
        # hold the writer back (its INSERT waits on the lock), so the rows served from here on
        # exist only in the write-ahead log when the executor dies
        holder = subprocess.Popen(["psql", os.environ["MINILAMBDA_LAMBDA_DB_URL"], "-qc",
                                   "BEGIN; LOCK TABLE invocations IN SHARE ROW EXCLUSIVE MODE;"
                                   " SELECT pg_sleep(5); COMMIT;"], stdout=subprocess.DEVNULL)
        time.sleep(3)
        with lock:
            held = len(ok)
        kill9()
        stop.set()
        for f in futs:
            f.result()
        holder.wait(30)
    S.check(f"load: invocations answered 200 before the kill ({len(ok)} of {sent[0]} sent)", len(ok) > 50,
            len(ok))
    written = fn_rows(fn) - before
    S.check(f"at the kill, rows of {len(ok) - written} answered invocations were in the log only "
            f"({written} in Postgres; the writer was held back)", len(ok) - written > 20, (len(ok), written, held))
    start_executor()
    n = wait_rows(fn, before + len(ok))
    got = rows_of(ok)
    extra = n - before - len(ok)
    S.check(f"kill -9 under load: every 200 has exactly one audit row ({len(got)}/{len(ok)}; "
            f"{extra} more rows of invocations cut off before their response, at most 8)",
            len(got) == len(ok) and all(c == 1 for c in got.values()) and 0 <= extra <= 8,
            (len(got), len(ok), extra))


def replay_is_idempotent(fn):
    """Without its checkpoint the log is replayed from its oldest record: rows already in
    Postgres are upserted again and stay one per invocation, unchanged."""
    before = fn_rows(fn)
    ids = [invoke(fn, {"again": i})[1].get("X-Invocation-Id") for i in range(20)]
    wait_rows(fn, before + 20)
    snap = psql(f"select md5(string_agg(id::text || status || coalesce(encode(result, 'hex'), ''), ',' order by id))"
                f" from invocations i where function_id = (select id from functions where name = '{fn}')")
    p = S.procs["lambda-executor"]
    p.terminate()
    p.wait(60)
    os.unlink(SPILL + ".ckpt")
    start_executor()
    time.sleep(3)
    written = scrape(EXEC)[0].get("minilambda_audit_rows_written_total", -1)
    S.check(f"after the restart the writer wrote the log's rows again ({written:.0f} >= 20)", written >= 20, written)
    got = rows_of(ids)
    S.check("checkpoint lost: the log is replayed and every row stays exactly once, unchanged",
            fn_rows(fn) == before + 20 and len(got) == 20 and all(c == 1 for c in got.values()) and
            snap == psql(f"select md5(string_agg(id::text || status || coalesce(encode(result, 'hex'), ''), ','"
                         f" order by id)) from invocations i where function_id ="
                         f" (select id from functions where name = '{fn}')"), (fn_rows(fn), before, len(got)))


def main():
    run = uuid.uuid4().hex[:8]
    for f in segments() + glob.glob(SPILL + ".ckpt"):
        os.unlink(f)
    start_executor()
    S.start("build-master")
    S.start("build-worker")
    try:
        fn = f"audit-{run}"
        S.check("function deployed", (S.deploy(fn, {"app.py": APP}) or {}).get("state") == "active")
        postgres_down_then_crash(fn)
        crash_under_load(fn)
        replay_is_idempotent(fn)
    finally:
        S.stop_all()
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
