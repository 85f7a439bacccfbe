"""The gateway's part of tenants (docs/tenants.md "In the gateway").

A real gateway (with the test stack's Redis) in front of a stand-in upstream that plays both
the lambda-executor and the build-master: it records every request with its headers, serves
GET /internal/keys/{id} from a table of access keys and GET /admin/namespaces/{ns} from a
table of quotas (so the test decides what the executor says), and answers invokes (a
function named slow-* takes 1.5 s). Checks:
  - the namespace of a request: a JWT's ns claim (absent = default; invalid or not a string =
    401), sent upstream as X-Minilambda-Namespace on every proxied request and on the
    gateway's own function lookups; a client's copy is never forwarded as is; a non-admin
    naming another namespace gets 403, an admin may choose any (invalid = 400);
  - scope admin: /admin/* is forwarded for it and refused (403) for others; /internal/* is
    never routed; POST /admin/tokens mints a token that works and carries its namespace;
  - quotas: builds_per_minute (429 quota_exceeded with quota, limit, Retry-After; another
    namespace unaffected), max_concurrency on the native and AWS invoke routes (429 while the
    namespace's slot is taken, another namespace unaffected, free again after), max_functions
    passed to the build-master as X-Minilambda-Quota-Functions;
  - per-function rate limits are per namespace (hello of team A and of team B);
  - SigV4 per tenant: a key the executor knows works in its namespace and is looked up once
    per TTL; disabled -> refused within the 5 s TTL; rotated -> the old secret refused, the new
    one works; unknown -> refused; the operator's key from config still works (default).
Then, against the real lambda-executor (when it has the admin API): a namespace created and
its quotas set through the gateway, builds_per_minute enforced from them; an access key
created through the gateway authenticates on the AWS route in its namespace, is refused
within the TTL once disabled, and after a rotation only the new secret works.
Prints ok/not ok lines."""
import hashlib, hmac, http.client, http.server, json, os, socket, subprocess, threading, time, uuid
import base64, signal

from mlstack import BIN, INTERNAL_TOKEN, ROOT, Suite

SECRET = base64.b64encode(os.urandom(24)).decode()
AWS_KEY, AWS_SECRET = "AKIDTENANTSE2E", base64.b64encode(os.urandom(24)).decode()
RUN = uuid.uuid4().hex[:6]
NS_A, NS_B, NS_Q = f"ta-{RUN}", f"tb-{RUN}", f"tq-{RUN}"
LOGS = os.path.join(ROOT, ".run", "test-gateway-tenants")
HDR = "X-Minilambda-Namespace"
failures = 0

KEYS = {}      # access key id -> the executor's document
QUOTAS = {}    # namespace -> quotas
seen = []      # every request the stand-in received
lock = threading.Lock()


def check(name, cond, detail=""):
    global failures
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {str(detail)[:300]}"), flush=True)
    failures += 0 if cond else 1
    return cond


# ---------------------------------------------------------------- the stand-in upstream

class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, doc=None):
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # head and body in one write: two would meet Nagle and delayed ACKs (40 ms a call)
        self._headers_buffer.extend([b"\r\n", body])
        self.flush_headers()

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        path = self.path.split("?")[0]
        rec = {"method": self.command, "path": path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        if path != "/health":
            with lock:
                seen.append(rec)
        ns = self.headers.get(HDR)
        internal = self.headers.get("X-Minilambda-Internal") == INTERNAL_TOKEN
        parts = path.strip("/").split("/")
        if path == "/health":
            return self.reply(200, {"status": "ok"})
        if not internal:
            return self.reply(401, {"error": {"code": "unauthorized"}})
        if parts[:2] == ["internal", "keys"] and len(parts) == 3:
            doc = KEYS.get(parts[2])
            return self.reply(200, doc) if doc else self.reply(404, {"error": {"code": "not_found"}})
        if parts[:2] == ["admin", "namespaces"] and len(parts) == 3 and self.command == "GET":
            return self.reply(200, {"name": parts[2], "quotas": QUOTAS.get(parts[2], {}), "created": parts[2] in QUOTAS})
        if self.command == "GET" and len(parts) == 2 and parts[0] == "functions":
            return self.reply(200, {"function_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{parts[1]}")),
                                    "name": parts[1], "timeout_s": 3,
                                    "rate_limit": None if parts[1].startswith("rl-") else {"rps": 1000, "burst": 1000}})
        if self.command == "POST" and len(parts) == 3 and parts[2] == "invoke":
            if parts[1].startswith("slow-"):
                time.sleep(1.5)
            return self.reply(200, {"ns": ns, "fn": parts[1]})
        if self.command in ("POST", "PUT") and parts[0] == "functions":
            return self.reply(202, {"build_id": str(uuid.uuid4()), "ns": ns})
        return self.reply(200, {"ns": ns, "path": path})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def log_message(self, *a):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def requests_to(method, prefix):
    with lock:
        return [r for r in seen if r["method"] == method and r["path"].startswith(prefix)]


