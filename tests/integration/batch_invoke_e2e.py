"""POST /batch-invoke and PUT/GET/DELETE /functions/{fn}/url through the real gateway and
executor (issue 20, parts 1 and 4; docs/http.md).

Batch: several functions and all three invocation types in one request, answered in order
(index and the client's id per item); a failing item fails only itself; a missing function is
that item's 404; a function whose rate limit is spent gets its over-limit item answered 429 by
the gateway while the others run; items of a function with concurrency 1 all complete (one
after another); each item leaves its audit row; 101 items are a 400.
URL config: create (201, defaults filled) / replace (200) / get / delete (204, then 404); a
refused PUT (400 naming the field) changes nothing; GET /functions/{fn} shows url_config;
another namespace does not see it; deleting the function removes its URL. Prints ok/not ok."""
import base64, json, os, sys, threading, time, uuid

from mlstack import Suite, jcall, psql

BASE = int(os.environ.get("ML_PORT_BASE", "30000"))
PORTS = {"gateway": BASE + 2680, "lambda-executor": BASE + 2681, "build-master": BASE + 2682,
         "build-worker": BASE + 2692}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
S = Suite("test-batch-invoke", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
ECHO = ("def handler(event, context):\n"
        "    if event.get('boom'):\n"
        "        raise ValueError('boom')\n"
        "    return {'echo': event}\n")
SLOW = "import time\ndef handler(event, context):\n    time.sleep(0.25)\n    return event.get('n')\n"


def deploy_all(fns):
    """Deploys {name: source} concurrently; True when every one is active."""
    out = {}

    def one(name, src):
        out[name] = (S.deploy(name, {"app.py": src}) or {}).get("state")
    ts = [threading.Thread(target=one, args=kv) for kv in fns.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return all(v == "active" for v in out.values())


def batch_checks(gw, auth, echo, slow, limited):
    ex = S.url("lambda-executor")
    st, b = jcall(ex, "PATCH", f"/functions/{slow}", {}, {"concurrency": 1})
    S.check("slow function: concurrency 1", st == 200 and b.get("concurrency") == 1, (st, b))
    st, b = jcall(ex, "PATCH", f"/functions/{limited}", {}, {"rate_limit": {"rps": 0.01, "burst": 1}})
    S.check("limited function: rate limit 1 per 100 s", st == 200, (st, b))
    # a dry run spends no budget but makes the gateway cache the function's rate limit
    st, _ = jcall(gw, "POST", f"/functions/{limited}/invoke", dict(auth, **{"X-Invocation-Type": "DryRun"}), {})
    S.check("dry run through the gateway (caches the limit)", st == 204, st)
    items = [
        {"function": echo, "payload": {"a": 1}, "id": "first"},
        {"function": echo, "payload": {"boom": True}, "id": "fails"},
        {"function": f"no-such-{uuid.uuid4().hex[:6]}", "id": "missing"},
        {"function": echo, "payload": {"e": 1}, "invocation_type": "Event", "id": "event"},
        {"function": echo, "invocation_type": "DryRun", "id": "dry"},
        {"function": limited, "payload": {"l": 1}, "id": "lim-1"},
        {"function": limited, "payload": {"l": 2}, "id": "lim-2"},
        {"function": echo, "payload": {"q": 1}, "qualifier": "99", "id": "badq"},
        {"function": echo, "id": "last"},
    ]
    t0 = time.time()
    st, b = jcall(gw, "POST", "/batch-invoke", auth, {"invocations": items})
    r = (b or {}).get("results", []) if isinstance(b, dict) else []
    S.check("mixed batch: 200 with one result per item", st == 200 and len(r) == len(items), (st, b))
    if len(r) != len(items):
        return
    S.check("order kept: index and id per item", [x.get("index") for x in r] == list(range(len(items))) and
            [x.get("id") for x in r] == [i["id"] for i in items], r)
    by = {x["id"]: x for x in r}
    S.check("sync item: 200, its payload, version and invocation id",
            by["first"]["status"] == 200 and by["first"].get("payload") == {"echo": {"a": 1}} and
            by["first"].get("executed_version") == "$LATEST" and by["first"].get("invocation_id"), by["first"])
    S.check("failing item: 502 Unhandled with its error, only itself",
            by["fails"]["status"] == 502 and by["fails"].get("function_error") == "Unhandled" and
            (by["fails"].get("payload") or {}).get("errorType") == "ValueError" and
            by["last"]["status"] == 200 and by["last"].get("payload") == {"echo": {}}, (by["fails"], by["last"]))
    S.check("missing function: that item's 404 not_found",
            by["missing"]["status"] == 404 and (by["missing"].get("error") or {}).get("code") == "not_found",
            by["missing"])
    S.check("Event item: 202 queued with its invocation id",
            by["event"]["status"] == 202 and by["event"].get("invocation_id"), by["event"])
    S.check("DryRun item: 204", by["dry"]["status"] == 204, by["dry"])
    lim = sorted([by["lim-1"]["status"], by["lim-2"]["status"]])
    thr = by["lim-2"] if by["lim-2"]["status"] == 429 else by["lim-1"]
    S.check("rate limit: one item runs, the over-limit one is 429 rate_limited from the gateway",
            lim == [200, 429] and (thr.get("error") or {}).get("code") == "rate_limited", (by["lim-1"], by["lim-2"]))
    S.check("unknown qualifier: that item's 404 qualifier_not_found",
            by["badq"]["status"] == 404 and (by["badq"].get("error") or {}).get("code") == "qualifier_not_found",
            by["badq"])
    print(f"# mixed batch took {time.time() - t0:.2f} s", flush=True)
    # the same audit row as a single invoke
    inv = by["first"]["invocation_id"]
    row = None
    for _ in range(50):
        st, row = jcall(gw, "GET", f"/invocations/{inv}", auth)
        if st == 200:
            break
        time.sleep(0.1)
    S.check("sync item's audit row (GET /invocations/{id})",
            st == 200 and row.get("status") == "succeeded" and row.get("trigger") == "http_sync", (st, row))
    # one function with concurrency 1: every item runs, one after another
    t0 = time.time()
    st, b = jcall(gw, "POST", "/batch-invoke", auth,
                  {"invocations": [{"function": slow, "payload": {"n": i}} for i in range(4)]})
    took = time.time() - t0
    r = (b or {}).get("results", []) if isinstance(b, dict) else []
    S.check("concurrency 1: all four items complete, in order",
            st == 200 and [x.get("status") for x in r] == [200] * 4 and [x.get("payload") for x in r] == [0, 1, 2, 3],
            (st, b))
    S.check("concurrency 1: the items ran one at a time (>= 4 x 0.25 s)", took >= 1.0, took)
    st, b = jcall(gw, "POST", "/batch-invoke", auth, {"invocations": [{"function": echo}] * 101})
    S.check("101 items: 400", st == 400 and b["error"]["code"] == "invalid_field", (st, b))
    st, b = jcall(gw, "POST", "/batch-invoke", auth, {"invocations": []})
    S.check("no items: 400", st == 400, (st, b))
    st, b = jcall(gw, "POST", "/batch-invoke", auth, {"invocations": [{"function": echo, "invocation_type": "Later"}]})
    S.check("a bad item: 400 naming it, nothing runs",
            st == 400 and "invocations[0].invocation_type" in b["error"]["message"], (st, b))
    st, b = jcall(gw, "POST", "/batch-invoke", {}, {"invocations": [{"function": echo}]})
    S.check("no token: 401", st == 401, st)


def url_checks(gw, auth, echo, doomed):
    path = f"/functions/{echo}/url"
    st, b = jcall(gw, "GET", path, auth)
    S.check("no URL yet: 404", st == 404, (st, b))
    st, b = jcall(gw, "PUT", path, auth, {"auth": "NONE"})
    S.check("create: 201 with defaults, url and ids",
            st == 201 and b.get("auth") == "NONE" and b.get("qualifier") is None and b.get("cors") is None and
            b.get("batching") is None and b.get("url") == f"/fn/{echo}" and b.get("function") == echo and
            b.get("function_id") and b.get("created_at"), (st, b))
    created = b.get("created_at") if isinstance(b, dict) else None
    cfg = {"auth": "JWT", "qualifier": "live",
           "cors": {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"], "max_age": 60},
           "batching": {"max_wait_ms": 20, "key": ["header:X-Tenant-Id"], "dynamic": True}}
    st, b = jcall(gw, "PUT", path, auth, cfg)
    S.check("replace: 200 with the new config, defaults filled",
            st == 200 and b.get("auth") == "JWT" and b.get("qualifier") == "live" and
            b["cors"]["allow_credentials"] is False and b["cors"]["allow_headers"] == [] and
            b["batching"] == {"max_wait_ms": 20, "max_batch_size": 16, "key": ["header:x-tenant-id"],
                              "dynamic": True, "rate_mid": 100, "rate_width": 25} and
            b.get("created_at") == created, (st, b))
    stored = b
    for bad, field in (({"auth": "NONE", "cors": {"allow_origins": ["*"], "allow_credentials": True}},
                        "cors.allow_credentials"),
                       ({"auth": "NONE", "colour": "red"}, "colour"),
                       ({"auth": "NONE", "batching": {"max_wait_ms": 0}}, "batching.max_wait_ms"),
                       ({"qualifier": "live"}, "auth")):
        st, b = jcall(gw, "PUT", path, auth, bad)
        S.check(f"refused PUT: 400 invalid_field {field}",
                st == 400 and b["error"]["code"] == "invalid_field" and b["error"].get("field") == field, (st, b))
    st, b = jcall(gw, "GET", path, auth)
    S.check("get: 200, unchanged by the refused PUTs", st == 200 and b == stored, (st, b, stored))
    st, b = jcall(gw, "GET", f"/functions/{echo}", auth)
    S.check("GET /functions/{fn} shows url_config", st == 200 and b.get("url_config") == stored, (st, b))
    st, b = jcall(S.url("lambda-executor"), "GET", path, {"X-Minilambda-Namespace": "other-ns"})
    S.check("another namespace: 404", st == 404, (st, b))
    st, _ = jcall(gw, "DELETE", path, auth)
    S.check("delete: 204", st == 204, st)
    st, _ = jcall(gw, "GET", path, auth)
    S.check("deleted: 404", st == 404, st)
    st, _ = jcall(gw, "DELETE", path, auth)
    S.check("delete again: 404", st == 404, st)
    st, b = jcall(gw, "GET", f"/functions/{echo}", auth)
    S.check("GET /functions/{fn}: url_config null", st == 200 and "url_config" in b and b["url_config"] is None, b)
    # deleting the function removes its URL
    st, b = jcall(gw, "PUT", f"/functions/{doomed}/url", auth, {"auth": "NONE"})
    fid = (b or {}).get("function_id") if isinstance(b, dict) else None
    S.check("URL for the function to delete", st == 201 and fid, (st, b))
    st, _ = jcall(gw, "DELETE", f"/functions/{doomed}", auth)
    S.check("delete the function", st in (200, 202, 204), st)
    left = None
    for _ in range(50):
        left = psql(f"SELECT count(*) FROM function_urls WHERE function_id = '{fid}'")
        if left.strip() == "0":
            break
        time.sleep(0.1)
    S.check("deleting the function removed its URL", left is not None and left.strip() == "0", left)


def main():
    run = uuid.uuid4().hex[:8]
    t0 = time.time()
    try:
        auth = S.start_platform("batch")
        echo, slow, limited, doomed = (f"bi-{k}-{run}" for k in ("echo", "slow", "lim", "doomed"))
        ok = S.check("functions deployed", deploy_all({echo: ECHO, slow: SLOW, limited: ECHO, doomed: ECHO}))
        if ok:
            print(f"# deployed after {time.time() - t0:.1f} s", flush=True)
            batch_checks(S.url("gateway"), auth, echo, slow, limited)
            url_checks(S.url("gateway"), auth, echo, doomed)
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
