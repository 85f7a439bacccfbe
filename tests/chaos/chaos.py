"""The fault-injection suite (issue 15): each scenario injects one fault into a private
platform (tests/chaos/run.sh starts its stack), prints exact counts as a table and asserts
the guarantee of docs/reliability.md. Exit 0 only if every scenario chosen passed.

  chaos.py [NAME ...]     NAME: one of SCENARIOS below (default: all, in that order)

Writes every scenario's counts and checks to $ML_BUILD_DIR/chaos/results.json."""
import base64, json, os, signal, sys, time

from lib import (BIN, ECHO_APP, PORTS, RUN_ID, SINK_APP, TAG, HoldProxy, Sink, Client, deploy, executor_alive,
                 healthy, make_zip, note, pg_up, platform, rabbit_up, redis_pid, stack_start, start_executor, wait_until)
import scen_crash, scen_deps, scen_input

SCENARIOS = {
    "postgres_down": scen_deps.postgres_down,
    "rabbitmq_down": scen_deps.rabbitmq_down,
    "redis_frozen": scen_deps.redis_frozen,
    "executor_kill": scen_crash.executor_kill,
    "hostile_patch": scen_input.hostile_patch,
    "delete_race": scen_input.delete_race,
    "audit_crash": scen_crash.audit_crash,
    "worker_lease": scen_crash.worker_lease,
}


class Ctx:
    """What every scenario gets: the platform, its functions, the sink and the hold proxy."""

    def __init__(self):
        self.run, self.S = RUN_ID, platform()
        self.gw_port = PORTS["gateway"]
        self.sink = Sink()
        self.proxy = HoldProxy(f"http://127.0.0.1:{PORTS['lambda-executor']}")
        self.S.env["MINILAMBDA_EXECUTOR_WEBHOOK_URL"] = self.proxy.url
        self.echo_zip = base64.b64encode(make_zip({"app.py": ECHO_APP})).decode()
        self.limit = {"rps": 20, "burst": 10}
        self.fn = {}

    def setup(self):
        start_executor(self.S)
        for name in ("build-master", "build-worker", "gateway"):
            self.S.start(name)
        env = {"CHAOS_TAG": TAG, "CHAOS_SINK": self.sink.url}
        plan = {"echo": ({"app.py": ECHO_APP}, {"concurrency": 64}),
                "pgload": ({"app.py": ECHO_APP}, {"concurrency": 64}),
                "limited": ({"app.py": ECHO_APP}, {"concurrency": 64, "rate_limit": self.limit}),
                "patch": ({"app.py": ECHO_APP}, {"env": {"KEEP": "me"}}),
                "audit": ({"app.py": ECHO_APP}, {"concurrency": 16}),
                "sink": ({"app.py": SINK_APP}, {"concurrency": 16, "timeout_s": 30})}
        for key, (files, cfg) in plan.items():
            self.fn[key] = f"{key}-{self.run}"
            deploy(self.S, self.fn[key], files, env={**env, **cfg.pop("env", {})}, **cfg)
        self.settle()

    def settle(self):
        """Back to normal between scenarios: every server and daemon up, invokes through the
        gateway answering 200 (an open breaker or a cache still empty would skew the next)."""
        os.kill(redis_pid(), signal.SIGCONT)
        if not pg_up() or not rabbit_up() or not healthy(self.S.url("lambda-executor")):
            stack_start()
        if not executor_alive(self.S):
            start_executor(self.S)
        for name in ("build-master", "build-worker", "gateway"):
            if self.S.procs[name].poll() is not None:
                self.S.start(name)
        c = Client(self.gw_port, self.S.token)
        ok = wait_until(lambda: healthy(self.S.url("lambda-executor")) and
                        c.req("POST", f"/functions/{self.fn['echo']}/invoke", {"n": 0})[0] == 200 and
                        c.req("POST", f"/functions/{self.fn['sink']}/invoke", {"n": "warm"})[0] == 200, 45, 0.5)
        if not ok:
            note("warning: the platform did not settle within 45 s")


def summary(results):
    print("\n=== chaos summary")
    for r in results:
        main = r["rows"][0] if r["rows"] else {}
        nums = ", ".join(f"{k} {main[k]}" for k in ("sent", "accepted", "executed", "audited", "duplicated", "lost")
                         if k in main)
        print(f"  {'PASS' if r['pass'] else 'FAIL'}  {r['name']:<14} {r['seconds']:>5.0f} s  {nums}")
    failed = [r["name"] for r in results if not r["pass"]]
    print(f"chaos: {len(results) - len(failed)} passed, {len(failed)} failed" +
          (f" ({' '.join(failed)})" if failed else ""), flush=True)
    return not failed


def main(names):
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {' '.join(SCENARIOS)}")
        return 2
    t0, results, ctx = time.time(), [], Ctx()
    try:
        ctx.setup()
        note(f"setup {time.time() - t0:.0f} s; binaries {BIN}")
        for name in names or list(SCENARIOS):
            try:
                results.append(SCENARIOS[name](ctx))
            except Exception as e:  # one broken scenario must not hide the others' numbers
                import traceback
                traceback.print_exc()
                results.append({"name": name, "title": "", "pass": False, "seconds": 0, "rows": [],
                                "checks": [{"what": f"crashed: {e!r}", "ok": False}]})
            ctx.settle()
    finally:
        ctx.S.stop_all()
    out = os.path.join(os.environ.get("ML_BUILD_DIR", "build"), "chaos")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    ok = summary(results)
    print(f"took {time.time() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