def last(method, path):
    got = requests_to(method, path)
    return got[-1] if got else {"headers": {}}


# ---------------------------------------------------------------- clients

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims):
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"Bearer {head}.{body}.{b64u(sig)}"


ALL = "functions:read functions:write functions:invoke"


def bearer(scope=ALL, sub="tenant-e2e", **extra):
    return jwt({"sub": sub, "scope": scope, "exp": int(time.time()) + 3600, **extra})


def request(port, method, path, body=None, headers=None, auth=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        doc = json.loads(data) if data else None
    except ValueError:
        doc = None
    return r.status, {k.lower(): v for k, v in r.getheaders()}, doc


def sigv4(port, path, body, key, secret):
    """AWS Signature V4 headers for POST path (the Lambda Invoke API), signed here."""
    amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    date, region, service = amz[:8], "us-east-1", "lambda"
    ph = hashlib.sha256(body).hexdigest()
    hdrs = {"host": f"127.0.0.1:{port}", "x-amz-content-sha256": ph, "x-amz-date": amz}
    signed = ";".join(sorted(hdrs))
    creq = "\n".join(["POST", path, "", "".join(f"{k}:{hdrs[k]}\n" for k in sorted(hdrs)), signed, ph])
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return {"X-Amz-Date": amz, "X-Amz-Content-Sha256": ph,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"}


def aws_invoke(port, fn, key, secret):
    path, body = f"/2015-03-31/functions/{fn}/invocations", b'{"x":1}'
    return request(port, "POST", path, body, sigv4(port, path, body, key, secret))


def metric(port, name, **labels):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_gateway(upstream_url):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ)
    env.update({"MINILAMBDA_GATEWAY_PORT": str(port), "MINILAMBDA_BIND_ADDR": "127.0.0.1",
                "MINILAMBDA_JWT_SECRET": SECRET, "MINILAMBDA_EXECUTOR_URLS": upstream_url,
                "MINILAMBDA_BUILD_MASTER_URLS": upstream_url,
                "MINILAMBDA_GATEWAY_HEALTH_INTERVAL_MS": "300",
                "MINILAMBDA_GATEWAY_INVOKE_TIMEOUT_MARGIN_S": "2",
                "MINILAMBDA_DEFAULT_RATE_LIMIT_RPS": "1", "MINILAMBDA_DEFAULT_RATE_LIMIT_BURST": "2",
                "MINILAMBDA_BUILD_RATE_LIMIT_PER_MIN": "1000", "MINILAMBDA_BUILD_RATE_LIMIT_BURST": "1000",
                "MINILAMBDA_AWS_ACCESS_KEY": AWS_KEY, "MINILAMBDA_AWS_SECRET_KEY": AWS_SECRET,
                "MINILAMBDA_HTTP_THREADS": "2"})
    os.makedirs(LOGS, exist_ok=True)
    log = open(os.path.join(LOGS, "gateway.log"), "ab")
    p = subprocess.Popen([os.path.join(BIN, "gateway")], env=env, stdout=log, stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                return port, p
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gateway did not become healthy")


# ---------------------------------------------------------------- checks

def namespaces(gw):
    st, _, _ = request(gw, "GET", "/functions", auth=bearer(ns=NS_A))
    check("a token's ns claim goes upstream as X-Minilambda-Namespace",
          st == 200 and last("GET", "/functions")["headers"].get(HDR.lower()) == NS_A, (st, last("GET", "/functions")))
    st, _, _ = request(gw, "GET", "/functions", auth=bearer())
    check("a token without ns acts in default", st == 200 and last("GET", "/functions")["headers"].get(HDR.lower()) == "default")
    for bad in ("Team-A", "-a", "", 5, None, ["a"]):
        st, _, doc = request(gw, "GET", "/functions", auth=bearer(ns=bad))
        check(f"ns claim {bad!r} is refused with 401", st == 401, (st, doc))
    n = len(requests_to("GET", "/functions"))
    st, _, doc = request(gw, "GET", "/functions", headers={HDR: NS_B}, auth=bearer(ns=NS_A))
    check("a non-admin naming another namespace gets 403 forbidden and nothing goes upstream",
          st == 403 and doc["error"]["code"] == "forbidden" and len(requests_to("GET", "/functions")) == n, (st, doc))
    st, _, _ = request(gw, "GET", "/functions", headers={HDR: NS_A}, auth=bearer(ns=NS_A))
    check("a non-admin naming its own namespace is fine", st == 200)
    st, _, _ = request(gw, "GET", "/functions", headers={HDR: NS_B}, auth=bearer("admin", ns="default"))
    check("an admin acts in the namespace it names", st == 200 and last("GET", "/functions")["headers"].get(HDR.lower()) == NS_B)
    st, _, _ = request(gw, "GET", "/functions", auth=bearer("admin"))
    check("an admin without the header acts in its own", st == 200 and last("GET", "/functions")["headers"].get(HDR.lower()) == "default")
    st, _, doc = request(gw, "GET", "/functions", headers={HDR: "Not Valid"}, auth=bearer("admin"))
    check("an admin naming an invalid namespace gets 400 invalid_namespace", st == 400 and doc["error"]["code"] == "invalid_namespace", (st, doc))
    st, _, _ = request(gw, "PATCH", f"/functions/f1", body={"memory_mb": 256}, auth=bearer(ns=NS_B))
    check("writes carry it too", st == 200 and last("PATCH", "/functions/f1")["headers"].get(HDR.lower()) == NS_B)
    st, _, _ = request(gw, "POST", "/functions/hello/invoke", body={}, auth=bearer(ns=NS_A))
    look = last("GET", "/functions/hello")["headers"].get(HDR.lower())
    check("an invoke and the gateway's own function lookup carry the namespace",
          st == 200 and look == NS_A and last("POST", "/functions/hello/invoke")["headers"].get(HDR.lower()) == NS_A, (st, look))
    lookups = len(requests_to("GET", "/functions/hello"))
    request(gw, "POST", "/functions/hello/invoke", body={}, auth=bearer(ns=NS_B))
    check("the function cache is per namespace (team B's hello is looked up, not team A's reused)",
          len(requests_to("GET", "/functions/hello")) == lookups + 1 and last("GET", "/functions/hello")["headers"].get(HDR.lower()) == NS_B)


def rate_limits(gw):
    """Default 1 rps burst 2 per function (rl-*; the others have 1000 rps): each namespace's
    function of the same name has its own bucket."""
    fn = f"rl-{RUN}"
    a = [request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=bearer(ns=NS_A))[0] for _ in range(3)]
    b = request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=bearer(ns=NS_B))[0]
    check("rate-limit buckets are per namespace (A throttled, B's same-named function is not)",
          a[:2] == [200, 200] and a[2] == 429 and b == 200, (a, b))
    check("throttles are counted by namespace", metric(gw, "minilambda_gateway_ratelimit_decisions_total",
                                                       namespace=NS_A, decision="throttled") >= 1)


