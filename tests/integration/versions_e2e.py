"""Published versions, aliases and qualifiers in the lambda-executor (docs/versions.md), against
the real test stack (build-master, build-worker, lambda-executor; the executor called directly).

A function answers its code's letter, its COLOR env and its memory: version 1 is code A with
COLOR=red and 128 MB; then new code B, COLOR=blue, 256 MB make $LATEST, which version 1 must not
follow. Checks: publish (201, idempotent, 412 on a stale code_sha256, 409 while a build runs),
version documents and their list, invoke and GET by $LATEST / number / alias, unknown qualifier
404, alias update = rollback, a weighted alias over 10,000 invocations within +-2 % of its weight,
a version in use cannot be deleted, pools per version (a change of $LATEST leaves a version's
instance warm), audit rows' executed_version and alias (sync and Event) and X-Executed-Version,
and the same name in another namespace seeing none of it.
Prints "ok - ..." / "not ok - ..." per check.
"""
import base64, collections, concurrent.futures, http.client, json, os, time, uuid

from mlstack import Suite, call, make_zip, psql

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 1500  # clear of the stack's own ports
S = Suite("test-versions", {"build-master": BASE + 1, "build-worker": BASE + 2, "lambda-executor": BASE + 3},
          {"MINILAMBDA_ASYNC_CONSUMERS": "2"})
EXEC, BM = S.url("lambda-executor"), S.url("build-master")
HDR = "X-Minilambda-Namespace"
TAG = uuid.uuid4().hex[:6]
FN, NS_B = f"ver-{TAG}", f"vb-{TAG}"

APP = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"code": "%s", "color": os.environ.get("COLOR"), "mem": context.memory_limit_in_mb,
            "ver": context.function_version, "env_ver": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}
