"""Scenarios of a daemon killed with SIGKILL: the executor under async load, the executor
holding unwritten audit rows while Postgres is down, a build-worker inside a webhook lease."""
import concurrent.futures, json, time
from collections import Counter

from lib import (Client, Scenario, audit_settle, call, executor_alive, kill9, note, orphans,
                 pg_stop, stack_start, start_executor, wait_until)


def executor_kill(ctx):
    """kill -9 of the executor while 8 consumers run 2 s events."""
    sc = Scenario("executor_kill", "executor kill -9 under async load: 0 lost, no orphan, no completed event re-run")
    S, fn, n_events = ctx.S, ctx.fn["sink"], 48
    ex_url = S.url("lambda-executor")
    ids = {}
    for i in range(n_events):
        st, h, body = call("POST", f"{ex_url}/functions/{fn}/invoke", json.dumps({"n": f"kill-{i}", "sleep": 2}).encode(),
                           {"Content-Type": "application/json", "X-Invocation-Type": "Event"})
        if st == 202:
            ids[json.loads(body)["invocation_id"]] = f"kill-{i}"

    def started():
        return sum(1 for r in ctx.sink.snapshot() if r["phase"] == "start" and str(r["n"]).startswith("kill-"))
    wait_until(lambda: started() >= 12, 30)  # the second round of executions is under way
    time.sleep(0.7)
    t_kill = time.time()
    kill9(S, "lambda-executor")
    time.sleep(0.5)
    orph_kill = orphans()
    start_executor(S)
    orph_restart = orphans(exclude={S.procs["lambda-executor"].pid})
    orph_restart = [p for p in orph_restart if p in orph_kill]
    note(f"killed at {started()} starts; orphans 0.5 s after the kill: {len(orph_kill)}, after the restart: {len(orph_restart)}")

    def record(inv):
        st, _, body = call("GET", f"{ex_url}/invocations/{inv}")
        return json.loads(body) if st == 200 else {}

    def settled():
        return all(record(i).get("status") in ("succeeded", "failed", "dead_lettered") for i in ids)
    wait_until(settled, 60, 1)
    time.sleep(3)
    ex = ctx.sink.executions("id")
    recs = {i: record(i) for i in ids}
    executed, dup, cut, retried2, rerun_done, orphan_done, lost = set(), [], set(), set(), set(), set(), set()
    for inv in ids:
        runs = list(ex.get(inv, {}).values())
        if any(r["end"] for r in runs):
            executed.add(inv)
        if recs[inv].get("status") != "succeeded" or inv not in executed:
            lost.add(inv)
        before = [r for r in runs if r["start"] < t_kill]
        if any(r["end"] and r["end"] < t_kill for r in before) and len(runs) > 1:
            rerun_done.add(inv)  # its execution had completed before the crash, yet it ran again
        if any(r["end"] and r["end"] >= t_kill for r in before):
            orphan_done.add(inv)  # kept running after its executor died
        if any(not r["end"] or r["end"] >= t_kill for r in before):
            cut.add(inv)
        allowed = (inv in cut and len(runs) == 2 and len(before) == 1 and not before[0]["end"]
                   and recs[inv].get("attempts") == 2)
        if inv in cut and recs[inv].get("attempts") == 2:
            retried2.add(inv)
        if len(runs) > 1 and not allowed:
            dup.append(inv)
    reexec = sum(len(ex.get(i, {})) - 1 for i in ids if len(ex.get(i, {})) > 1)
    sc.counts("Event invokes", sent=n_events, accepted=len(ids), executed=len(executed),
              audited=sum(1 for r in recs.values() if r), duplicated=len(dup), lost=len(lost),
              cut_mid_execution=len(cut), re_executions=reexec, cut_retried_as_attempt_2=len(retried2),
              completed_then_rerun=len(rerun_done), finished_after_crash=len(orphan_done),
              orphans_after_kill=len(orph_kill), orphans_after_restart=len(orph_restart))
    sc.check(f"0 lost ({len(lost)} of {len(ids)} accepted not settled succeeded or never completed)",
             not lost and len(ids) == n_events, sorted(lost)[:3])
    sc.check(f"no orphan sandbox process 0.5 s after the kill ({len(orph_kill)}) nor after the restart "
             f"({len(orph_restart)})", not orph_kill and not orph_restart, (orph_kill, orph_restart))
    sc.check(f"no event whose execution had completed runs again ({len(rerun_done)}); none finished after "
             f"the crash ({len(orphan_done)})", not rerun_done and not orphan_done, sorted(rerun_done)[:3])
    sc.check(f"the only re-executions are the {len(cut)} cut events, each retried as attempt 2 "
             f"({reexec} re-executions, {len(dup)} not allowed, {len(retried2)} attempt 2)",
             not dup and retried2 == cut, ([(d, recs[d].get("attempts"), len(ex.get(d, {}))) for d in dup[:3]]))
    return sc.result()