def admin(gw):
    st, _, doc = request(gw, "GET", "/admin/namespaces", auth=bearer(ALL + " functions:secrets", ns=NS_A))
    check("/admin/* needs scope admin (403 for functions:*)", st == 403 and doc["error"]["code"] == "forbidden", (st, doc))
    for method, path, body in (("GET", "/admin/namespaces", None), ("GET", f"/admin/namespaces/{NS_A}", None),
                               ("PATCH", f"/admin/namespaces/{NS_A}", {"quotas": {}}), ("POST", "/admin/keys", {"namespace": NS_A}),
                               ("GET", "/admin/keys", None), ("POST", "/admin/keys/AKIAX/disable", None),
                               ("POST", "/admin/keys/AKIAX/enable", None), ("POST", "/admin/keys/AKIAX/rotate", None),
                               ("DELETE", "/admin/keys/AKIAX", None)):
        n = len(requests_to(method, path))
        st, _, _ = request(gw, method, path + ("?namespace=" + NS_A if path == "/admin/keys" and method == "GET" else ""),
                           body=body, auth=bearer("admin"))
        check(f"{method} {path} is forwarded for an admin", st == 200 and len(requests_to(method, path)) == n + 1, st)
    n = len(requests_to("GET", "/internal/"))
    st, _, _ = request(gw, "GET", "/internal/keys/AKIAX", auth=bearer("admin"))
    check("/internal/* is never routed", st == 404 and len(requests_to("GET", "/internal/")) == n, st)
    st, _, doc = request(gw, "POST", "/admin/tokens", body={"sub": "ci", "namespace": NS_B, "scopes": "functions:read",
                                                           "ttl_s": 600}, auth=bearer("admin"))
    ok = st == 201 and doc["namespace"] == NS_B and doc["scopes"] == "functions:read" and doc["expires_at"].endswith("Z")
    check("POST /admin/tokens mints a token (201)", ok, (st, doc))
    if ok:
        st, _, _ = request(gw, "GET", "/functions", auth="Bearer " + doc["token"])
        check("the minted token works and acts in its namespace",
              st == 200 and last("GET", "/functions")["headers"].get(HDR.lower()) == NS_B, st)
        st, _, _ = request(gw, "POST", "/functions/x/invoke", body={}, auth="Bearer " + doc["token"])
        check("the minted token has only the scopes asked for", st == 403, st)
    for body in ({"namespace": NS_B}, {"sub": "x", "scopes": "functions:read superuser"}, {"sub": "x", "ttl_s": 10},
                 {"sub": "x", "ttl_s": 40 * 86400}, {"sub": "x", "namespace": "NO"}):
        st, _, doc = request(gw, "POST", "/admin/tokens", body=body, auth=bearer("admin"))
        check(f"POST /admin/tokens {body} is 400", st == 400, (st, doc))
    st, _, _ = request(gw, "POST", "/admin/tokens", body={"sub": "me"}, auth=bearer(ALL, ns=NS_A))
    check("POST /admin/tokens needs scope admin", st == 403, st)