"""


def req(method, path, ns=None, body=None, headers=None, base=EXEC):
    """(status, parsed body, headers) of a call in namespace ns (None: default)."""
    h = {"Content-Type": "application/json"} if body is not None else {}
    if ns is not None:
        h[HDR] = ns
    h.update(headers or {})
    st, rh, raw = call(method, base + path, json.dumps(body).encode() if body is not None else None, h)
    try:
        return st, (json.loads(raw) if raw else None), rh
    except ValueError:
        return st, raw, rh


def code_of(letter):
    return base64.b64encode(make_zip({"app.py": APP % letter})).decode()


def invoke(q=None, ns=None, headers=None, event=None):
    path = f"/functions/{FN}/invoke" + (f"?qualifier={q}" if q is not None else "")
    return req("POST", path, ns, event or {}, headers)


def wait_active(ns=None, version=None, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        st, f, _ = req("GET", f"/functions/{FN}", ns)
        if st == 200 and f["state"] == "active" and (version is None or f["version"] == version) \
                and (f.get("last_build") or {}).get("status") in ("completed", None):
            return f
        time.sleep(0.2)
    return None


def err(r):
    return (r[1] or {}).get("error", {}).get("code") if isinstance(r[1], dict) else None


def setup():
    st, b, _ = req("POST", "/functions", None, {"name": FN, "runtime": "python3", "handler": "app.handler",
                                                "code_base64": code_of("A"), "env": {"COLOR": "red"}}, base=BM)
    S.check("function created", st == 202, (st, b))
    f = wait_active()
    return S.check("function active", f is not None, f)


def check_publish():
    st, v, _ = req("POST", f"/functions/{FN}/versions", None, {"description": "first"})
    S.check("publish: 201 version \"1\" of code revision 1", st == 201 and v["version"] == "1"
            and v["code_revision"] == 1 and v["memory_mb"] == 128 and v["description"] == "first"
            and v["env"] == {"COLOR": "***"}, (st, v))
    st2, v2, _ = req("POST", f"/functions/{FN}/versions")
    S.check("publish again with $LATEST unchanged returns version 1 (nothing created)",
            st2 == 201 and v2["version"] == "1" and psql(
                f"SELECT count(*) FROM published_versions p JOIN functions f ON f.id = p.function_id"
                f" WHERE f.name = '{FN}' AND f.namespace = 'default'") == "1", (st2, v2))
    r = req("POST", f"/functions/{FN}/versions", None, {"code_sha256": "0" * 64})
    S.check("publish with a stale code_sha256 is 412 precondition_failed", r[0] == 412 and err(r) == "precondition_failed", r[:2])
    sha = v["artifact"]["sha256"] if st == 201 else ""
    r = req("POST", f"/functions/{FN}/versions", None, {"code_sha256": sha})
    S.check("publish with the current code_sha256 works", r[0] == 201 and r[1]["version"] == "1", r[:2])
    st, _, _ = req("PUT", f"/functions/{FN}/code", None, {"code_base64": code_of("B")}, base=BM)
    r = req("POST", f"/functions/{FN}/versions")
    S.check("publish while a build is in progress is 409 not_active", st == 202 and r[0] == 409
            and err(r) == "not_active", (st, r[:2]))
    f = wait_active(version=2)
    S.check("new code B active as code revision 2", f is not None, f)
    st, p, _ = req("PATCH", f"/functions/{FN}", None, {"memory_mb": 256, "env": {"COLOR": "blue"}})
    S.check("PATCH memory and env of $LATEST", st == 200, (st, p))


def check_immutable():
    st, body, h = invoke()
    S.check("$LATEST runs code B with the new config", st == 200 and body == {"code": "B", "color": "blue", "mem": 256,
                                                               "ver": "$LATEST", "env_ver": "$LATEST"}
            and h.get("X-Executed-Version") == "$LATEST", (st, body, h.get("X-Executed-Version")))
    st, body, h = invoke("$LATEST")
    S.check("?qualifier=$LATEST is the same", st == 200 and body["code"] == "B" and h.get("X-Executed-Version") == "$LATEST", (st, body))
    st, body, h = invoke("1")
    S.check("version 1 keeps its code AND config after PUT code + PATCH", st == 200
            and body == {"code": "A", "color": "red", "mem": 128, "ver": "1", "env_ver": "1"} and h.get("X-Executed-Version") == "1"
            and h.get("X-Function-Version") == "1", (st, body, h.get("X-Executed-Version")))
    st, f, _ = req("GET", f"/functions/{FN}?qualifier=1")
    S.check("GET ?qualifier=1 shows version 1's configuration", st == 200 and f["memory_mb"] == 128
            and f["qualifier_version"] == "1" and f["version"] == 1 and f["env"] == {"COLOR": "***"}
            and f["name"] == FN, (st, f))
    st, f, _ = req("GET", f"/functions/{FN}")
    S.check("GET without qualifier is $LATEST as before", st == 200 and f["memory_mb"] == 256
            and "qualifier_version" not in f and f["version"] == 2, (st, f))
    st, v, _ = req("POST", f"/functions/{FN}/versions")
    S.check("publish of the changed $LATEST is version 2", st == 201 and v["version"] == "2" and v["code_revision"] == 2
            and v["memory_mb"] == 256, (st, v))
    st, l1, _ = req("GET", f"/functions/{FN}/versions?limit=2")
    st2, l2, _ = req("GET", f"/functions/{FN}/versions?limit=2&cursor={(l1 or {}).get('next_cursor')}")
    got = [x["version"] for x in (l1 or {}).get("versions", []) + (l2 or {}).get("versions", [])]
    S.check("version list: $LATEST first, then ascending, paginated", st == st2 == 200
            and got == ["$LATEST", "1", "2"] and l2["next_cursor"] is None, (l1, l2))
    st, d, _ = req("GET", f"/functions/{FN}/versions/1")
    st2, dl, _ = req("GET", f"/functions/{FN}/versions/$LATEST")
    S.check("GET one version and $LATEST", st == st2 == 200 and d["version"] == "1" and d["code_revision"] == 1
            and dl["version"] == "$LATEST" and dl["code_revision"] == 2, (d, dl))
    vers = [d, dl] + (l1 or {}).get("versions", []) + (l2 or {}).get("versions", [])
    S.check("every version document names the interpreter it runs on (runtime_version)",
            all(isinstance(x.get("runtime_version"), str) and x["runtime_version"] for x in vers),
            [x.get("runtime_version") for x in vers])
    r = req("GET", f"/functions/{FN}/versions/9")
    S.check("GET a version that does not exist is 404", r[0] == 404, r[:2])


def check_qualifiers():
    for q in ("9", "nope", "bad.name", "0"):
        r = invoke(q)
        S.check(f"unknown qualifier {q!r} is 404 qualifier_not_found (no fallback)", r[0] == 404
                and err(r) == "qualifier_not_found", r[:2])
    r = req("GET", f"/functions/{FN}?qualifier=nope")
    S.check("GET with an unknown qualifier is 404 qualifier_not_found", r[0] == 404 and err(r) == "qualifier_not_found", r[:2])
    for q, want in (("9", 404), ("nope", 404)):
        r = invoke(q, headers={"X-Invocation-Type": "DryRun"})
        S.check(f"DryRun with unknown qualifier {q!r} is 404", r[0] == want, r[:2])


def check_aliases():
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/live", None, {"version": "1", "description": "prod"})
    S.check("create alias live -> 1 (201)", st == 201 and a["version"] == "1" and a["routing"] == {}
            and a["name"] == "live", (st, a))
    st, body, h = invoke("live")
    S.check("invoke through live runs version 1", st == 200 and body["code"] == "A" and h.get("X-Executed-Version") == "1", (st, body))
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/live", None, {"version": "2"})
    st2, body, h = invoke("live")
    S.check("update live -> 2 (200, description kept) runs version 2", st == 200 and a["version"] == "2"
            and a["description"] == "prod" and st2 == 200 and body["code"] == "B" and body["mem"] == 256
            and h.get("X-Executed-Version") == "2", (st, a, body))
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/live", None, {"version": "1"})
    st2, body, h = invoke("live")
    S.check("rollback is one alias update", st == 200 and st2 == 200 and body["code"] == "A"
            and h.get("X-Executed-Version") == "1", (st, body))
    st, f, _ = req("GET", f"/functions/{FN}?qualifier=live")
    S.check("GET ?qualifier=live shows the alias's version", st == 200 and f["qualifier_version"] == "1"
            and f["memory_mb"] == 128, (st, f))
    cases = [({"version": "$LATEST", "routing": {"2": 0.1}}, 400), ({"version": "1", "routing": {"1": 0.1}}, 400),
             ({"version": "1", "routing": {"2": 1.0}}, 400), ({"version": "1", "routing": {"2": 0.1, "3": 0.1}}, 400),
             ({"version": "1", "routing": {"$LATEST": 0.1}}, 400), ({"version": "7"}, 404), ({"version": "x"}, 400),
             ({"description": "no version"}, 400)]
    bad = [(b, want, r[0]) for b, want in cases if (r := req("PUT", f"/functions/{FN}/aliases/other", None, b))[0] != want]
    S.check("invalid alias bodies are refused (400, 404 for an unpublished version)", not bad, bad)
    r = req("PUT", f"/functions/{FN}/aliases/123", None, {"version": "1"})
    S.check("an all-digit alias name is 400", r[0] == 400, r[:2])
    r = req("PUT", f"/functions/{FN}/aliases/live", None, {"version": "2"}, {"If-None-Match": "*"})
    S.check("If-None-Match: * on an existing alias is 409 alias_exists", r[0] == 409 and err(r) == "alias_exists", r[:2])
    r = req("PUT", f"/functions/{FN}/aliases/ghost", None, {"version": "2"}, {"If-Match": "*"})
    S.check("If-Match: * on a missing alias is 404 alias_not_found", r[0] == 404 and err(r) == "alias_not_found", r[:2])
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/latest", None, {"version": "$LATEST"})
    st2, body, h = invoke("latest")
    S.check("an alias of $LATEST runs $LATEST", st == 201 and a["version"] == "$LATEST" and body["code"] == "B"
            and h.get("X-Executed-Version") == "$LATEST", (st, a, body))
    r = req("DELETE", f"/functions/{FN}/versions/1")
    S.check("deleting a version an alias routes to is 409 version_in_use", r[0] == 409 and err(r) == "version_in_use", r[:2])
    r = req("DELETE", f"/functions/{FN}/versions/$LATEST")
    S.check("deleting $LATEST is 400", r[0] == 400, r[:2])
    try:
        psql(f"DELETE FROM published_versions p USING functions f WHERE f.id = p.function_id AND f.name = '{FN}'"
             f" AND f.namespace = 'default' AND p.version = 1")
        sql_refused = False
    except Exception:
        sql_refused = True
    S.check("... and SQL refuses it too (foreign key)", sql_refused)
    st, l, _ = req("GET", f"/functions/{FN}/aliases?limit=1")
    st2, l2, _ = req("GET", f"/functions/{FN}/aliases?limit=5&cursor={(l or {}).get('next_cursor')}")
    names = [x["name"] for x in (l or {}).get("aliases", []) + (l2 or {}).get("aliases", [])]
    S.check("alias list by name, paginated", st == st2 == 200 and names == ["latest", "live"], (l, l2))


def weighted_run(n, threads=8):
    """n invocations through alias canary on keep-alive connections; {executed version: count}."""
    host, port = EXEC.split("//")[1].split(":")

    def worker(share):
        c, mine = http.client.HTTPConnection(host, int(port), timeout=60), collections.Counter()
        for _ in range(share):
            c.request("POST", f"/functions/{FN}/invoke?qualifier=canary", body=b"{}",
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            mine[r.getheader("X-Executed-Version") if r.status == 200 else f"http {r.status}"] += 1
        c.close()
        return mine

    shares = [n // threads + (i < n % threads) for i in range(threads)]
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return dict(sum(ex.map(worker, shares), collections.Counter()))


def check_weighted():
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/canary", None, {"version": "1", "routing": {"2": 0.3}})
    S.check("weighted alias canary: 1 with 30 % to 2", st == 201 and a["routing"] == {"2": 0.3}, (st, a))
    t0 = time.time()
    counts = weighted_run(10000)
    share = counts.get("2", 0) / 10000
    print(f"# 10,000 invocations through canary in {time.time() - t0:.1f} s: {counts}", flush=True)
    S.check("10,000 invocations split within +-2 % of the weights", sum(counts.get(k, 0) for k in ("1", "2")) == 10000
            and abs(share - 0.3) <= 0.02, counts)
    r = req("DELETE", f"/functions/{FN}/versions/2")
    S.check("deleting the routing version is 409 too", r[0] == 409 and err(r) == "version_in_use", r[:2])
    st, a, _ = req("PUT", f"/functions/{FN}/aliases/canary", None, {"routing": None})
    counts = weighted_run(200, threads=2)
    S.check("routing null clears the split", st == 200 and a["routing"] == {} and counts == {"1": 200}, (st, a, counts))


def scans(table):
    return int(psql(f"SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                    f" WHERE relname = '{table}'") or 0)


def check_cache():
    """Warm invokes through an alias read neither table each time: Postgres' own scan counters
    (backends publish them within 10 s, hence the waits) move by the cache misses only."""
    host, port = EXEC.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    invoke("live")
    time.sleep(11)
    a0, p0 = scans("function_aliases"), scans("published_versions")
    t0, ok = time.time(), 0
    for _ in range(500):
        c.request("POST", f"/functions/{FN}/invoke?qualifier=live", body=b"{}", headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        ok += r.status == 200
    took = time.time() - t0
    time.sleep(11)
    da, dp = scans("function_aliases") - a0, scans("published_versions") - p0
    print(f"# 500 warm invokes through an alias in {took:.1f} s: {da} alias reads, {dp} version reads", flush=True)
    S.check("warm invokes through an alias are served from the process cache", ok == 500
            and da <= 2 + int(took / 2) * 2 and dp <= 2, (ok, da, dp, took))


def check_pools():
    invoke("1")
    st, _, _ = req("PATCH", f"/functions/{FN}", None, {"memory_mb": 192})
    _, body, h = invoke()
    _, body1, h1 = invoke("1")
    S.check("a change of $LATEST leaves version 1's instance warm", st == 200 and body["mem"] == 192
            and h.get("X-Cold-Start") == "true" and h1.get("X-Cold-Start") == "false" and body1["mem"] == 128,
            (body, h.get("X-Cold-Start"), h1.get("X-Cold-Start")))


def check_concurrency():
    """The function's concurrency is shared by all its versions (AWS reserved concurrency)."""
    st, _, _ = req("PATCH", f"/functions/{FN}", None, {"concurrency": 1})
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(invoke, "1", None, None, {"sleep": 1.5})
        time.sleep(0.6)
        st2, _, _ = invoke()
        st3 = slow.result()[0]
    st4, _, _ = invoke()
    S.check("concurrency 1: version 1 running, $LATEST is 429; free again after it",
            st == 200 and st2 == 429 and st3 == 200 and st4 == 200, (st, st2, st3, st4))
    req("PATCH", f"/functions/{FN}", None, {"concurrency": None})


