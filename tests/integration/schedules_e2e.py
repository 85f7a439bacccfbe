"""Schedules end to end (issue 5): the API's validation, and two executors firing one
every-minute schedule for three minutes: exactly three fires. Prints ok/not ok lines."""
import json, sys, time, uuid

from mlstack import Suite, call, psql

S = Suite("test-schedules", {"build-master": 31682, "build-worker": 31692, "lambda-executor": 31681,
                             "executor-b": 31683})
EXEC = S.url("lambda-executor")
APP = "def handler(event, context):\n    return event\n"


def main():
    run = uuid.uuid4().hex[:8]
    S.start("lambda-executor")
    S.start("executor-b", "lambda-executor", MINILAMBDA_AUDIT_SPILL_PATH=S.logs + "/audit-b.spill")
    S.start("build-master")
    S.start("build-worker")
    try:
        fn = f"cron-{run}"
        S.check("function deployed", (S.deploy(fn, {"app.py": APP}) or {}).get("state") == "active")
        api(fn)
        three_minutes(fn)
    finally:
        S.stop_all()
    sys.exit(1 if S.failures else 0)


def post(fn, doc):
    return call("POST", f"{EXEC}/functions/{fn}/schedules", json.dumps(doc).encode(),
                {"Content-Type": "application/json"})


def api(fn):
    for bad in ("61 * * * *", "* * *", "*/0 * * * *", "0 0 30 2 *", "nonsense"):
        st, _, body = post(fn, {"cron": bad})
        S.check(f"bad cron '{bad}': 400 with a message", st == 400 and json.loads(body)["error"]["message"], (st, body))
    st, _, _ = post(f"missing-{uuid.uuid4().hex[:6]}", {"cron": "* * * * *"})
    S.check("schedule for an unknown function: 404", st == 404, st)
    st, _, body = post(fn, {"cron": "0 12 * JAN-MAR MON-FRI", "payload": {"k": 1}})
    sch = json.loads(body)
    S.check("POST a schedule: 201 with its next fire time", st == 201 and sch.get("next_fire_at"), (st, body))
    st, _, body = call("GET", f"{EXEC}/functions/{fn}/schedules")
    S.check("GET lists it", st == 200 and any(x["id"] == sch.get("id") for x in json.loads(body)["schedules"]), body)
    st, _, _ = call("DELETE", f"{EXEC}/functions/{fn}/schedules/{sch.get('id')}")
    S.check("DELETE it: 204, then 404", st == 204 and
            call("DELETE", f"{EXEC}/functions/{fn}/schedules/{sch.get('id')}")[0] == 404)


def fires(fn):
    return int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                    f" where f.name = '{fn}' and i.trigger = 'cron'"))


def three_minutes(fn):
    # start right after a minute boundary so exactly three boundaries fall in the window
    time.sleep(62 - time.time() % 60)
    st, _, body = post(fn, {"cron": "* * * * *", "payload": {"tick": True}})
    S.check("an every-minute schedule is created", st == 201, body)
    sch = json.loads(body)["id"]
    time.sleep(3 * 60 + 2)  # created just after a boundary: the next three boundaries pass
    call("DELETE", f"{EXEC}/functions/{fn}/schedules/{sch}")
    time.sleep(5)  # let the last fire finish and be audited
    n = fires(fn)
    S.check("two executors, every minute for 3 minutes: exactly 3 fires", n == 3, n)
    ok = int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                  f" where f.name = '{fn}' and i.trigger = 'cron' and i.status = 'succeeded'"))
    S.check("every fire ran as an async invocation and succeeded", ok == n, (ok, n))


if __name__ == "__main__":
    main()
