"""Gateway routing by capability (issue 15), end to end: the real gateway binary in front of
fake executors whose GET /health reports per-capability availability, e.g. an executor whose
broker is down ("invoke":true,"async":false). The fakes are gateway_e2e's: the real executor
only reports such states under an outage (tests/chaos/ rabbitmq_down and postgres_down stage
those on the real stack); here each state is staged exactly and at once.

Checks: each route goes only to an instance with the capability it needs; no such instance ->
503 JSON with Retry-After (and, for an Event, the invocation id it was given); the gateway
fixes an Event's id (the client's X-Invocation-Id if it is a UUID, else 400) and forwards it.
"""
import json, os, sys, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_e2e as g  # noqa: E402  (the fakes, the gateway launcher, check/note)
from gateway_e2e import check, jbody, request, wait_for  # noqa: E402


def caps(status="degraded", **c):
    return json.dumps({"status": status, "checks": {}, "capabilities": c,
                       "degraded": [k for k, v in c.items() if not v]}).encode()


def is_uuid(s):
    try:
        return str(uuid.UUID(s)) == s
    except (TypeError, ValueError):
        return False


def event(port, fn, inv=None, body=None):
    h = {"X-Invocation-Type": "Event", **({"X-Invocation-Id": inv} if inv else {})}
    return request(port, "POST", f"/functions/{fn}/invoke", body=body or {"e": 1}, headers=h)


def check_broker_down(bm):
    """One executor, its broker down: sync invokes and reads served, Events 503 + id."""
    ex = g.Fake("executor-nobroker")
    ex.health_body = caps(invoke=True, **{"async": False}, read=True, write=True)
    fn = g.fn_doc("caps-sync")
    port, _ = g.start_gateway("gw-caps-1", ex.url, bm.url)
    time.sleep(0.5)  # the first health round has run
    st, h, data = request(port, "POST", f"/functions/{fn}/invoke", body={"n": 1})
    check("async down: sync invoke served (200)", st == 200 and jbody(data).get("served_by") == ex.name, (st, data[:200]))
    check("async down: reads served (200)", request(port, "GET", f"/functions/{fn}")[0] == 200)
    cap = {c: g.metric(port, "minilambda_gateway_upstream_capability", instance=ex.url, capability=c)
           for c in ("invoke", "async", "read", "write", "build")}
    check("async down: minilambda_gateway_upstream_capability shows what the instance reported",
          cap == {"invoke": 1, "async": 0, "read": 1, "write": 1, "build": 0}, cap)
    before = ex.count(f"/functions/{fn}/invoke")
    st, h, data = event(port, fn)
    doc = jbody(data) or {}
    inv = h["X-Invocation-Id"]
    check("async down: Event -> 503 upstream_unavailable JSON with Retry-After and X-Request-Id",
          st == 503 and doc.get("error", {}).get("code") == "upstream_unavailable" and h["Retry-After"]
          and h["X-Request-Id"] and doc["error"].get("request_id") == h["X-Request-Id"], (st, dict(h), data))
    check("async down: the 503 carries the invocation id the gateway fixed (header == body, a UUID v4)",
          is_uuid(inv) and uuid.UUID(inv).version == 4 and doc.get("invocation_id") == inv, (inv, doc))
    mine = str(uuid.uuid4())
    st, h, data = event(port, fn, mine)
    check("async down: a client's X-Invocation-Id comes back with the 503",
          st == 503 and h["X-Invocation-Id"] == mine and (jbody(data) or {}).get("invocation_id") == mine, (st, dict(h)))
    check("async down: the executor never saw an Event", ex.count(f"/functions/{fn}/invoke") == before,
          ex.count(f"/functions/{fn}/invoke") - before)
    st, h, data = request(port, "POST", f"/2015-03-31/functions/{fn}/invocations", body={},
                          headers={"X-Amz-Invocation-Type": "Event"})
    check("async down: AWS-dialect Event -> 503 ServiceException with X-Invocation-Id",
          st == 503 and h["x-amzn-ErrorType"] == "ServiceException" and is_uuid(h["X-Invocation-Id"]), (st, dict(h)))
    # the broker comes back: the same id is forwarded (the executor deduplicates a retry)
    ex.health_body = caps("ok", invoke=True, **{"async": True}, read=True, write=True)
    wait_for(lambda: event(port, fn, mine)[0] == 202, 3)
    seen = [r for r in ex.seen("POST", f"/functions/{fn}/invoke") if r["headers"].get("x-invocation-type") == "Event"]
    check("broker back: the retry reaches the executor with the client's X-Invocation-Id",
          seen and seen[-1]["headers"].get("x-invocation-id") == mine, seen[-1:] and seen[-1]["headers"])
    ex.stop()


