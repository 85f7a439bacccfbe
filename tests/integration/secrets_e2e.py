"""Secrets stay secret (issue 16, item 5; docs/secrets.md), end to end on the real daemons:
env values are write-only (GET through the gateway without functions:secrets, or straight
from the executor, shows names with "***"; a functions:secrets token sees the values; a
client cannot forge the gateway's reveal header), build-status webhooks and destination
deliveries carry no value, neither database holds one in clear (pg_dump of both), no
service log holds one, the sandbox still gets the plaintext, destinations are signed with
the function's own whsec_ secret, and webhook_url / on_success_url / on_failure_url that
the SSRF policy refuses are a 400 at create and PATCH. Prints ok/not ok lines."""
import base64, hashlib, hmac, http.server, json, os, subprocess, sys, threading, time, uuid

from mlstack import BIN, Suite, call, make_zip, psql

BASE = 32400  # below the ephemeral range (a client socket cannot hold it), clear of other tests
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3,
         "build-master-strict": BASE + 4, "lambda-executor-nokey": BASE + 5}
RECV_PORT = BASE + 9
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
S = Suite("test-secrets", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
GW, EX = S.url("gateway"), S.url("lambda-executor")
RECV = f"http://127.0.0.1:{RECV_PORT}"
RUN = uuid.uuid4().hex[:8]
# the values that must never show: each unique to this run
VAL_GW, VAL_DIRECT, VAL_PATCH = (f"pw-{w}-{uuid.uuid4().hex}" for w in ("gw", "direct", "patch"))
VAL_LEGACY = f"pw-legacy-{uuid.uuid4().hex}"  # written in clear as a row from before encryption
VALUES = (VAL_GW, VAL_DIRECT, VAL_PATCH, VAL_LEGACY)
APP = """import hashlib, os
def handler(event, context):
    return {"sha": hashlib.sha256(os.environ.get("DB_PASS", "").encode()).hexdigest(),
            "mode": os.environ.get("MODE")}
"""
received = []  # (path, headers with lower-case names, body)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def token(scope):
    return subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "secrets", "--scope", scope],
                          capture_output=True, text=True, check=True,
                          env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()


def jcall(method, url, doc=None, headers=None):
    h = dict(headers or {})
    if doc is not None:
        h["Content-Type"] = "application/json"
    st, _, body = call(method, url, json.dumps(doc).encode() if doc is not None else None, h)
    try:
        return st, json.loads(body) if body else None, body
    except ValueError:
        return st, None, body


def has_value(data):
    text = data if isinstance(data, str) else (data or b"").decode("utf-8", "replace")
    return [v[:10] for v in VALUES if v in text]


def verify(secret, h, body):
    key = base64.b64decode(secret[len("whsec_"):])
    msg = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(s == "v1," + want for s in h["webhook-signature"].split())


def wait_active(name, auth):
    st, f, _ = jcall("GET", f"{GW}/functions/{name}?wait=active&timeout_s=60", headers=auth)
    return f if st == 200 else None


def create(plain, secret):
    """Through the gateway and straight to the build-master; GETs with and without the scope."""
    doc = {"name": f"sec-gw-{RUN}", "runtime": "python3", "handler": "app.handler", "webhook_url": RECV + "/build",
           "code_base64": base64.b64encode(make_zip({"app.py": APP})).decode(),
           "env": {"DB_PASS": VAL_GW, "MODE": "m1"}}
    st, made, body = jcall("POST", f"{GW}/functions", doc, plain)
    S.check("create through the gateway: 202 with the function's whsec_ secret",
            st == 202 and made["webhook_secret"].startswith("whsec_"), (st, body[:200]))
    S.check("...and the 202 body carries no env value", not has_value(body), body[:300])
    direct = dict(doc, name=f"sec-direct-{RUN}", env={"DB_PASS": VAL_DIRECT})
    st, _, body = jcall("POST", S.url("build-master") + "/functions", direct)
    S.check("create straight on the build-master: 202", st == 202, (st, body[:200]))
    f = wait_active(doc["name"], plain)
    S.check("the function builds and becomes active", f and f["state"] == "active", f)
    S.check("GET through the gateway without functions:secrets: names only",
            f and f["env"] == {"DB_PASS": "***", "MODE": "***"}, f and f["env"])
    st, f, body = jcall("GET", f"{GW}/functions/{doc['name']}", headers=secret)
    S.check("GET with a functions:secrets token: the values",
            st == 200 and f["env"] == {"DB_PASS": VAL_GW, "MODE": "m1"}, (st, f and f.get("env")))
    forged = dict(plain, **{"X-Minilambda-Reveal-Secrets": "1"})
    st, f, body = jcall("GET", f"{GW}/functions/{doc['name']}", headers=forged)
    S.check("a client's own X-Minilambda-Reveal-Secrets is stripped by the gateway",
            st == 200 and f["env"]["DB_PASS"] == "***", (st, body[:300]))
    st, f, body = jcall("GET", f"{GW}/functions?limit=100", headers=plain)
    S.check("GET /functions (list) without the scope: no value", st == 200 and not has_value(body), has_value(body))
    f = S.wait_state(direct["name"])
    S.check("GET straight from the executor (no header): names only",
            f and f["env"] == {"DB_PASS": "***"}, f and f.get("env"))
    return doc["name"], direct["name"], made.get("webhook_secret", "")


