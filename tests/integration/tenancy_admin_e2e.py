"""The lambda-executor's admin API for tenants (docs/tenants.md, "Admin API in the executor"),
straight to the real executor on the test stack (mlstack adds the internal token):
namespaces create / list (paged) / get / PATCH upsert, a never-created name reads as the
configured defaults, bad input is a 4xx that changes nothing; access keys create (secret
shown once) / list and GET (never the secret) / the gateway's internal lookup (the secret,
the status) / disable / enable / rotate (new secret, old one gone) / delete (404 after);
admin scope refused on keys; no secret in clear in Postgres (pg_dump) nor in the service
log; the change counter; a bad default refuses to start. Ports: ML_PORT_BASE + 1950..1951.
Prints ok/not ok lines."""
import json, os, re, subprocess, sys, time, uuid

from mlstack import INTERNAL_HEADER, Suite, call, psql, scrape

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 1950  # clear of the stack's own ports
PORTS = {"lambda-executor": BASE, "lambda-executor-bad": BASE + 1}
S = Suite("test-tenancy-admin", PORTS, {"MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS": "7",
                                        "MINILAMBDA_NS_DEFAULT_MAX_CONCURRENCY": "",
                                        "MINILAMBDA_NS_DEFAULT_BUILDS_PER_MINUTE": "30"})
EX = S.url("lambda-executor")
RUN = uuid.uuid4().hex[:8]
NS_A, NS_B, NS_C = f"t-{RUN}-a", f"t-{RUN}-b", f"t-{RUN}-c"
DEFAULTS = {"max_functions": 7, "max_concurrency": None, "builds_per_minute": 30}
SECRETS = []  # every secret the API showed: none may appear in the database or the log


def jcall(method, path, doc=None, raw=None, headers=None):
    h = dict(headers or {})
    body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else None)
    if body is not None:
        h["Content-Type"] = "application/json"
    st, _, out = call(method, EX + path, body, h)
    try:
        return st, json.loads(out) if out else None, out
    except ValueError:
        return st, None, out


def code(r):
    return ((r or {}).get("error") or {}).get("code")


def ns_get(name):
    return jcall("GET", f"/admin/namespaces/{name}")[1]