def audit_crash(ctx):
    """Postgres down, N invokes served, executor kill -9, Postgres up, executor restarted."""
    sc = Scenario("audit_crash", "audit under crash: Postgres down, N served, kill -9, Postgres up → rows == N")
    S, fn, n = ctx.S, ctx.fn["audit"], 80
    ex_url = S.url("lambda-executor")
    for _ in range(3):  # the function's metadata is in the caches, as for any function in use
        call("POST", f"{ex_url}/functions/{fn}/invoke", b'{"n":0}', {"Content-Type": "application/json"})
    before = set(audit_settle(fn, 3, 10))
    pg_stop()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            res = list(pool.map(lambda i: call("POST", f"{ex_url}/functions/{fn}/invoke", b'{"n":1}',
                                               {"Content-Type": "application/json"}), range(n)))
        served = {h.get("X-Invocation-Id") for st, h, _ in res if st == 200}
        time.sleep(0.3)
        kill9(S, "lambda-executor")
    finally:
        stack_start()
    start_executor(S)
    rows = [x for x in audit_settle(fn, len(before) + len(served), 20) if x not in before]
    lost = served - set(rows)
    sc.counts("sync invokes (executor direct)", sent=n, accepted=len(served), executed=len(served),
              audited=len(rows), duplicated=len(rows) - len(set(rows)), lost=len(lost),
              statuses=dict(sorted(Counter(st for st, _, _ in res).items())))
    sc.check(f"every one of the {n} invokes served while Postgres was down", len(served) == n, len(served))
    sc.check(f"audit rows == served after kill -9 and restart ({len(rows)} vs {len(served)})",
             served and len(rows) == len(served) and not lost and len(set(rows)) == len(rows), (len(rows), len(lost)))
    return sc.result()


def worker_lease(ctx):
    """kill -9 of a build-worker while its webhook delivery is in flight (inside its lease)."""
    sc = Scenario("worker_lease", "crashed build-worker's outbox lease: function active within seconds")
    S, px, name = ctx.S, ctx.proxy, f"lease-{ctx.run}"
    px.release.clear()
    px.held.clear()
    px.hold.set()
    c = Client(S.ports["build-master"])
    st, _, body = c.req("POST", "/functions", {"name": name, "runtime": "python3", "handler": "app.handler",
                                               "code_base64": ctx.echo_zip})
    held = wait_until(lambda: px.held, 30)
    kill9(S, "build-worker")
    t_kill = time.time()
    px.hold.clear()
    px.release.set()
    S.start("build-worker")
    t_restart = time.time()
    cap = 45

    def active():
        st, _, b = call("GET", f"{S.url('lambda-executor')}/functions/{name}")
        return st == 200 and json.loads(b).get("state") == "active"
    ok = wait_until(active, cap, 0.2)
    dt = time.time() - t_restart
    shown = f"{dt:.1f} s" if ok else f"> {cap} s"
    note(f"held delivery: {held[:1] if held else None}; worker restarted {t_restart - t_kill:.1f} s after the kill; "
         f"active {shown} after the restart")
    sc.counts("build", sent=1, accepted=int(st == 202), executed=int(bool(ok)),
              held_webhook=held[0][2] if held else "none", active_after_restart=shown)
    sc.check("the create was accepted and a webhook delivery was in flight at the kill", st == 202 and held,
             (st, body[:100]))
    sc.check(f"the function is active within 10 s of the worker's restart ({shown})", ok and dt <= 10, shown)
    return sc.result()


def ensure_executor(S):
    if not executor_alive(S):
        start_executor(S)