def wait_inv(inv, ns=None, want=("succeeded",), timeout=60):
    end, rec = time.time() + timeout, None
    while time.time() < end:
        st, rec, _ = req("GET", f"/invocations/{inv}", ns)
        if st == 200 and rec["status"] in want:
            return rec
        time.sleep(0.2)
    return rec


def check_audit():
    _, _, h = invoke("live")
    st, rec, _ = req("GET", f"/invocations/{h.get('X-Invocation-Id')}")
    S.check("sync audit row: executed_version and alias", st == 200 and rec["executed_version"] == "1"
            and rec["alias"] == "live" and rec["version"] == 1, rec)
    _, _, h = invoke()
    st, rec, _ = req("GET", f"/invocations/{h.get('X-Invocation-Id')}")
    S.check("sync audit row without qualifier: $LATEST, no alias", st == 200 and rec["executed_version"] == "$LATEST"
            and rec["alias"] is None, rec)
    st, r, h = invoke("live", headers={"X-Invocation-Type": "Event"})
    rec = wait_inv(r["invocation_id"]) if st == 202 else None
    S.check("Event through an alias: the row has executed_version, alias, version and cold_start", st == 202
            and h.get("X-Executed-Version") == "1" and rec and rec["status"] == "succeeded"
            and rec["executed_version"] == "1" and rec["alias"] == "live" and rec["version"] == 1
            and rec["cold_start"] is not None, (st, rec))
    st, r, _ = invoke(headers={"X-Invocation-Type": "Event"})
    rec = wait_inv(r["invocation_id"]) if st == 202 else None
    S.check("Event without qualifier: $LATEST with version and cold_start", rec and rec["executed_version"] == "$LATEST"
            and rec["version"] == 2 and rec["cold_start"] is not None, rec)
    st, l, _ = req("GET", f"/functions/{FN}/invocations?limit=5")
    S.check("invocation lists carry executed_version", st == 200 and all("executed_version" in i for i in l["invocations"]), l)