def quotas(gw):
    QUOTAS[NS_Q] = {"max_functions": 3, "max_concurrency": 1, "builds_per_minute": 2}
    tok = bearer(ns=NS_Q)
    doc = {"name": "q1", "runtime": "python3", "code_base64": ""}
    sts = [request(gw, "POST", "/functions", body=doc, auth=tok) for _ in range(2)]
    check("POST /functions passes max_functions to the build-master",
          last("POST", "/functions")["headers"].get("x-minilambda-quota-functions") == "3", last("POST", "/functions"))
    st, h, err = request(gw, "PUT", "/functions/q1/code", body=doc, auth=tok)
    e = (err or {}).get("error", {})
    check("builds_per_minute: the third submission in a minute is 429 quota_exceeded with quota, limit, Retry-After",
          [s[0] for s in sts] == [202, 202] and st == 429 and e.get("code") == "quota_exceeded" and
          e.get("quota") == "builds_per_minute" and e.get("limit") == 2 and int(h.get("retry-after", 0)) >= 1,
          ([s[0] for s in sts], st, err, h.get("retry-after")))
    st, _, _ = request(gw, "POST", "/functions", body=doc, auth=bearer(ns=NS_B))
    check("another namespace's builds are unaffected", st == 202, st)
    check("quota refusals are counted by namespace and quota",
          metric(gw, "minilambda_gateway_quota_refusals_total", namespace=NS_Q, quota="builds_per_minute") == 1)
    st, _, _ = request(gw, "POST", "/functions", body=doc, auth=bearer(ns=NS_B))
    check("a namespace without quotas sends no max_functions", st == 202 and
          "x-minilambda-quota-functions" not in last("POST", "/functions")["headers"])

    fn = f"slow-{RUN}"
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("first", request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=tok)))
    t.start()
    time.sleep(0.5)
    st, h, err = request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=tok)
    e = (err or {}).get("error", {})
    check("max_concurrency: a second sync invoke while the slot is taken is 429 quota_exceeded",
          st == 429 and e.get("quota") == "max_concurrency" and e.get("limit") == 1 and int(h.get("retry-after", 0)) >= 1, (st, err))
    KEYS["AKIAQ" + RUN.upper()] = {"access_key_id": "AKIAQ" + RUN.upper(), "secret_access_key": "qsecret",
                                   "namespace": NS_Q, "scopes": "functions:invoke", "status": "active"}
    st, _, _ = aws_invoke(gw, fn, "AKIAQ" + RUN.upper(), "qsecret")
    check("max_concurrency holds on the AWS invoke route too", st == 429, st)
    st, _, _ = request(gw, "POST", f"/functions/{fn}/invoke", body={}, headers={"X-Invocation-Type": "Event"}, auth=tok)
    check("an Event invoke takes no slot", st == 200, st)
    st, _, _ = request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=bearer(ns=NS_B))
    check("another namespace's invokes are unaffected", st == 200, st)
    t.join()
    check("the first invoke completed", out["first"][0] == 200, out["first"][0])
    st, _, _ = request(gw, "POST", f"/functions/{fn}/invoke", body={}, auth=tok)
    check("the slot is free again once the invoke ended", st == 200, st)
    # the price of a max_concurrency quota: two synchronous Redis calls per sync invoke
    lat = {}
    for ns in (NS_Q, NS_B, NS_Q, NS_B):
        t = []
        for _ in range(100):
            t0 = time.perf_counter()
            st = request(gw, "POST", f"/functions/fast-{RUN}/invoke", body={}, auth=bearer(ns=ns))[0]
            t.append((time.perf_counter() - t0) * 1000)
        lat.setdefault(ns, []).extend(t)
    p50 = {ns: sorted(v)[len(v) // 2] for ns, v in lat.items()}
    print(f"# sync invoke through the gateway, p50 of 200: with max_concurrency {p50[NS_Q]:.2f} ms, "
          f"without {p50[NS_B]:.2f} ms", flush=True)
    check("sequential invokes under max_concurrency 1 are all admitted", st == 200, st)


def sigv4_keys(gw):
    kid = "AKIAT" + RUN.upper()
    KEYS[kid] = {"access_key_id": kid, "secret_access_key": "s3cr3t-one", "namespace": NS_A,
                 "scopes": "functions:invoke", "status": "active"}
    st, _, doc = aws_invoke(gw, "hello", kid, "s3cr3t-one")
    check("a tenant's access key works on the AWS route, in its namespace",
          st == 200 and doc["ns"] == NS_A and last("POST", "/functions/hello/invoke")["headers"].get(HDR.lower()) == NS_A, (st, doc))
    time.sleep(1.1)
    aws_invoke(gw, "hello", kid, "s3cr3t-one")
    check("the key is looked up once per TTL (with the internal token)", len(requests_to("GET", f"/internal/keys/{kid}")) == 1,
          len(requests_to("GET", f"/internal/keys/{kid}")))
    st, _, _ = aws_invoke(gw, "hello", kid, "wrong-secret")
    check("a wrong secret is refused", st in (401, 403), st)
    st, _, _ = aws_invoke(gw, "hello", "AKIANOSUCHKEY" + RUN.upper(), "x")
    check("an unknown key is refused", st in (401, 403), st)
    st, _, doc = aws_invoke(gw, "hello", AWS_KEY, AWS_SECRET)
    check("the operator's key from config still works, in default", st == 200 and doc["ns"] == "default", (st, doc))
    KEYS[kid] = dict(KEYS[kid], status="disabled")
    t0 = time.time()
    while time.time() - t0 < 8 and aws_invoke(gw, "hello", kid, "s3cr3t-one")[0] == 200:
        time.sleep(0.5)
    took = time.time() - t0
    st = aws_invoke(gw, "hello", kid, "s3cr3t-one")[0]
    check(f"a disabled key is refused within the 5 s TTL (took {took:.1f} s)", st in (401, 403) and took <= 6, (st, took))
    KEYS[kid] = dict(KEYS[kid], status="active", secret_access_key="s3cr3t-two")
    time.sleep(1.2)  # the refusal was cached as found-but-disabled: 5 s at most
    t0 = time.time()
    while time.time() - t0 < 8 and aws_invoke(gw, "hello", kid, "s3cr3t-two")[0] != 200:
        time.sleep(0.5)
    st_new = aws_invoke(gw, "hello", kid, "s3cr3t-two")[0]
    st_old = aws_invoke(gw, "hello", kid, "s3cr3t-one")[0]
    check("after a rotation the new secret works and the old one is refused", st_new == 200 and st_old in (401, 403),
          (st_new, st_old))
    st, _, _ = request(gw, "GET", "/functions", headers=sigv4(gw, "/functions", b"", kid, "s3cr3t-two"))
    check("SigV4 works only on the AWS route", st == 401, st)


def real_executor():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    suite = Suite("test-gateway-tenants", {"lambda-executor": port})
    suite.start("lambda-executor")
    gw, proc = start_gateway(suite.url("lambda-executor"))
    adm, ns = bearer("admin"), f"tr-{RUN}"
    try:
        end = time.time() + 30  # until the executor's Postgres check passed and the gateway saw it
        while True:
            st, _, doc = request(gw, "POST", "/admin/namespaces", body={"name": ns, "quotas": {"builds_per_minute": 1}}, auth=adm)
            if st != 503 or time.time() > end:
                break
            time.sleep(0.3)
        if st == 404:
            print("# real executor: no admin API here (helper D's executor side not merged): skipped", flush=True)
            return
        check("real executor: an admin creates a namespace with quotas through the gateway", st == 201, (st, doc))
        st, _, doc = request(gw, "GET", f"/admin/namespaces/{ns}", auth=adm)
        check("real executor: and reads it back", st == 200 and doc["quotas"]["builds_per_minute"] == 1, (st, doc))
        tok = bearer(ns=ns)
        first = request(gw, "POST", "/functions", body={"name": "b1"}, auth=tok)[0]
        st, _, err = request(gw, "POST", "/functions", body={"name": "b2"}, auth=tok)
        check("real executor: builds_per_minute from the executor's quotas (second build 429 quota_exceeded)",
              first != 429 and st == 429 and err["error"]["quota"] == "builds_per_minute", (first, st, err))
        st, _, _ = request(gw, "POST", "/admin/keys", body={"namespace": ns, "scopes": "functions:invoke"}, auth=bearer(ALL))
        check("real executor: only an admin creates keys", st == 403, st)
        st, _, key = request(gw, "POST", "/admin/keys", body={"namespace": ns, "scopes": "functions:invoke"}, auth=adm)
        if not check("real executor: an admin creates an access key (201, secret once)", st == 201 and key.get("secret_access_key"), (st, key)):
            return
        kid, sec = key["access_key_id"], key["secret_access_key"]
        st, _, doc = aws_invoke(gw, "nosuch", kid, sec)
        check("real executor: the key authenticates on the AWS route (404 for a function its namespace lacks)", st == 404, (st, doc))
        st, _, _ = aws_invoke(gw, "nosuch", kid, sec[:-1] + ("a" if sec[-1] != "a" else "b"))
        check("real executor: a wrong secret for it is refused", st == 401, st)
        st, _, _ = request(gw, "POST", f"/admin/keys/{kid}/disable", auth=adm)
        t0 = time.time()
        while time.time() - t0 < 8 and aws_invoke(gw, "nosuch", kid, sec)[0] == 404:
            time.sleep(0.25)
        took = time.time() - t0
        check(f"real executor: disabled -> refused within the 5 s TTL (took {took:.1f} s)",
              st == 200 and aws_invoke(gw, "nosuch", kid, sec)[0] == 401 and took <= 5.5, (st, took))
        request(gw, "POST", f"/admin/keys/{kid}/enable", auth=adm)
        st, _, rot = request(gw, "POST", f"/admin/keys/{kid}/rotate", auth=adm)
        new = (rot or {}).get("secret_access_key", "")
        t0 = time.time()
        while time.time() - t0 < 8 and aws_invoke(gw, "nosuch", kid, new)[0] != 404:
            time.sleep(0.25)
        check("real executor: rotated -> the new secret works, the old one is refused",
              st == 200 and aws_invoke(gw, "nosuch", kid, new)[0] == 404 and aws_invoke(gw, "nosuch", kid, sec)[0] == 401, (st, rot))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        suite.stop_all()


def main():
    srv = Server(("127.0.0.1", 0), Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    gw, proc = start_gateway(f"http://127.0.0.1:{srv.server_address[1]}")
    try:
        namespaces(gw)
        rate_limits(gw)
        admin(gw)
        quotas(gw)
        sigv4_keys(gw)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        srv.shutdown()
    real_executor()
    print(f"# {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
