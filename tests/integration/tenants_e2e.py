"""Tenant isolation matrix (issue 16 items 1-2; docs/tenants.md), end to end through the
gateway on the real daemons: two namespaces each own a function named `hello` (and one more
each), with builds, invocations, a schedule and a DLQ entry. A token of one namespace cannot
see, invoke, change, delete or read the builds/invocations/DLQ/schedules of the other's
objects, by name or by id, on the native API and on the AWS Invoke API with a per-namespace
SigV4 key: every such call is a 404 with the body a missing object gets (names do not leak),
and nothing of the other namespace changes. An admin token reaches both. Prints ok/not ok."""
import base64, json, os, shutil, subprocess, sys, tempfile, time, uuid

import mlstack
from mlstack import Suite, make_zip

BASE = 32500  # below the ephemeral range, clear of other tests' fixed ports
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
AWS_KEY, AWS_SECRET = "AKIDTENANTSE2E", base64.b64encode(os.urandom(24)).decode()
RUN = uuid.uuid4().hex[:6]
NS_A, NS_B = f"team-a-{RUN}", f"team-b-{RUN}"
S = Suite("test-tenants", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_AWS_ACCESS_KEY": AWS_KEY, "MINILAMBDA_AWS_SECRET_KEY": AWS_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
GW = S.url("gateway")
APP = """def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"team": "%s", "name": context.function_name}
"""
ALL = "functions:read functions:write functions:invoke"


def jwt(claims):
    return mlstack.jwt(JWT_SECRET, claims, "tenants-e2e")


def jcall(method, path, auth, doc=None, headers=None):
    return mlstack.jcall(GW, method, path, auth, doc, headers)


def shape(doc, asked):
    """A 404 body without what differs per request (its id, the name or id the caller asked
    for), to compare a foreign object's answer with a missing one's."""
    if not isinstance(doc, dict) or "error" not in doc:
        return doc
    e = dict(doc["error"])
    e.pop("request_id", None)
    return {k: (v.replace(asked, "<asked>") if isinstance(v, str) else v) for k, v in e.items()}


def create(auth, name, team):
    doc = {"name": name, "runtime": "python3", "handler": "app.handler",
           "code_base64": base64.b64encode(make_zip({"app.py": APP % team})).decode()}
    st, made = jcall("POST", "/functions", auth, doc)
    S.check(f"{team}: create {name} -> 202", st == 202, (st, made))
    st, f = jcall("GET", f"/functions/{name}?wait=active&timeout_s=60", auth)
    S.check(f"{team}: {name} becomes active in its namespace",
            st == 200 and f.get("state") == "active" and f.get("namespace") == team, (st, f))
    return made or {}


def objects(auth, team, fn):
    """A team's function `fn` with an invocation, a schedule and a DLQ entry: their ids."""
    st, r = jcall("POST", f"/functions/{fn}/invoke", auth, {"n": 1})
    S.check(f"{team}: invoke {fn} runs its own code", st == 200 and r.get("team") == team, (st, r))
    st, f = jcall("PATCH", f"/functions/{fn}", auth, {"max_retries": 0})
    S.check(f"{team}: PATCH max_retries 0", st == 200, (st, f))
    st, q = jcall("POST", f"/functions/{fn}/invoke", auth, {"fail": True}, {"X-Invocation-Type": "Event"})
    S.check(f"{team}: a failing async event is queued", st == 202, (st, q))
    st, sch = jcall("POST", f"/functions/{fn}/schedules", auth, {"cron": "0 0 1 1 *", "payload": {}, "enabled": True})
    S.check(f"{team}: a schedule", st == 201, (st, sch))
    dlq, end = [], time.time() + 60
    while time.time() < end and not dlq:
        st, d = jcall("GET", f"/functions/{fn}/dlq", auth)
        dlq = (d or {}).get("items") or []
        time.sleep(0.3)
    S.check(f"{team}: the failed event reaches the DLQ", bool(dlq), d)
    st, builds = jcall("GET", f"/functions/{fn}/builds", auth)
    blist = (builds or {}).get("builds") or []
    return {"invocation": (q or {}).get("invocation_id", ""), "schedule": (sch or {}).get("id", ""),
            "dlq": dlq[0].get("id", "") if dlq else "", "build": blist[0].get("build_id", "") if blist else ""}


def matrix(attacker, victim_fn, victim_id, ids, label):
    """Every route family from attacker's token at the victim's objects: 404 like a missing one."""
    missing_fn, missing_id = f"nosuch-{RUN}", str(uuid.uuid4())
    zip_b64 = base64.b64encode(make_zip({"app.py": APP % "evil"})).decode()
    calls = [
        ("GET function by name", "GET", "/functions/{fn}", None),
        ("GET function by id", "GET", "/functions/{id}", None),
        ("invoke by name", "POST", "/functions/{fn}/invoke", {}),
        ("invoke by id", "POST", "/functions/{id}/invoke", {}),
        ("PATCH", "PATCH", "/functions/{fn}", {"memory_mb": 256}),
        ("PUT code", "PUT", "/functions/{fn}/code", {"code_base64": zip_b64}),
        ("GET builds", "GET", "/functions/{fn}/builds", None),
        ("GET invocations", "GET", "/functions/{fn}/invocations", None),
        ("GET schedules", "GET", "/functions/{fn}/schedules", None),
        ("POST schedule", "POST", "/functions/{fn}/schedules", {"cron": "* * * * *", "payload": {}}),
        ("GET dlq", "GET", "/functions/{fn}/dlq", None),
        ("DELETE function", "DELETE", "/functions/{fn}", None),
    ]
    for what, method, path, body in calls:
        by_id = "{id}" in path
        st, doc = jcall(method, path.format(fn=victim_fn, id=victim_id), attacker, body)
        st2, doc2 = jcall(method, path.format(fn=missing_fn, id=missing_id), attacker, body)
        S.check(f"{label}: {what} of the other namespace's function -> 404 like a missing one",
                bool(victim_id) and st == 404 and st2 == 404 and
                shape(doc, victim_id if by_id else victim_fn) == shape(doc2, missing_id if by_id else missing_fn),
                (st, doc, st2, doc2))
    by_id = [("GET build", "GET", "/builds/{x}", ids["build"]),
             ("GET invocation", "GET", "/invocations/{x}", ids["invocation"]),
             ("DELETE schedule", "DELETE", f"/functions/{victim_fn}/schedules/{{x}}", ids["schedule"]),
             ("replay DLQ entry", "POST", "/dlq/{x}/replay", ids["dlq"]),
             ("discard DLQ entry", "DELETE", "/dlq/{x}", ids["dlq"])]
    for what, method, path, oid in by_id:
        other = str(uuid.uuid4())
        st, doc = jcall(method, path.format(x=oid), attacker, {} if method == "POST" else None)
        st2, doc2 = jcall(method, path.format(x=other), attacker, {} if method == "POST" else None)
        S.check(f"{label}: {what} of the other namespace -> 404 like a missing one",
                bool(oid) and st == 404 and st2 == 404 and shape(doc, oid) == shape(doc2, other),
                (oid, st, doc, st2, doc2))


def unchanged(owner, fn, ids, team):
    st, f = jcall("GET", f"/functions/{fn}", owner)
    S.check(f"{team}: its function survived the other namespace's attempts unchanged",
            st == 200 and f.get("memory_mb") == 128 and f.get("version") == 1, (st, f))
    st, r = jcall("POST", f"/functions/{fn}/invoke", owner, {})
    S.check(f"{team}: ...still runs its own code", st == 200 and r.get("team") == team, (st, r))
    st, s = jcall("GET", f"/functions/{fn}/schedules", owner)
    S.check(f"{team}: ...its schedule is still there", st == 200 and ids["schedule"] in json.dumps(s), (st, s))
    st, d = jcall("GET", f"/functions/{fn}/dlq", owner)
    S.check(f"{team}: ...its DLQ entry is still there", st == 200 and ids["dlq"] in json.dumps(d), (st, d))
    st, i = jcall("GET", f"/invocations/{ids['invocation']}", owner)
    S.check(f"{team}: ...its invocation record reads", st == 200, (st, i))


def lists(a, b, a_names, b_names):
    st, la = jcall("GET", "/functions?limit=100", a)
    names = {f["name"] for f in (la or {}).get("functions", [])}
    S.check("list: team A sees exactly its own functions", st == 200 and names == set(a_names), (st, names))
    st, lb = jcall("GET", "/functions?limit=100", b)
    names = {f["name"] for f in (lb or {}).get("functions", [])}
    S.check("list: team B sees exactly its own functions", st == 200 and names == set(b_names), (st, names))


def namespace_choice(a, admin, b_only):
    st, doc = jcall("GET", f"/functions/{b_only}", a, headers={"X-Minilambda-Namespace": NS_B})
    S.check("a non-admin naming another namespace -> 403", st == 403, (st, doc))
    st, doc = jcall("GET", "/functions", jwt({"scope": ALL, "ns": "Bad_NS"}))
    S.check("a token with an invalid ns claim -> 401", st == 401, (st, doc))
    st, r = jcall("POST", "/functions/hello/invoke", admin, {}, {"X-Minilambda-Namespace": NS_B})
    S.check("admin acting in team B invokes B's hello", st == 200 and r.get("team") == NS_B, (st, r))
    st, r = jcall("POST", "/functions/hello/invoke", admin, {}, {"X-Minilambda-Namespace": NS_A})
    S.check("admin acting in team A invokes A's hello", st == 200 and r.get("team") == NS_A, (st, r))
    st, f = jcall("GET", f"/functions/{b_only}/dlq", admin, headers={"X-Minilambda-Namespace": NS_B})
    S.check("admin reads team B's DLQ", st == 200, (st, f))
    st, f = jcall("GET", "/functions/hello", admin)
    S.check("admin in its own namespace (default) does not see the teams' hello", st == 404, (st, f))


def aws_cli(key, secret, fn, home):
    out = os.path.join(home, "out.json")
    env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    p = subprocess.run(["/usr/bin/aws", "lambda", "invoke", "--endpoint-url", GW, "--cli-binary-format",
                        "raw-in-base64-out", "--function-name", fn, "--payload", "{}", out],
                       capture_output=True, text=True, env=env, timeout=90)
    payload = open(out).read() if p.returncode == 0 and os.path.exists(out) else ""
    if os.path.exists(out):
        os.unlink(out)
    return p.returncode, payload, p.stderr


def aws(admin, a_only, b_only):
    home = tempfile.mkdtemp(prefix="tenants-aws-")
    try:
        st, ka = jcall("POST", "/admin/keys", admin, {"namespace": NS_A, "scopes": "functions:invoke"})
        st2, kb = jcall("POST", "/admin/keys", admin, {"namespace": NS_B, "scopes": "functions:invoke"})
        S.check("admin creates a SigV4 key per namespace (secret shown once)",
                st == 201 and st2 == 201 and ka.get("secret_access_key") and kb.get("secret_access_key"), (st, ka, st2))
        if st != 201 or st2 != 201:
            return
        a = (ka["access_key_id"], ka["secret_access_key"])
        rc, payload, err = aws_cli(*a, "hello", home)
        S.check("AWS API: team A's key invokes hello -> A's code", rc == 0 and NS_A in payload, (rc, payload, err[-300:]))
        rc, payload, err = aws_cli(kb["access_key_id"], kb["secret_access_key"], "hello", home)
        S.check("AWS API: team B's key invokes hello -> B's code", rc == 0 and NS_B in payload, (rc, payload, err[-300:]))
        rc, payload, err = aws_cli(*a, b_only, home)
        S.check("AWS API: team A's key at B's function -> ResourceNotFoundException (404)",
                rc != 0 and "ResourceNotFoundException" in err, (rc, payload, err[-300:]))
        rc, payload, err = aws_cli(*a, a_only, home)
        S.check("AWS API: team A's key at its own other function works", rc == 0 and NS_A in payload, (rc, err[-300:]))
        st, lst = jcall("GET", f"/admin/keys?namespace={NS_A}", admin)
        S.check("admin lists team A's keys, no secret in the list",
                st == 200 and a[0] in json.dumps(lst) and a[1] not in json.dumps(lst), (st, lst))
        st, _ = jcall("GET", "/admin/keys", jwt({"scope": ALL, "ns": NS_A}))
        S.check("a non-admin token cannot list keys -> 403", st == 403, st)
        st, d = jcall("POST", f"/admin/keys/{a[0]}/disable", admin, {})
        S.check("admin disables team A's key", st == 200, (st, d))
        end, rc = time.time() + 15, 0
        while time.time() < end and rc == 0:
            rc, payload, err = aws_cli(*a, "hello", home)
        S.check("a disabled key is refused within the cache's TTL", rc != 0, (rc, err[-200:]))
        rc, payload, err = aws_cli(AWS_KEY, AWS_SECRET, "hello", home)
        S.check("the operator's key (namespace default) does not reach the teams' hello",
                rc != 0 and "ResourceNotFoundException" in err, (rc, payload, err[-300:]))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main():
    t0 = time.time()
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        a, b = jwt({"scope": ALL, "ns": NS_A}), jwt({"scope": ALL, "ns": NS_B})
        admin = jwt({"scope": "admin"})
        a_only, b_only = f"a-only-{RUN}", f"b-only-{RUN}"
        ma = create(a, "hello", NS_A)
        mb = create(b, "hello", NS_B)
        S.check("the same name in two namespaces: two functions",
                ma and mb and ma.get("function_id") != mb.get("function_id"), (ma, mb))
        create(a, a_only, NS_A)
        create(b, b_only, NS_B)
        ids_b = objects(b, NS_B, b_only)
        ids_a = objects(a, NS_A, a_only)
        lists(a, b, ["hello", a_only], ["hello", b_only])
        b_id = (jcall("GET", f"/functions/{b_only}", b)[1] or {}).get("id", "")
        a_id = (jcall("GET", f"/functions/{a_only}", a)[1] or {}).get("id", "")
        matrix(a, b_only, b_id, ids_b, "A at B")
        matrix(b, a_only, a_id, ids_a, "B at A")
        unchanged(b, b_only, ids_b, NS_B)
        unchanged(a, a_only, ids_a, NS_A)
        namespace_choice(a, admin, b_only)
        aws(admin, a_only, b_only)
    finally:
        S.stop_all()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