def check_namespaces():
    st, _, _ = req("POST", "/functions", NS_B, {"name": FN, "runtime": "python3", "handler": "app.handler",
                                                "code_base64": code_of("Z")}, base=BM)
    f = wait_active(NS_B)
    S.check("the same name in another namespace", st == 202 and f is not None, (st, f))
    st, lv, _ = req("GET", f"/functions/{FN}/versions", NS_B)
    S.check("its versions are its own ($LATEST only)", st == 200 and [x["version"] for x in lv["versions"]] == ["$LATEST"], lv)
    r = invoke("live", NS_B)
    S.check("the other namespace's alias is unknown there", r[0] == 404 and err(r) == "qualifier_not_found", r[:2])
    st, v, _ = req("POST", f"/functions/{FN}/versions", NS_B)
    st2, a, _ = req("PUT", f"/functions/{FN}/aliases/live", NS_B, {"version": "1"})
    _, body, _ = invoke("live", NS_B)
    _, body_d, _ = invoke("live")
    S.check("each namespace's live runs its own version", st == 201 and st2 == 201 and body["code"] == "Z"
            and body_d["code"] == "A", (body, body_d))
    fid = req("GET", f"/functions/{FN}")[1]["id"]
    bad = []
    for m, p, b in (("GET", f"/functions/{fid}/versions", None), ("POST", f"/functions/{fid}/versions", None),
                    ("GET", f"/functions/{fid}/versions/1", None), ("DELETE", f"/functions/{fid}/versions/2", None),
                    ("GET", f"/functions/{fid}/aliases", None), ("GET", f"/functions/{fid}/aliases/live", None),
                    ("PUT", f"/functions/{fid}/aliases/live", {"version": "2"}),
                    ("DELETE", f"/functions/{fid}/aliases/canary", None),
                    ("POST", f"/functions/{fid}/invoke?qualifier=live", {}), ("GET", f"/functions/{fid}?qualifier=1", None)):
        r = req(m, p, NS_B, b)
        if r[0] != 404 or err(r) != "not_found":
            bad.append((m, p, r[0], err(r)))
    S.check("default's function by id from the other namespace is 404 not_found on every route", not bad, bad)
    st, a, _ = req("GET", f"/functions/{FN}/aliases/live")
    S.check("... and default's alias is unchanged", st == 200 and a["version"] == "1", a)


