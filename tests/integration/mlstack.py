"""Helpers shared by the Python end-to-end tests: daemons on the test stack, HTTP calls,
deploying functions through the real build pipeline, and "ok - "/"not ok - " checks."""
import base64, hashlib, hmac, http.client, io, json, os, secrets, signal, subprocess, time, urllib.error, urllib.request, zipfile

ROOT = os.environ.get("ML_ROOT", os.getcwd())
BIN = os.environ["ML_BIN_DIR"]
RUN = os.environ["ML_RUN_DIR"]
INTERNAL_HEADER = "X-Minilambda-Internal"


def internal_token():
    """The internal credential the daemons share (docs/security.md): the stack's token file
    (stack.env), MINILAMBDA_INTERNAL_TOKEN, or else a new one exported for the daemons this
    process starts."""
    if os.environ.get("MINILAMBDA_INTERNAL_TOKEN"):
        return os.environ["MINILAMBDA_INTERNAL_TOKEN"]
    path = os.environ.get("MINILAMBDA_INTERNAL_TOKEN_FILE")
    if path and os.path.exists(path):
        return open(path).read().strip()
    os.environ.pop("MINILAMBDA_INTERNAL_TOKEN_FILE", None)
    os.environ["MINILAMBDA_INTERNAL_TOKEN"] = secrets.token_hex(32)
    return os.environ["MINILAMBDA_INTERNAL_TOKEN"]


INTERNAL_TOKEN = internal_token()

_putrequest = http.client.HTTPConnection.putrequest
_putheader = http.client.HTTPConnection.putheader
_endheaders = http.client.HTTPConnection.endheaders


def _start_request(self, *a, **kw):
    self._ml_token_due = True
    return _putrequest(self, *a, **kw)


def _header(self, name, *values):
    """A test that sets the header itself keeps its value; {INTERNAL_HEADER: None} sends none."""
    if isinstance(name, (str, bytes)) and (name.decode() if isinstance(name, bytes) else name).lower() == INTERNAL_HEADER.lower():
        self._ml_token_due = False
        if values == (None,):
            return None
    return _putheader(self, name, *values)


def _end_headers(self, *a, **kw):
    if getattr(self, "_ml_token_due", False):
        self._ml_token_due = False
        _putheader(self, INTERNAL_HEADER, INTERNAL_TOKEN)
    return _endheaders(self, *a, **kw)


# Every HTTP request of a test (urllib, http.client's request() or putrequest/putheader) carries
# the internal token, as a sibling service's would: the suites call the executor and
# build-master directly. (The gateway ignores it.)
http.client.HTTPConnection.putrequest = _start_request
http.client.HTTPConnection.putheader = _header
http.client.HTTPConnection.endheaders = _end_headers

PORT_VARS = {"build-master": "MINILAMBDA_BUILD_MASTER_PORT", "build-worker": "MINILAMBDA_BUILD_WORKER_PORT",
             "lambda-executor": "MINILAMBDA_EXECUTOR_PORT", "gateway": "MINILAMBDA_GATEWAY_PORT"}


PLATFORM = ("lambda-executor", "build-master", "build-worker", "gateway")


def gateway_token(jwt_secret, sub):
    """A dev JWT for sub from `gateway token`, signed with jwt_secret."""
    return subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", sub], capture_output=True,
                          text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=jwt_secret)).stdout.strip()


