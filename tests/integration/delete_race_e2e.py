"""Delete is final (issue 15 item 1) on the test stack.

  1. DR_N (default 1000) interleavings driven at the lambda-executor directly (no builds):
     each function's queued/building/completed events and a DELETE by id are sent in a random
     order, the event just before the DELETE often concurrently with it, plus a later build
     (a PUT's) of the deleted function; a third of the names are re-created (a new function id)
     while the old function's late events keep arriving. Then: every event of a deleted
     function sent after the DELETE's 204 is 410 and none ever re-creates it (GET by id 404);
     a deleted name is 404 unless re-created, and a re-created one is the new function, active;
  2. through the full pipeline (build-master, build-worker, executor): POST → DELETE after
     0..1.5 s, and POST → DELETE → POST of the same name; after the builds settle the deleted
     one is 404 on the executor and the re-created one active with the new id;
  3. a PUT of new code while the function is marked deleting is 409 function_deleting; a mark
     older than 320 s (a build-master that died mid-delete) does not block it.
Prints "ok - ..." / "not ok - ..." and "# ..." notes with the measured numbers."""
import base64, concurrent.futures, datetime, hashlib, hmac, json, os, random, threading, time, uuid
from mlstack import Suite, call, make_zip, psql

PORTS = {"lambda-executor": 32181, "build-master": 32182, "build-worker": 32192}
N = int(os.environ.get("DR_N", "1000"))
THREADS = 12
S = Suite("test-delete-race", PORTS, {"MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS": "200,200,500,1000"})
APP = "def handler(event, context):\n    return {'v': %d}\n"


def note(msg):
    print("# " + msg, flush=True)


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event(bid, fid, status, name, at):
    doc = {"type": "build.status", "build_id": bid, "function_id": fid, "status": status, "error": None,
           "timestamp": iso(at), "function": {"name": name, "runtime": "python3", "handler": "app.handler",
                                              "config": {"memory_mb": 128, "timeout_s": 30, "env": {}}},
           "artifact": None}
    if status == "completed":
        doc["artifact"] = {"prefix": f"artifacts/{fid}/{bid}/", "sha256": hashlib.sha256(bid.encode()).hexdigest(),
                           "size_bytes": 1234, "files": 3}
    return doc