def check_delete():
    st, _, _ = req("DELETE", f"/functions/{FN}/aliases/latest")
    r = req("DELETE", f"/functions/{FN}/aliases/latest")
    S.check("delete an alias (204, then 404)", st == 204 and r[0] == 404, (st, r[:2]))
    req("PUT", f"/functions/{FN}/aliases/canary", None, {"version": "2"})
    st, _, _ = req("DELETE", f"/functions/{FN}/aliases/live")
    st2, _, _ = req("DELETE", f"/functions/{FN}/versions/1")
    r = invoke("1")
    S.check("a version no alias routes to can be deleted; invoking it is then 404", st == 204 and st2 == 204
            and r[0] == 404 and err(r) == "qualifier_not_found", (st, st2, r[:2]))
    st, _, _ = req("DELETE", f"/functions/{FN}", None, base=BM)
    time.sleep(1)
    left = psql("SELECT (SELECT count(*) FROM published_versions p WHERE NOT EXISTS (SELECT 1 FROM functions f"
                " WHERE f.id = p.function_id)) + (SELECT count(*) FROM function_aliases a WHERE NOT EXISTS"
                " (SELECT 1 FROM functions f WHERE f.id = a.function_id))")
    S.check("deleting the function deletes its versions and aliases", st in (202, 204) and left == "0", (st, left))


def main():
    try:
        S.start("build-worker")
        S.start("build-master")
        S.start("lambda-executor")
        if setup():
            for f in (check_publish, check_immutable, check_qualifiers, check_aliases, check_weighted,
                      check_cache, check_pools, check_concurrency, check_audit, check_namespaces, check_delete):
                f()
    finally:
        S.stop_all()
    print(f"# {S.failures} failure(s)")
    return 1 if S.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