def invoke_and_patch(name, plain, secret, whsec):
    st, r, body = jcall("POST", f"{GW}/functions/{name}/invoke", {}, plain)
    S.check("the sandbox still gets the plaintext env", st == 200 and r and
            r.get("sha") == hashlib.sha256(VAL_GW.encode()).hexdigest() and r.get("mode") == "m1", (st, body[:200]))
    st, f, body = jcall("PATCH", f"{GW}/functions/{name}",
                        {"env": {"DB_PASS": VAL_PATCH}, "on_success_url": RECV + "/dest"}, plain)
    S.check("PATCH env through the gateway: 200 showing names only",
            st == 200 and f["env"] == {"DB_PASS": "***"} and not has_value(body), (st, body[:300]))
    end, r = time.time() + 10, None
    while time.time() < end:  # other executors' caches see the change within their TTL
        st, r, body = jcall("POST", f"{GW}/functions/{name}/invoke", {}, plain)
        if r and r.get("sha") == hashlib.sha256(VAL_PATCH.encode()).hexdigest():
            break
        time.sleep(0.3)
    S.check("the patched value reaches the sandbox", r and r.get("sha") == hashlib.sha256(VAL_PATCH.encode()).hexdigest(),
            body[:200])
    st, f, _ = jcall("GET", f"{GW}/functions/{name}", headers=secret)
    S.check("the scope shows the patched value", st == 200 and f["env"] == {"DB_PASS": VAL_PATCH}, f and f.get("env"))
    st, r, body = jcall("POST", f"{GW}/functions/{name}/invoke", {"n": 1}, dict(plain, **{"X-Invocation-Type": "Event"}))
    S.check("an async invocation is accepted", st == 202, (st, body[:200]))
    end = time.time() + 30
    while time.time() < end and not [x for x in received if x[0] == "/dest"]:
        time.sleep(0.2)
    dest = [x for x in received if x[0] == "/dest"]
    S.check("the on_success destination arrives", bool(dest), [x[0] for x in received])
    if dest:
        S.check("the destination verifies with the function's own whsec_ secret",
                verify(whsec, dest[0][1], dest[0][2]), dest[0][1].get("webhook-signature"))
        S.check("...and not with the platform's internal secret", not verify(S.secret, dest[0][1], dest[0][2]))
        S.check("the destination body carries no env value", not has_value(dest[0][2]), dest[0][2][:300])