def deliver(doc):
    body = json.dumps(doc).encode()
    mid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
    key = base64.b64decode(S.secret[len("whsec_"):])
    sig = "v1," + base64.b64encode(hmac.new(key, f"{mid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    st, _, _ = call("POST", f"{S.url('lambda-executor')}/webhooks/build-status/{doc['build_id']}", body,
                    {"webhook-id": mid, "webhook-timestamp": ts, "webhook-signature": sig,
                     "Content-Type": "application/json"})
    return st


def get_fn(fn):
    st, _, b = call("GET", f"{S.url('lambda-executor')}/functions/{fn}")
    return st, (json.loads(b) if st == 200 else None)


def one_case(i, run, stats):
    rnd = random.Random(i)
    name, fid, bid = f"dr-{run}-{i}", str(uuid.uuid4()), str(uuid.uuid4())
    t0 = time.time()
    ops = [("ev", event(bid, fid, s, name, t0 + k * 0.001)) for k, s in enumerate(("queued", "building", "completed"))]
    ops.insert(rnd.randrange(len(ops) + 1), ("del", None))
    late_bid = str(uuid.uuid4())  # a later build of the deleted function (a PUT that raced the DELETE)
    ops.append(("ev", event(late_bid, fid, "completed", name, t0 + 1)))
    recreate = i % 3 == 0
    fid2, bid2 = str(uuid.uuid4()), str(uuid.uuid4())
    deleted, bad = False, []
    k = 0
    while k < len(ops):
        kind, doc = ops[k]
        if kind == "del":
            prev = None
            if k > 0 and rnd.random() < 0.5 and ops[k - 1][0] == "ev":
                prev = ops[k - 1][1]  # sent again, concurrently with the DELETE (a retry in flight)
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                f_ev = ex.submit(deliver, prev) if prev else None
                st, _, b = call("DELETE", f"{S.url('lambda-executor')}/functions/{fid}")
                if f_ev:
                    f_ev.result()
            if st != 204:
                bad.append(("delete", st, b[:100]))
            deleted = True
            if recreate:  # the name is free once the executor said 204: re-create it now, racing late events
                rest = ops[k + 1:]
                new = [("ev", event(bid2, fid2, s, name, time.time() + j * 0.001)) for j, s in enumerate(("queued", "completed"))]
                for op in new:
                    rest.insert(rnd.randrange(len(rest) + 1), op)
                ops = ops[:k + 1] + rest
        else:
            st = deliver(doc)
            if deleted and doc["function_id"] == fid and st != 410:
                bad.append(("event after delete", doc["status"], st))
            if doc["function_id"] == fid2 and st not in (200, 204):
                bad.append(("re-create event", doc["status"], st))
        k += 1
    if get_fn(fid)[0] != 404:
        bad.append(("resurrected by id", get_fn(fid)))
    st, body = get_fn(name)
    if recreate and not (st == 200 and body["id"] == fid2 and body["state"] == "active"):
        bad.append(("re-created name", st, body))
    if not recreate and st != 404:
        bad.append(("resurrected by name", st, body))
    if recreate:  # leave the shared test database as it was (other tests page through all functions)
        call("DELETE", f"{S.url('lambda-executor')}/functions/{fid2}")
    with stats["lock"]:
        stats["cases"] += 1
        stats["recreated"] += recreate
        if bad:
            stats["bad"].append((i, bad))


def direct(run):
    stats = {"lock": threading.Lock(), "cases": 0, "recreated": 0, "bad": []}
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
        for f in [ex.submit(one_case, i, run, stats) for i in range(N)]:
            f.result()
    note(f"direct: {stats['cases']} interleavings ({stats['recreated']} re-created) in {time.time() - t:.1f} s; "
         f"{len(stats['bad'])} wrong")
    S.check(f"{N} interleavings at the executor: no resurrection, late events 410, re-creates settle to the new function",
            stats["cases"] == N and not stats["bad"], stats["bad"][:3])


def bm(method, path, doc):
    return call(method, S.url("build-master") + path, json.dumps(doc).encode(), {"Content-Type": "application/json"})


def code(v):
    return base64.b64encode(make_zip({"app.py": APP % v})).decode()


def pipeline(run):
    cases, bad = [], []
    for i in range(6):
        name = f"drp-{run}-{i}"
        st, _, b = bm("POST", "/functions", {"name": name, "runtime": "python3", "handler": "app.handler",
                                              "code_base64": code(1)})
        fid = json.loads(b).get("function_id") if st == 202 else None
        time.sleep(0.3 * i)
        dst, _, db = call("DELETE", f"{S.url('build-master')}/functions/{name}")
        fid2 = None
        if i % 2 == 1:
            st2, _, b2 = bm("POST", "/functions", {"name": name, "runtime": "python3", "handler": "app.handler",
                                                    "code_base64": code(2)})
            fid2 = json.loads(b2).get("function_id") if st2 == 202 else "refused"
        cases.append((name, fid, fid2, st, dst))
    for name, fid, fid2, st, dst in cases:
        if st != 202 or dst != 204:
            bad.append((name, "create/delete", st, dst))
            continue
        if fid2:
            got = S.wait_state(name, ("active",), 60)
            if not got or got["id"] != fid2:
                bad.append((name, "re-created", got))
    time.sleep(4)  # late deliveries of the deleted builds
    for name, fid, fid2, st, dst in cases:
        if get_fn(fid)[0] != 404:
            bad.append((name, "deleted id came back"))
        s2, body = get_fn(name)
        if (fid2 is None and s2 != 404) or (fid2 and (s2 != 200 or body["id"] != fid2)):
            bad.append((name, "name state", s2, body))
    for name, fid, fid2, st, dst in cases:
        if fid2 and fid2 != "refused":
            call("DELETE", f"{S.url('build-master')}/functions/{name}")
    note(f"pipeline: {len(cases)} create/delete(/create) through build-master and build-worker; {len(bad)} wrong")
    S.check("through the pipeline: deleted stays deleted, re-created is the new function", not bad, bad[:3])


def deleting_mark(run):
    name = f"drm-{run}"
    st, _, b = bm("POST", "/functions", {"name": name, "runtime": "python3", "handler": "app.handler",
                                          "code_base64": code(1)})
    fid = json.loads(b)["function_id"]
    S.wait_state(name, ("active",), 60)
    psql(f"UPDATE build_functions SET deleting_at = now() WHERE id = '{fid}'", "MINILAMBDA_BUILD_DB_URL")
    st1, _, b1 = bm("PUT", f"/functions/{name}/code", {"code_base64": code(2)})
    psql(f"UPDATE build_functions SET deleting_at = now() - interval '400 seconds' WHERE id = '{fid}'",
         "MINILAMBDA_BUILD_DB_URL")
    st2, _, b2 = bm("PUT", f"/functions/{name}/code", {"code_base64": code(3)})
    S.check("a PUT while the function is being deleted is 409 function_deleting",
            st1 == 409 and b"function_deleting" in b1, (st1, b1[:200]))
    S.check("a stale deleting mark (> 320 s) does not block a PUT", st2 == 202, (st2, b2[:200]))
    st3, _, _ = call("DELETE", f"{S.url('build-master')}/functions/{name}")
    left = psql(f"SELECT deleted_at IS NOT NULL, deleting_at IS NULL FROM build_functions WHERE id = '{fid}'",
                "MINILAMBDA_BUILD_DB_URL")
    S.check("DELETE then frees the name and clears the mark", st3 == 204 and left == "t|t", (st3, left))


def main():
    run = base64.b32encode(os.urandom(5)).decode().lower()
    try:
        S.start("lambda-executor")
        direct(run)
        S.start("build-master")
        S.start("build-worker")
        pipeline(run)
        deleting_mark(run)
    finally:
        S.stop_all()
    raise SystemExit(1 if S.failures else 0)


main()
