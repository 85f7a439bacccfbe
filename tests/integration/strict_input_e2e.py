"""Strict, uniform input handling (issue 15 items 4 and 8), end to end through the real
gateway in front of the real daemons: NUL and invalid UTF-8 refused with a 400 JSON error
carrying X-Request-Id wherever a string enters (PATCH env, JSON and multipart create, path
segments); one schema for create and PATCH (wrong kinds, null, trailing data, duplicate keys);
invoke nesting bounded at the gateway; HTTP framing errors answered in JSON and the
connection closed; idle clients cut at MINILAMBDA_HTTP_IDLE_TIMEOUT_S; libmicrohttpd's own
messages in the JSON log. Ports: ML_PORT_BASE + 960..963. Prints ok/not ok lines."""
import base64, http.client, json, os, socket, subprocess, sys, time, uuid

from mlstack import BIN, Suite, make_zip

BASE = int(os.environ.get("ML_PORT_BASE", "20000"))
PORTS = {"gateway": BASE + 960, "lambda-executor": BASE + 961, "build-master": BASE + 962,
         "build-worker": BASE + 963}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
IDLE_S = 2
S = Suite("test-strict-input", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
ECHO = "def handler(event, context):\n    return {'event': event}\n"
BAD_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]
TOKEN = ""


def req(method, path, body=None, headers=None, port=None):
    """One request on a fresh connection: (status, headers lower-cased, body) or (None, err, b"")."""
    c = http.client.HTTPConnection("127.0.0.1", port or PORTS["gateway"], timeout=30)
    h = {"Authorization": "Bearer " + TOKEN, **({"Content-Type": "application/json"} if body is not None else {}),
         **(headers or {})}
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except OSError as e:
        return None, repr(e), b""
    finally:
        c.close()