def check_split(bm):
    """Two executors, each able to do half: every request goes to the one that can."""
    a, b = g.Fake("executor-sync-only"), g.Fake("executor-async-only")
    a.health_body = caps(invoke=True, **{"async": False}, read=True, write=False)
    b.health_body = caps(invoke=False, **{"async": True}, read=False, write=True)
    fn = g.fn_doc("caps-split")
    port, _ = g.start_gateway("gw-caps-2", f"{a.url},{b.url}", bm.url)
    time.sleep(0.5)
    sync = [jbody(request(port, "POST", f"/functions/{fn}/invoke", body={})[2]).get("served_by") for _ in range(6)]
    check("split: every sync invoke goes to the invoke-capable executor", sync == [a.name] * 6, sync)
    n0 = b.count(f"/functions/{fn}/invoke")
    sts = [event(port, fn)[0] for _ in range(6)]
    check("split: every Event goes to the async-capable executor",
          sts == [202] * 6 and b.count(f"/functions/{fn}/invoke") - n0 == 6, (sts, b.count(f"/functions/{fn}/invoke") - n0))
    ids = [r["headers"].get("x-invocation-id") for r in b.seen("POST", f"/functions/{fn}/invoke")]
    check("split: the gateway gives each Event a new UUID, forwarded as X-Invocation-Id",
          len(ids) == 6 and all(is_uuid(i) for i in ids) and len(set(ids)) == 6, ids)
    reads = [jbody(request(port, "GET", "/functions")[2]).get("served_by") for _ in range(4)]
    writes = [jbody(request(port, "PATCH", f"/functions/{fn}", body={"memory_mb": 128})[2]).get("served_by")
              for _ in range(4)]
    check("split: reads go to the read-capable one, writes to the write-capable one",
          reads == [a.name] * 4 and writes == [b.name] * 4, (reads, writes))
    mine = str(uuid.uuid4())
    request(port, "POST", f"/functions/{fn}/invoke", body={}, headers={"X-Invocation-Id": mine})
    request(port, "POST", f"/functions/{fn}/invoke", body={})
    sync_ids = [r["headers"].get("x-invocation-id") for r in a.seen("POST", f"/functions/{fn}/invoke")][-2:]
    check("split: a sync invoke forwards the client's X-Invocation-Id, and none when it sent none",
          sync_ids == [mine, None], sync_ids)
    for bad in ("not-a-uuid", mine.upper()[:-1] + "Z", mine + "0", ""):
        st, _, data = request(port, "POST", f"/functions/{fn}/invoke", body={},
                              headers={"X-Invocation-Type": "Event", "X-Invocation-Id": bad})
        check(f"X-Invocation-Id {bad!r} -> 400 invalid_invocation_id",
              st == 400 and (jbody(data) or {}).get("error", {}).get("code") == "invalid_invocation_id", (st, data))
    # the async one loses its broker too: no instance can take an Event
    b.health_body = caps("unavailable", invoke=False, **{"async": False}, read=False, write=False)
    b.health_status = 503
    wait_for(lambda: g.metric(port, "minilambda_gateway_upstream_healthy", instance=b.url) == 0, 3)
    st, h, data = event(port, fn)
    check("split: no async-capable executor left -> Event 503 with id; sync invokes still 200",
          st == 503 and is_uuid(h["X-Invocation-Id"]) and
          request(port, "POST", f"/functions/{fn}/invoke", body={})[0] == 200, (st, dict(h)))
    st, _, data = request(port, "PATCH", f"/functions/{fn}", body={"memory_mb": 128})
    check("split: no write-capable executor -> PATCH 503 upstream_unavailable naming the capability",
          st == 503 and "'write'" in (jbody(data) or {}).get("error", {}).get("message", ""), (st, data))
    a.stop()
    b.stop()


def check_no_reads(bm):
    """An executor that cannot read (its database down) still serves invokes: the function
    lookup falls back to the defaults instead of refusing the invoke."""
    ex = g.Fake("executor-noread")
    ex.health_body = caps(invoke=True, **{"async": True}, read=False, write=False)
    port, _ = g.start_gateway("gw-caps-3", ex.url, bm.url)
    time.sleep(0.5)
    fn = g.fn_doc("caps-noread")
    st, _, data = request(port, "POST", f"/functions/{fn}/invoke", body={})
    looked = ex.seen("GET", f"/functions/{fn}")
    check("no reads: invoke served with the default config, no lookup sent", st == 200 and not looked,
          (st, data[:200], len(looked)))
    st, h, _ = request(port, "GET", f"/functions/{fn}")
    check("no reads: GET /functions/{fn} -> 503 with Retry-After", st == 503 and h["Retry-After"], (st, dict(h)))
    ex.stop()


def main():
    os.makedirs(g.LOGS, exist_ok=True)
    bm = g.Fake("build-master")

    def checks():
        check_broker_down(bm)
        check_split(bm)
        check_no_reads(bm)
    g.run_and_exit("gateway caps e2e", checks)


if __name__ == "__main__":
    main()