def ssrf(plain):
    code = base64.b64encode(make_zip({"app.py": APP})).decode()
    for url, what in (("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
                      ("http://10.1.2.3:8080/hook", "10.1.2.3"), ("http://[::ffff:169.254.169.254]/", "169.254")):
        st, r, body = jcall("POST", f"{GW}/functions", {"name": f"sec-ssrf-{uuid.uuid4().hex[:6]}", "runtime": "python3", "handler": "app.handler",
                                                         "webhook_url": url, "code_base64": code}, plain)
        err = (r or {}).get("error", {})
        S.check(f"create with webhook_url {url}: 400 invalid_url naming {what}",
                st == 400 and err.get("code") == "invalid_url" and what in err.get("message", "") and
                "webhook_url" in err.get("message", ""), (st, body[:300]))
    name = f"sec-gw-{RUN}"
    for field, url, what in (("on_success_url", "http://169.254.169.254/", "link-local"),
                             ("on_failure_url", "http://10.0.0.1/x", "private"),
                             ("on_failure_url", "http://192.168.1.1/x", "private")):
        st, r, body = jcall("PATCH", f"{GW}/functions/{name}", {field: url}, plain)
        err = (r or {}).get("error", {})
        S.check(f"PATCH {field} {url}: 400 invalid_url ({what})",
                st == 400 and err.get("code") == "invalid_url" and field in err.get("message", ""), (st, body[:300]))
    strict = S.url("build-master-strict") + "/functions"
    for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://127.5.5.5/x"):
        st, r, body = jcall("POST", strict, {"name": f"sec-lo-{uuid.uuid4().hex[:6]}", "runtime": "python3", "handler": "app.handler",
                                             "webhook_url": url, "code_base64": code})
        S.check(f"a build-master without MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK refuses {url}: 400 invalid_url",
                st == 400 and (r or {}).get("error", {}).get("code") == "invalid_url", (st, body[:300]))


def dumps_of_both():
    dumps = ""
    pg_dump = os.path.join(os.environ.get("ML_STACK_PG_BIN", "/usr/bin"), "pg_dump")
    for var in ("MINILAMBDA_BUILD_DB_URL", "MINILAMBDA_LAMBDA_DB_URL"):
        out = subprocess.run([pg_dump, "--data-only", os.environ[var]], capture_output=True, text=True)
        if out.returncode != 0:
            return "pg_dump failed: " + out.stderr[:200]
        dumps += out.stdout
    return dumps


def at_rest():
    dumps = dumps_of_both()
    S.check("pg_dump --data-only of both databases works", not dumps.startswith("pg_dump failed"), dumps[:200])
    S.check("no env value in clear in either database (pg_dump of both)", not has_value(dumps), has_value(dumps))
    env = psql(f"select env::text from functions where name = 'sec-gw-{RUN}'")
    S.check("functions.env holds sealed values with their key id", '"DB_PASS": "enc:v1:' in env, env[:80])
    bf = psql(f"select config->'env'->>'DB_PASS', webhook_secret_sealed from build_functions where name = 'sec-direct-{RUN}'",
              "MINILAMBDA_BUILD_DB_URL")
    S.check("build_functions.config env sealed, the whsec_ sealed beside it",
            bf.startswith("enc:v1:") and "|enc:v1:" in bf, bf[:80])


def kid(key_b64):
    return hashlib.sha256(b"minilambda-secretbox-kid:" + base64.b64decode(key_b64)).hexdigest()[:8]


def restart(name, **env):
    S.procs[name].terminate()
    S.procs[name].wait(60)
    S.start(name, **env)


def rotation(plain, secret):
    """A row from before encryption and a key rotation: restarted with a new key (the old one
    as MINILAMBDA_SECRETS_KEY_OLD), both services re-seal everything under the new key id."""
    old = os.environ["MINILAMBDA_SECRETS_KEY"]
    new = base64.b64encode(os.urandom(32)).decode()
    direct = f"sec-direct-{RUN}"
    psql(f"update functions set env = jsonb_build_object('DB_PASS', '{VAL_LEGACY}') where name = '{direct}'")
    psql(f"update build_functions set config = jsonb_set(config, '{{env}}', jsonb_build_object('DB_PASS',"
         f" '{VAL_LEGACY}')), webhook_secret_sealed = null where name = '{direct}'", "MINILAMBDA_BUILD_DB_URL")
    restart("lambda-executor", MINILAMBDA_SECRETS_KEY=new, MINILAMBDA_SECRETS_KEY_OLD=old)
    restart("build-master", MINILAMBDA_SECRETS_KEY=new, MINILAMBDA_SECRETS_KEY_OLD=old)
    like, mine = f"enc:v1:{kid(new)}:%", f"name like 'sec-%-{RUN}'"
    left = psql(f"select count(*) from functions, jsonb_each_text(env) e where {mine} and e.value not like '{like}'")
    S.check("after a restart with a new key, every functions.env value is sealed under the new key id", left == "0", left)
    left = psql(f"select count(*) from build_functions, jsonb_each_text(coalesce(config->'env', '{{}}')) e"
                f" where {mine} and e.value not like '{like}'", "MINILAMBDA_BUILD_DB_URL")
    nows = psql(f"select count(*) from build_functions where {mine} and (webhook_secret_sealed is null or"
                f" webhook_secret_sealed not like '{like}')", "MINILAMBDA_BUILD_DB_URL")
    S.check("...and every build_functions env value and sealed whsec_", left == "0" and nows == "0", (left, nows))
    end = time.time() + 15
    while True:
        st, f, _ = jcall("GET", f"{GW}/functions/{direct}", headers=secret)
        if st == 200 or time.time() > end:
            break
        time.sleep(0.5)
    S.check("the row written in clear reads back through the scope", st == 200 and f["env"] == {"DB_PASS": VAL_LEGACY},
            (st, f and f.get("env")))
    end = time.time() + 15
    while True:  # the gateway notices the restarted executor within its health interval
        st, r, body = jcall("POST", f"{GW}/functions/sec-gw-{RUN}/invoke", {}, plain)
        if st == 200 or time.time() > end:
            break
        time.sleep(0.5)
    S.check("a value sealed under the old key still reaches the sandbox after the rotation",
            st == 200 and r.get("sha") == hashlib.sha256(VAL_PATCH.encode()).hexdigest(), (st, body[:200]))
    S.check("the row written in clear is sealed on both sides (pg_dump)", not has_value(dumps_of_both()),
            has_value(dumps_of_both()))
    # back to the stack's key, so the tests after this one find every row readable
    restart("lambda-executor", MINILAMBDA_SECRETS_KEY=old, MINILAMBDA_SECRETS_KEY_OLD=new)
    restart("build-master", MINILAMBDA_SECRETS_KEY=old, MINILAMBDA_SECRETS_KEY_OLD=new)
    left = psql(f"select count(*) from functions, jsonb_each_text(env) e where e.value like 'enc:v1:{kid(new)}:%'")
    S.check("rotated back: nothing left under the temporary key", left == "0", left)
    try:
        S.start("lambda-executor-nokey", "lambda-executor", MINILAMBDA_SECRETS_KEY="", MINILAMBDA_SECRETS_KEY_OLD="")
        started = True
    except RuntimeError:
        started = False
    with open(os.path.join(S.logs, "lambda-executor-nokey.log")) as fh:
        why = fh.read()
    S.check("an executor without MINILAMBDA_SECRETS_KEY refuses to start, saying why",
            not started and "MINILAMBDA_SECRETS_KEY" in why, why[-300:])


def webhooks_and_logs():
    hooks = [x for x in received if x[0] == "/build"]
    S.check("build-status webhooks arrived (queued, building, completed)", len(hooks) >= 3, [x[0] for x in received])
    S.check("no build-status webhook body carries an env value", not any(has_value(x[2]) for x in hooks))
    shown = [json.loads(x[2])["function"]["config"]["env"] for x in hooks]
    S.check("build-status webhooks show env names only",
            all(set(e.values()) == {"***"} and "DB_PASS" in e for e in shown), shown)
    S.check("...and no sealed member (that copy is the executor's)",
            not any("sealed" in json.loads(x[2])["function"] for x in hooks))
    leaked = []
    for f in os.listdir(S.logs):
        if f.endswith(".log"):
            with open(os.path.join(S.logs, f), "rb") as fh:
                if has_value(fh.read()):
                    leaked.append(f)
    S.check("no service log holds an env value", not leaked, leaked)


def main():
    t0 = time.time()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", RECV_PORT), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        S.env["MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK"] = "false"  # a build-master with the default policy
        S.start("build-master-strict", "build-master")
        S.env["MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK"] = "true"
        plain = {"Authorization": "Bearer " + token("functions:read functions:write functions:invoke")}
        secret = {"Authorization": "Bearer " + token("functions:read functions:secrets")}
        name, _, whsec = create(plain, secret)
        invoke_and_patch(name, plain, secret, whsec)
        ssrf(plain)
        at_rest()
        rotation(plain, secret)
    finally:
        S.stop_all()
        srv.shutdown()
    webhooks_and_logs()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