def raw(data, port=None, timeout=5.0, body=b""):
    """Sends raw bytes (head, then body), reads until the server closes or timeout. Returns
    (text read, seconds until close or None if still open)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port or PORTS["gateway"]), timeout=timeout) as s:
        s.sendall(data)
        try:
            for i in range(0, len(body), 1 << 20):
                s.sendall(body[i:i + (1 << 20)])
        except OSError:
            pass
        got, closed = b"", None
        try:
            while chunk := s.recv(65536):
                got += chunk
            closed = time.time() - t0
        except (socket.timeout, ConnectionResetError):
            pass
        return got.decode(errors="replace"), closed


def error_of(data):
    try:
        return json.loads(data).get("error", {})
    except ValueError:
        return {}


def is_json_400(st, hd, data, code=None):
    err = error_of(data)
    return (st == 400 and bool(err.get("code")) and (code is None or err["code"] == code) and
            bool(hd.get("x-request-id")) and err.get("request_id") == hd.get("x-request-id"))


def patch_checks(fn):
    _, _, doc0 = req("GET", f"/functions/{fn}")
    env0 = json.loads(doc0).get("env")
    for bad in BAD_UTF8:
        st, hd, data = req("PATCH", f"/functions/{fn}", b'{"env":{"K":"' + bad + b'"}}')
        S.check(f"PATCH env value {bad!r} -> 400 JSON with X-Request-Id", is_json_400(st, hd, data, "invalid_json"),
                (st, data[:200]))
    for what, body in (("\\u0000 in a value", b'{"env":{"K":"a\\u0000b"}}'),
                       ("\\u0000 in a key", b'{"env":{"K\\u0000X":"v"}}'),
                       ("duplicate keys", b'{"timeout_s":5,"timeout_s":6}'),
                       ("trailing data", b'{"timeout_s":5} x'),
                       ("\"timeout_s\":\"30\"", b'{"timeout_s":"30"}'),
                       ("timeout_s null", b'{"timeout_s":null}')):
        st, hd, data = req("PATCH", f"/functions/{fn}", body)
        S.check(f"PATCH with {what} -> 400 JSON", is_json_400(st, hd, data), (st, data[:200]))
    _, _, doc1 = req("GET", f"/functions/{fn}")
    S.check("the function's env is unchanged after the hostile PATCHes", json.loads(doc1).get("env") == env0,
            (env0, doc1[:200]))


def path_checks(fn):
    for path in (f"/functions/{fn}%00x", f"/functions/{fn}%00", f"/functions/{fn}%ff"):
        for port in (PORTS["gateway"], PORTS["lambda-executor"]):
            st, hd, data = req("GET", path, port=port)
            S.check(f"GET {path} on :{port} -> 400 or 404 JSON, never the cut name",
                    st in (400, 404) and error_of(data).get("code") and hd.get("x-request-id") and
                    fn.encode() not in data.replace(b"no function", b""), (st, data[:200]))
    st, hd, data = req("POST", f"/functions/{fn}%00x/invoke", b"{}")
    S.check("invoke of name%00x -> 400/404, the function does not run", st in (400, 404), (st, data[:200]))


def create_checks(run):
    code = base64.b64encode(make_zip({"app.py": ECHO})).decode()

    def spec(**kw):
        return {"name": f"strict-{run}", "runtime": "python3", "handler": "app.handler", "code_base64": code, **kw}

    cases = [("name \"a<run>\\u0000b\"", json.dumps(spec(name=f"a{run}\u0000b")).encode()),
             ("\"timeout_s\":\"30\"", json.dumps(spec(timeout_s="30")).encode()),
             ("timeout_s null", json.dumps(spec(timeout_s=None)).encode()),
             ("env null", json.dumps(spec(env=None)).encode()),
             ("an unknown member", json.dumps(spec(nmae="x")).encode()),
             ("env value \\u0000", json.dumps(spec(env={"K": "a\u0000b"})).encode()),
             ("trailing data", json.dumps(spec()).encode() + b" {}"),
             ("duplicate keys", json.dumps(spec()).encode()[:-1] + b',"name":"other"}'),
             ("invalid UTF-8 in handler", json.dumps(spec()).encode().replace(b"app.handler", b"app.h\xff"))]
    for what, body in cases:
        st, hd, data = req("POST", "/functions", body)
        S.check(f"JSON create with {what} -> 400 JSON", is_json_400(st, hd, data), (st, data[:200]))
    boundary = "strictB"
    parts = [("name", f"strict-{run}\x00x".encode()), ("runtime", b"python3"), ("handler", b"app.handler")]
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n".encode() + v + b"\r\n"
                    for k, v in parts)
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"f.zip\"\r\n\r\n".encode() +
             make_zip({"app.py": ECHO}) + f"\r\n--{boundary}--\r\n".encode())
    st, hd, data = req("POST", "/functions", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    S.check("multipart create with a NUL in name -> 400 JSON", is_json_400(st, hd, data), (st, data[:200]))
    st, hd, data = req("GET", f"/functions/strict-{run}")
    S.check("no function was created by any refused create (not even the cut name)", st == 404, (st, data[:200]))
    st, hd, data = req("GET", f"/functions/a{run}")
    S.check("no function 'a<run>' from \"a<run>\\u0000b\" (the cut name)", st == 404, (st, data[:200]))


def nesting_checks(fn):
    deep = b"[" * 100000 + b"]" * 100000
    st, hd, data = req("POST", f"/functions/{fn}/invoke", deep)
    S.check("a 100,000-deep event -> 400 at the gateway (not 502 from the runtime)",
            is_json_400(st, hd, data, "invalid_request_content") and "nests deeper" in error_of(data).get("message", ""),
            (st, data[:200]))
    st, hd, data = req("POST", f"/2015-03-31/functions/{fn}/invocations", deep)
    S.check("the same on the AWS route -> 400 InvalidRequestContentException",
            st == 400 and hd.get("x-amzn-errortype") == "InvalidRequestContentException", (st, hd, data[:200]))
    ok = b'{"a":' * 100 + b"1" + b"}" * 100
    st, hd, data = req("POST", f"/functions/{fn}/invoke", ok)
    S.check("a 100-deep event still runs", st == 200, (st, data[:200]))


def framing_checks(fn):
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    head = f"POST /functions/{fn}/invoke HTTP/1.1\r\nHost: x\r\n{auth}"
    out, closed = raw((head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}").encode())
    S.check("conflicting Content-Length -> 400 JSON invalid_framing, connection closed",
            out.startswith("HTTP/1.1 400") and "invalid_framing" in out and "X-Request-Id" in out and
            closed is not None, (out[:300], closed))
    out, closed = raw((head + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode())
    S.check("Transfer-Encoding: gzip, chunked -> 501 JSON at once (no hang), connection closed",
            out.startswith("HTTP/1.1 501") and "not_implemented" in out and closed is not None and closed < 3,
            (out[:300], closed))
    chunk = b"x" * (1 << 20)
    body = b"".join(b"100000\r\n" + chunk + b"\r\n" for _ in range(100)) + b"0\r\n\r\n"
    t0 = time.time()
    out, closed = raw((head + "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n").encode(), timeout=30,
                      body=body)
    S.check("a 100 MiB chunked upload -> 413 JSON payload_too_large the client reads (no reset)",
            out.startswith("HTTP/1.1 413") and "payload_too_large" in out and "X-Request-Id" in out, out[:300])
    print(f"# 100 MiB chunked refused in {time.time() - t0:.2f} s", flush=True)


def idle_checks():
    t0 = time.time()
    out, closed = raw(b"POST /functions/x/invoke HTTP/1.1\r\nHost: x\r\nContent-Le", timeout=IDLE_S + 8)
    S.check(f"a half-sent header is cut after the idle timeout ({IDLE_S} s)",
            closed is not None and IDLE_S - 0.5 <= closed <= IDLE_S + 4, (out[:200], closed))
    out, closed = raw(b"POST /functions/x/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
                      timeout=IDLE_S + 8)
    S.check(f"a half-sent body is cut after the idle timeout ({IDLE_S} s)",
            closed is not None and closed <= IDLE_S + 4, (out[:200], closed))
    print(f"# idle cuts measured in {time.time() - t0:.1f} s", flush=True)


def log_checks():
    out, _ = raw(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n")
    S.check("HTTP/2.0 request line -> 505 (libmicrohttpd's own answer)", out.startswith("HTTP/1.1 505"), out[:200])
    time.sleep(0.3)
    for name in ("gateway", "lambda-executor", "build-master"):
        lines = open(os.path.join(S.logs, name + ".log"), errors="replace").read().splitlines()
        bad = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad.append(line)
        S.check(f"{name} log: every line is JSON (libmicrohttpd's messages included)", not bad, bad[:3])
    text = open(os.path.join(S.logs, "gateway.log"), errors="replace").read()
    S.check("gateway log: libmicrohttpd's messages arrive as JSON warn lines",
            '"msg":"libmicrohttpd"' in text, text[-300:])


def zombie_check():
    """platform.sh's pid_alive sees a crashed daemon that is not reaped yet (a zombie) as
    down, so daemons-start starts it again instead of leaving it down."""
    import tempfile
    pidf = os.path.join(tempfile.mkdtemp(prefix="strict-zombie-"), "d.pid")
    # the parent execs into a sleep that never reaps: the killed child stays a zombie
    parent = subprocess.Popen(["bash", "-c", f"sleep 100 & echo $! > {pidf}; exec sleep 5"])
    try:
        for _ in range(50):
            if os.path.exists(pidf) and open(pidf).read().strip():
                break
            time.sleep(0.05)
        pid = int(open(pidf).read())
        os.kill(pid, 9)
        time.sleep(0.3)
        state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../infrastructure/dev/platform.sh")
        probe = (f"eval \"$(sed -n '/^pid_running()/,/^}}/p;/^pid_alive()/p' {script})\"; "
                 f"pid_alive {pidf} && echo alive || echo down")
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout.strip()
        S.check("platform.sh pid_alive: a crashed, unreaped daemon (zombie) counts as down",
                state == "Z" and out == "down", (state, out))
    finally:
        parent.kill()
        parent.wait()


def main():
    global TOKEN
    run = uuid.uuid4().hex[:8]
    t0 = time.time()
    zombie_check()
    for name in ("lambda-executor", "build-master", "build-worker"):
        S.start(name)
    S.start("gateway", MINILAMBDA_HTTP_IDLE_TIMEOUT_S=str(IDLE_S))
    try:
        TOKEN = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "strict"], capture_output=True,
                               text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
        fn = f"strict-echo-{run}"
        if S.check("function deployed", (S.deploy(fn, {"app.py": ECHO}) or {}).get("state") == "active"):
            patch_checks(fn)
            path_checks(fn)
            create_checks(run)
            nesting_checks(fn)
            framing_checks(fn)
            idle_checks()
            log_checks()
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