class Suite:
    """A set of daemons (one per name) with their logs under .run/<tag>."""

    def __init__(self, tag, ports, extra_env=None):
        self.logs = os.path.join(ROOT, ".run", tag)
        os.makedirs(self.logs, exist_ok=True)
        self.ports, self.procs, self.failures = ports, {}, 0
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.env = {"MINILAMBDA_BIND_ADDR": "127.0.0.1",
                    "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": self.secret,
                    "MINILAMBDA_RUNTIMES_DIR": os.path.join(ROOT, "services/lambda-executor/runtimes"),
                    "MINILAMBDA_ARTIFACT_CACHE_DIR": os.path.join(self.logs, "artifacts"),
                    "MINILAMBDA_BUILD_SCRATCH_DIR": os.path.join(self.logs, "scratch"),
                    "MINILAMBDA_WEBHOOK_RETRY_SCHEDULE_MS": "200,200,500,1000",
                    "MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK": "true", **(extra_env or {})}
        if "lambda-executor" in ports:
            self.env["MINILAMBDA_EXECUTOR_WEBHOOK_URL"] = self.url("lambda-executor")

    def url(self, name):
        return f"http://127.0.0.1:{self.ports[name]}"

    def check(self, name, cond, detail=""):
        print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {str(detail)[:300]}"), flush=True)
        self.failures += 0 if cond else 1
        return cond

    def start(self, name, binary=None, **env):
        binary = binary or name
        e = dict(os.environ, **self.env, **{PORT_VARS[binary]: str(self.ports[name])}, **env)
        if binary == "lambda-executor":
            e.setdefault("MINILAMBDA_AUDIT_SPILL_PATH", os.path.join(self.logs, f"audit-{name}.spill"))
        self.procs[name] = subprocess.Popen([os.path.join(BIN, binary)], env=e, stderr=subprocess.STDOUT,
                                            stdout=open(os.path.join(self.logs, name + ".log"), "ab"))
        end = time.time() + 60
        while time.time() < end:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
            try:
                if urllib.request.urlopen(self.url(name) + "/health", timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(name + " not healthy")

    def start_platform(self, sub):
        """Starts the four daemons (PLATFORM order) and returns the Authorization header of a dev
        JWT for sub, signed with this suite's MINILAMBDA_JWT_SECRET."""
        for name in PLATFORM:
            self.start(name)
        return {"Authorization": "Bearer " + gateway_token(self.env["MINILAMBDA_JWT_SECRET"], sub)}

    def stop_all(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            elif p.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
                self.died(name, p.returncode)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()

    def died(self, name, code):
        """A daemon that ended on its own (a crash, an abort): says so with its log's tail, so a
        failure that follows is explained in the test's own output."""
        print(f"# {name} had exited on its own (code {code}); the end of its log:", flush=True)
        with open(os.path.join(self.logs, name + ".log"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 1500))
            for line in f.read().decode(errors="replace").splitlines()[-6:]:
                print("#   " + line[:300], flush=True)

    def deploy(self, name, files, runtime="python3", handler="app.handler", **config):
        doc = {"name": name, "runtime": runtime, "handler": handler,
               "code_base64": base64.b64encode(make_zip(files)).decode(), **config}
        st, _, body = call("POST", self.url("build-master") + "/functions", json.dumps(doc).encode(),
                           {"Content-Type": "application/json"})
        if st != 202:
            raise RuntimeError(f"deploy {name}: {st} {body[:200]}")
        return self.wait_state(name)

    def wait_state(self, name, want=("active", "failed"), timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            st, _, body = call("GET", f"{self.url('lambda-executor')}/functions/{name}")
            if st == 200 and json.loads(body)["state"] in want:
                return json.loads(body)
            time.sleep(0.1)
        return None


def call(method, url, body=None, headers=None, timeout=60):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def ns_call(base, method, path, ns=None, body=None, headers=None):
    """A call to a service as the gateway makes it: the caller's namespace in
    X-Minilambda-Namespace (none when ns is None), body (if any) as JSON; (status, the JSON
    answer, or its bytes when it is not JSON)."""
    h = dict(headers or {})
    if ns is not None:
        h["X-Minilambda-Namespace"] = ns
    return jcall(base, method, path, h, body)


def wait_build(base, ns, bid, timeout=90):
    """The build (GET /builds/{id} on the build-master at base) once completed or failed; None
    after timeout."""
    end = time.time() + timeout
    while time.time() < end:
        st, b = ns_call(base, "GET", f"/builds/{bid}", ns)
        if st == 200 and b["status"] in ("completed", "failed"):
            return b
        time.sleep(0.1)
    return None


def jerr(body):
    """The "error" object of an API error answer ({} when the body is not one)."""
    try:
        return json.loads(body).get("error") or {}
    except ValueError:
        return {}


def scrape(base_url):
    """A daemon's /metrics as {"name{labels}": value} ({} unless it answered 200), and
    (status, promtool check metrics exit code, promtool's output)."""
    st, _, body = call("GET", base_url + "/metrics")
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    values = {}
    for line in body.decode().splitlines() if st == 200 else []:
        if line and not line.startswith("#"):
            key, _, v = line.rpartition(" ")
            values[key] = float(v)
    return values, (st, lint.returncode, (lint.stdout + lint.stderr).decode()[:300])


def make_zip(files, modes=None):
    """A ZIP of {name: data}; modes maps a name to its permission bits (default 0644)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name)
            zi.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            z.writestr(zi, data)
    return buf.getvalue()


def psql(sql, db_var="MINILAMBDA_LAMBDA_DB_URL"):
    out = subprocess.run(["psql", os.environ[db_var], "-tAc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def active_artifact(fid):
    """(S3 prefix, sha256) of a function's active code revision, read from lambda_service_db."""
    row = psql(f"SELECT v.artifact_prefix || '|' || v.artifact_sha256 FROM functions f JOIN function_versions v"
               f" ON v.function_id = f.id AND v.version = f.active_version WHERE f.id = '{fid}'")
    return tuple(row.split("|"))


def post_build_event(exec_url, secret, doc):
    """doc (a build.status event) signed with the whsec_ webhook secret as the build-master
    does, POSTed to the executor's webhook receiver; the HTTP status."""
    body = json.dumps(doc).encode()
    mid, ts = "msg_" + secrets.token_hex(16), str(int(time.time()))
    key = base64.b64decode(secret[len("whsec_"):])
    sig = "v1," + base64.b64encode(hmac.new(key, f"{mid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    st, _, _ = call("POST", f"{exec_url}/webhooks/build-status/{doc['build_id']}", body,
                    {"Content-Type": "application/json", "webhook-id": mid, "webhook-timestamp": ts,
                     "webhook-signature": sig})
    return st


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(secret, claims, sub):
    """{"Authorization": "Bearer ..."}: an HS256 token signed with the gateway's secret (what
    `gateway token` makes), valid for an hour, with claims over sub/exp."""
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(dict({"sub": sub, "exp": int(time.time()) + 3600}, **claims)).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {head}.{body}.{b64u(sig)}"}


def jcall(base, method, path, auth, doc=None, headers=None):
    """(status, parsed JSON body — or the raw body when it is not JSON) of a call with auth
    headers and, when doc is given, a JSON body."""
    h = dict(auth, **(headers or {}))
    if doc is not None:
        h["Content-Type"] = "application/json"
    st, _, body = call(method, base + path, json.dumps(doc).encode() if doc is not None else None, h)
    try:
        return st, json.loads(body) if body else None
    except ValueError:
        return st, body