def namespaces():
    st, r, body = jcall("GET", f"/admin/namespaces/default")
    S.check("GET /admin/namespaces/default: the migration's row, unlimited",
            st == 200 and r["created"] is True and r["quotas"] == dict.fromkeys(DEFAULTS), (st, body[:300]))
    st, r, body = jcall("GET", f"/admin/namespaces/{NS_A}")
    S.check("a valid name never created reads as the configured defaults, created false",
            st == 200 and r == {"name": NS_A, "quotas": DEFAULTS, "created": False}, (st, body[:300]))
    st, r, body = jcall("POST", "/admin/namespaces", {"name": NS_A, "quotas": {"max_functions": 3}})
    want = dict(DEFAULTS, max_functions=3)
    S.check("POST /admin/namespaces: 201, named quota set, the others from the defaults",
            st == 201 and r["name"] == NS_A and r["quotas"] == want and r["created"] is True
            and r["created_at"].endswith("Z"), (st, body[:300]))
    st, r, body = jcall("POST", "/admin/namespaces", {"name": NS_A})
    S.check("POST of an existing namespace: 409 conflict", st == 409 and code(r) == "conflict", (st, body[:300]))
    S.check("GET after create: the stored quotas", ns_get(NS_A)["quotas"] == want, ns_get(NS_A))
    st, r, body = jcall("PATCH", f"/admin/namespaces/{NS_A}", {"quotas": {"max_concurrency": 5}})
    want["max_concurrency"] = 5
    S.check("PATCH changes only the quota it names", st == 200 and r["quotas"] == want, (st, body[:300]))
    st, r, body = jcall("PATCH", f"/admin/namespaces/{NS_A}", {"quotas": {"max_functions": None}})
    want["max_functions"] = None
    S.check("PATCH null: unlimited", st == 200 and r["quotas"] == want, (st, body[:300]))
    st, r, body = jcall("PATCH", f"/admin/namespaces/{NS_B}", {"quotas": {"builds_per_minute": 2}})
    S.check("PATCH of a never-created name creates it (defaults for the rest)",
            st == 200 and r["created"] is True and r["quotas"] == dict(DEFAULTS, builds_per_minute=2),
            (st, body[:300]))
    seen, cursor, pages = [], None, 0
    while pages < 1000:
        st, r, body = jcall("GET", "/admin/namespaces?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        if st != 200:
            break
        seen += [n["name"] for n in r["namespaces"]]
        cursor, pages = r["next_cursor"], pages + 1
        if not cursor:
            break
    S.check("GET /admin/namespaces pages (limit=2, cursor) through every row once, in order, ours there",
            st == 200 and seen == sorted(set(seen)) and {NS_A, NS_B, "default"} <= set(seen),
            (st, pages, [n for n in seen if RUN in n]))


def namespace_bad_input():
    before_a = ns_get(NS_A)
    bad_create = [
        ("not JSON", None, b"{nope"), ("an array", [], None), ("no name", {"quotas": {}}, None),
        ("upper case name", {"name": "Team-A"}, None), ("name starting with -", {"name": "-x"}, None),
        ("name of 64 chars", {"name": "a" * 64}, None), ("name not a string", {"name": 5}, None),
        ("unknown member", {"name": NS_C, "owner": "x"}, None),
        ("quotas not an object", {"name": NS_C, "quotas": [1]}, None),
        ("unknown quota", {"name": NS_C, "quotas": {"max_memory": 1}}, None),
        ("quota 0", {"name": NS_C, "quotas": {"max_functions": 0}}, None),
        ("quota -1", {"name": NS_C, "quotas": {"max_functions": -1}}, None),
        ("quota 1.5", {"name": NS_C, "quotas": {"max_concurrency": 1.5}}, None),
        ("quota as a string", {"name": NS_C, "quotas": {"max_concurrency": "3"}}, None),
        ("quota true", {"name": NS_C, "quotas": {"builds_per_minute": True}}, None),
        ("quota 2^31", {"name": NS_C, "quotas": {"builds_per_minute": 2 ** 31}}, None),
        ("duplicate member", None, ('{"name":"%s","name":"%s"}' % (NS_C, NS_C)).encode()),
    ]
    for what, doc, raw in bad_create:
        st, r, body = jcall("POST", "/admin/namespaces", doc, raw)
        S.check(f"POST /admin/namespaces, {what}: 400 with a JSON error", st == 400 and code(r), (st, body[:200]))
    S.check("none of them created anything", ns_get(NS_C)["created"] is False, ns_get(NS_C))
    for what, doc in [("quota 0", {"quotas": {"max_functions": 0}}), ("no quotas", {}),
                      ("unknown member", {"quotas": {}, "name": "x"}), ("quotas null", {"quotas": None})]:
        st, r, body = jcall("PATCH", f"/admin/namespaces/{NS_A}", doc)
        S.check(f"PATCH, {what}: 400", st == 400 and code(r), (st, body[:200]))
    st, r, body = jcall("PATCH", f"/admin/namespaces/{NS_C}", {"quotas": {"max_functions": "x"}})
    S.check("a refused PATCH of a never-created name creates nothing", st == 400 and not ns_get(NS_C)["created"],
            (st, body[:200]))
    S.check("NS_A unchanged after the refused PATCHes (updated_at too)", ns_get(NS_A) == before_a,
            (ns_get(NS_A), before_a))
    for path in ("/admin/namespaces/Team-A", "/admin/namespaces/a_b"):
        st, r, body = jcall("GET", path)
        S.check(f"GET {path}: 400 invalid_namespace", st == 400 and code(r) == "invalid_namespace", (st, body[:200]))
    for q in ("limit=0", "limit=1001", "limit=x", "cursor="):
        st, r, body = jcall("GET", "/admin/namespaces?" + q)
        S.check(f"GET /admin/namespaces?{q}: 400", st == 400 and code(r), (st, body[:200]))


def lookup(kid):
    return jcall("GET", f"/internal/keys/{kid}")


def keys_count(ns):
    st, r, _ = jcall("GET", f"/admin/keys?namespace={ns}&limit=1000")
    return len(r["keys"]) if st == 200 else -1


def keys():
    st, r, body = jcall("POST", "/admin/keys", {"namespace": NS_A, "scopes": "functions:invoke  functions:read "
                                                "functions:invoke", "description": "ci key"})
    ok = st == 201 and isinstance(r, dict)
    S.check("POST /admin/keys: 201", ok, (st, body[:300]))
    if not ok:
        return None
    kid, secret = r["access_key_id"], r.get("secret_access_key", "")
    SECRETS.append(secret)
    S.check("the id looks like AWS's (AKML + 16 of [A-Z2-7])", re.fullmatch(r"AKML[A-Z2-7]{16}", kid), kid)
    S.check("the secret is 40 of [A-Za-z0-9], shown in the 201", re.fullmatch(r"[A-Za-z0-9]{40}", secret), len(secret))
    S.check("the 201 has namespace, canonical scopes, status active, created_at",
            r["namespace"] == NS_A and r["scopes"] == "functions:read functions:invoke" and r["status"] == "active"
            and r["created_at"].endswith("Z") and r["description"] == "ci key", r)
    st, g, body = jcall("GET", f"/admin/keys/{kid}")
    S.check("GET /admin/keys/{id}: the key, no secret", st == 200 and g["access_key_id"] == kid
            and "secret_access_key" not in g and secret.encode() not in body, (st, body[:300]))
    st, lst, body = jcall("GET", f"/admin/keys?namespace={NS_A}")
    S.check("GET /admin/keys?namespace=: lists it, never a secret",
            st == 200 and [k["access_key_id"] for k in lst["keys"]] == [kid] and secret.encode() not in body
            and all("secret_access_key" not in k for k in lst["keys"]), (st, body[:300]))
    st, lst, body = jcall("GET", f"/admin/keys?namespace={NS_B}")
    S.check("the namespace filter: another namespace's list does not show it",
            st == 200 and kid not in body.decode(), (st, body[:300]))
    st, lk, body = lookup(kid)
    S.check("GET /internal/keys/{id}: the secret, namespace, scopes, status",
            st == 200 and lk == {"access_key_id": kid, "secret_access_key": secret, "namespace": NS_A,
                                 "scopes": "functions:read functions:invoke", "status": "active"}, (st, body[:300]))
    st, _, body = call("GET", f"{EX}/internal/keys/{kid}", None, {INTERNAL_HEADER: None})
    S.check("the lookup without the internal token: 401", st == 401 and secret.encode() not in body, (st, body[:200]))
    n = keys_count(NS_A)
    for method, path, doc in [("POST", "/admin/keys", {"namespace": NS_A, "scopes": "functions:read"}),
                              ("GET", "/admin/namespaces", None), ("PATCH", f"/admin/namespaces/{NS_C}", {"quotas": {}})]:
        st, _, body = call(method, EX + path, json.dumps(doc).encode() if doc else None,
                           {INTERNAL_HEADER: None, "Content-Type": "application/json"})
        S.check(f"{method} {path} without the internal token: 401", st == 401, (st, body[:200]))
    S.check("... and they changed nothing", keys_count(NS_A) == n and not ns_get(NS_C)["created"])
    return kid, secret


def lookup_latency(kid):
    """Prints the internal lookup's latency (the gateway's cache miss), 200 calls in a row."""
    ms = []
    for _ in range(200):
        t = time.perf_counter()
        lookup(kid)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    print(f"# GET /internal/keys/{{id}}: p50 {ms[100]:.2f} ms, p99 {ms[198]:.2f} ms (200 calls, new connection each)",
          flush=True)


def key_lifecycle(kid, secret):
    st, r, body = jcall("POST", f"/admin/keys/{kid}/disable")
    S.check("disable: 200 status disabled", st == 200 and r["status"] == "disabled" and secret.encode() not in body,
            (st, body[:300]))
    S.check("the lookup says disabled", lookup(kid)[1].get("status") == "disabled", lookup(kid)[2][:200])
    st, r, body = jcall("POST", f"/admin/keys/{kid}/enable")
    S.check("enable: 200 status active", st == 200 and r["status"] == "active", (st, body[:300]))
    S.check("the lookup says active", lookup(kid)[1].get("status") == "active", lookup(kid)[2][:200])
    st, r, body = jcall("POST", f"/admin/keys/{kid}/rotate")
    new = (r or {}).get("secret_access_key", "")
    SECRETS.append(new)
    S.check("rotate: 200 with a new 40-character secret and rotated_at",
            st == 200 and re.fullmatch(r"[A-Za-z0-9]{40}", new) and new != secret and r["rotated_at"], (st, body[:300]))
    st, lk, body = lookup(kid)
    S.check("the lookup returns the new secret, the old one is gone",
            st == 200 and lk["secret_access_key"] == new and secret.encode() not in body, (st, body[:200]))
    sealed = psql(f"select secret_sealed from access_keys where access_key_id = '{kid}'")
    S.check("access_keys.secret_sealed is sealed (enc:v1:)", sealed.startswith("enc:v1:"), sealed[:20])
    return new


def key_bad_input():
    before = keys_count(NS_A)
    bad = [("scope admin", {"namespace": NS_A, "scopes": "admin"}),
           ("admin among others", {"namespace": NS_A, "scopes": "functions:read admin"}),
           ("unknown scope", {"namespace": NS_A, "scopes": "functions:delete"}),
           ("empty scopes", {"namespace": NS_A, "scopes": "  "}),
           ("scopes not a string", {"namespace": NS_A, "scopes": ["functions:read"]}),
           ("no namespace", {"scopes": "functions:read"}), ("no scopes", {"namespace": NS_A}),
           ("invalid namespace", {"namespace": "Team_A", "scopes": "functions:read"}),
           ("unknown member", {"namespace": NS_A, "scopes": "functions:read", "secret_access_key": "x" * 40}),
           ("description too long", {"namespace": NS_A, "scopes": "functions:read", "description": "d" * 257}),
           ("description not a string", {"namespace": NS_A, "scopes": "functions:read", "description": 1}),
           ("not an object", "functions:read")]
    for what, doc in bad:
        st, r, body = jcall("POST", "/admin/keys", doc)
        S.check(f"POST /admin/keys, {what}: 400", st == 400 and code(r), (st, body[:200]))
    st, r, body = jcall("POST", "/admin/keys", {"namespace": NS_A, "scopes": "admin"})
    S.check("the admin refusal says why", "admin" in (r or {}).get("error", {}).get("message", ""), body[:200])
    S.check("no refused create made a key", keys_count(NS_A) == before, (keys_count(NS_A), before))
    for method, path in [("GET", "/admin/keys/AKMLAAAAAAAAAAAAAAAA"), ("GET", "/admin/keys/nope"),
                         ("POST", "/admin/keys/AKMLAAAAAAAAAAAAAAAA/rotate"),
                         ("POST", "/admin/keys/AKMLAAAAAAAAAAAAAAAA/disable"),
                         ("DELETE", "/admin/keys/AKMLAAAAAAAAAAAAAAAA"), ("GET", "/internal/keys/AKMLAAAAAAAAAAAAAAAA"),
                         ("GET", "/internal/keys/akmlaaaaaaaaaaaaaaaa")]:
        st, r, body = jcall(method, path)
        S.check(f"{method} {path}: 404 not_found", st == 404 and code(r) == "not_found", (st, body[:200]))
    for q in ("namespace=Bad", "limit=0", "cursor=xyz"):
        st, r, body = jcall("GET", "/admin/keys?" + q)
        S.check(f"GET /admin/keys?{q}: 400", st == 400 and code(r), (st, body[:200]))


def key_delete(kid):
    st, _, body = jcall("DELETE", f"/admin/keys/{kid}")
    S.check("DELETE /admin/keys/{id}: 204", st == 204, (st, body[:200]))
    for path in (f"/admin/keys/{kid}", f"/internal/keys/{kid}"):
        st, r, body = jcall("GET", path)
        S.check(f"after delete, GET {path.split(kid)[0]}{{id}}: 404", st == 404, (st, body[:200]))
    st, _, _ = jcall("DELETE", f"/admin/keys/{kid}")
    S.check("a second DELETE: 404", st == 404, st)


def paging():
    made = []
    for _ in range(3):
        st, r, _ = jcall("POST", "/admin/keys", {"namespace": NS_B, "scopes": "functions:read"})
        if st == 201:
            made.append(r["access_key_id"])
            SECRETS.append(r["secret_access_key"])
    got, cursor = [], None
    for _ in range(10):
        st, r, body = jcall("GET", f"/admin/keys?namespace={NS_B}&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        if st != 200:
            break
        got += [k["access_key_id"] for k in r["keys"]]
        cursor = r["next_cursor"]
        if not cursor:
            break
    S.check("GET /admin/keys pages (limit=2, cursor): each key once, in id order", got == sorted(made), (got, made))


def at_rest_and_logs():
    pg_dump = os.path.join(os.environ.get("ML_STACK_PG_BIN", "/usr/bin"), "pg_dump")
    out = subprocess.run([pg_dump, "--data-only", os.environ["MINILAMBDA_LAMBDA_DB_URL"]], capture_output=True,
                         text=True)
    S.check("pg_dump --data-only of lambda_service_db works", out.returncode == 0, out.stderr[:200])
    leaked = [s[:6] for s in SECRETS if s and s in out.stdout]
    S.check(f"no access key secret ({len(SECRETS)} shown) in clear in Postgres (pg_dump)",
            out.returncode == 0 and SECRETS and not leaked, leaked)
    with open(os.path.join(S.logs, "lambda-executor.log"), "rb") as fh:
        log = fh.read().decode(errors="replace")
    leaked = [s[:6] for s in SECRETS if s and s in log]
    S.check("no secret in the executor's log (which does log the key ids)",
            not leaked and RUN in log, leaked)


def metrics():
    values, _ = scrape(EX)
    want = ("namespace_create", "namespace_update", "key_create", "key_disable", "key_enable", "key_rotate",
            "key_delete")
    got = {a: values.get(f'minilambda_admin_changes_total{{action="{a}"}}', 0) for a in want}
    S.check("minilambda_admin_changes_total counts each action (refusals not counted)",
            got["namespace_create"] == 1 and got["namespace_update"] == 3 and got["key_create"] == 4
            and all(got[a] == 1 for a in want[3:]), got)


def bad_default():
    S.env["MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS"] = "0"
    open(os.path.join(S.logs, "lambda-executor-bad.log"), "wb").close()
    try:
        S.start("lambda-executor-bad", "lambda-executor")
        started = True
    except RuntimeError:
        started = False
    S.env["MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS"] = "7"
    S.check("MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS=0: the executor refuses to start", not started)
    with open(os.path.join(S.logs, "lambda-executor-bad.log"), "rb") as fh:
        S.check("... and names the setting", b"MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS must be" in fh.read())


def main():
    t0 = time.time()
    open(os.path.join(S.logs, "lambda-executor.log"), "wb").close()  # this run's log only
    try:
        S.start("lambda-executor")
        namespaces()
        namespace_bad_input()
        made = keys()
        if made:
            lookup_latency(made[0])
            new = key_lifecycle(*made)
            key_bad_input()
            paging()
            key_delete(made[0])
            metrics()
            S.check("the rotated secret is gone with the key", lookup(made[0])[0] == 404 and new)
        bad_default()
    finally:
        S.stop_all()
    at_rest_and_logs()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
