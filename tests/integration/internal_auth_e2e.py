"""Internal APIs authenticated (issue 16, item 4; docs/security.md "Internal APIs").

On the test stack, the real gateway, build-master, build-worker and lambda-executor share one
internal token. Checks:
  - direct calls to the executor and build-master WITHOUT the token get 401 unauthorized on
    every route family (functions, invoke, invocations, dlq, schedules, builds, the internal
    build-status webhook, and unknown paths), and a refused DELETE/PATCH/invoke changed nothing;
  - a WRONG token (one character off, a prefix, empty) gets 401 too; the right one works;
  - /health, /ready/{cap} and /metrics stay open; refusals are counted in
    minilambda_internal_auth_refusals_total;
  - an unauthenticated request is refused before its body is read (a huge declared body gets
    its 401 at once);
  - through the gateway everything works (every sibling call carries the token: gateway ->
    both, build-master -> executor inline notify and delete, build-worker -> executor webhooks);
  - the token never reaches a user's webhook_url;
  - secure by default: a daemon with no token refuses to start and says why; with
    MINILAMBDA_INTERNAL_AUTH_INSECURE=true it starts and accepts anyone.
Prints ok/not ok lines."""
import http.server, json, os, socket, subprocess, sys, threading, time, uuid

from mlstack import BIN, INTERNAL_HEADER, INTERNAL_TOKEN, Suite, call, psql

JWT_SECRET = uuid.uuid4().hex + uuid.uuid4().hex
PORTS = {"gateway": 31380, "lambda-executor": 31381, "build-master": 31382, "build-worker": 31392}
S = Suite("test-internal-auth", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}"})
EXEC, MASTER, GW = S.url("lambda-executor"), S.url("build-master"), S.url("gateway")
APP = "def handler(event, context):\n    return {'echo': event}\n"
NO_TOKEN = {INTERNAL_HEADER: None}  # mlstack adds the token unless told not to
hooks = []  # (headers, body) of every user webhook received


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hooks.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def jwt():
    return subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "intauth", "--scope",
                           "functions:read functions:write functions:invoke"], capture_output=True,
                          text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET), check=True).stdout.strip()


def refused(st, body):
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return st == 401 and err.get("code") == "unauthorized" and err.get("request_id")


def routes(fn, inv, build):
    """Every route family of the two internal APIs, with a body where one is expected."""
    j = b'{"x":1}'
    return [
        (EXEC, "GET", "/functions", None), (EXEC, "GET", f"/functions/{fn}", None),
        (EXEC, "PATCH", f"/functions/{fn}", b'{"memory_mb":256}'), (EXEC, "DELETE", f"/functions/{fn}", None),
        (EXEC, "POST", f"/functions/{fn}/invoke", j),
        (EXEC, "GET", f"/invocations/{inv}", None), (EXEC, "GET", f"/functions/{fn}/invocations", None),
        (EXEC, "GET", f"/functions/{fn}/dlq", None), (EXEC, "POST", f"/dlq/{uuid.uuid4()}/replay", None),
        (EXEC, "DELETE", f"/dlq/{uuid.uuid4()}", None),
        (EXEC, "POST", f"/functions/{fn}/schedules", b'{"cron":"* * * * *"}'),
        (EXEC, "GET", f"/functions/{fn}/schedules", None),
        (EXEC, "DELETE", f"/functions/{fn}/schedules/{uuid.uuid4()}", None),
        (EXEC, "POST", f"/webhooks/build-status/{build}", b'{"type":"build.status"}'),
        (EXEC, "GET", "/no/such/route", None),
        (MASTER, "POST", "/functions", b'{"name":"x"}'), (MASTER, "PUT", f"/functions/{fn}/code", b"{}"),
        (MASTER, "GET", f"/builds/{build}", None), (MASTER, "GET", f"/functions/{fn}/builds", None),
        (MASTER, "DELETE", f"/functions/{fn}", None), (MASTER, "GET", "/no/such/route", None),
    ]


def invocation_count(fn):
    return int(psql(f"select count(*) from invocations i join functions f on f.id = i.function_id"
                    f" where f.name = '{fn}'"))


def direct_calls(fn, inv, build):
    before = invocation_count(fn)
    wrong = [INTERNAL_TOKEN[:-1] + ("0" if INTERNAL_TOKEN[-1] != "0" else "1"), INTERNAL_TOKEN[:32], " "]
    for base, method, path, body in routes(fn, inv, build):
        who = "executor" if base == EXEC else "build-master"
        h = {"Content-Type": "application/json"}
        st, hd, out = call(method, base + path, body, dict(h, **NO_TOKEN))
        S.check(f"{who} {method} {path.split('/')[1]}...: no token -> 401 unauthorized", refused(st, out), (st, out[:200]))
        bad = [call(method, base + path, body, dict(h, **{INTERNAL_HEADER: w}))[0] for w in wrong]
        S.check(f"{who} {method} {path.split('/')[1]}...: wrong token (one char off, a prefix, blank) -> 401",
                bad == [401] * len(wrong), bad)
    st, _, out = call("GET", f"{EXEC}/functions/{fn}")
    S.check("the refused DELETE/PATCH changed nothing: the function is still there, memory_mb unchanged",
            st == 200 and json.loads(out).get("memory_mb") == 128, (st, out[:200]))
    S.check("the refused invoke ran nothing (no new invocation row)", invocation_count(fn) == before)
    ok = {p: call("GET", base + p)[0] for base, p in ((EXEC, "/functions"), (EXEC, f"/functions/{fn}/invocations"),
                                                      (MASTER, f"/functions/{fn}/builds"), (MASTER, f"/builds/{build}"))}
    S.check("with the right token the same routes answer 200", set(ok.values()) == {200}, ok)


def open_paths():
    for base, who in ((EXEC, "executor"), (MASTER, "build-master")):
        st = {p: call("GET", base + p, None, NO_TOKEN)[0] for p in ("/health", "/metrics", "/ready/invoke")}
        S.check(f"{who}: /health, /metrics and /ready/{{cap}} need no token", st["/health"] == 200 and
                st["/metrics"] == 200 and st["/ready/invoke"] != 401, st)
    st, _, out = call("GET", EXEC + "/metrics", None, NO_TOKEN)
    text = out.decode()
    S.check("refusals are counted: minilambda_internal_auth_refusals_total{reason=missing|wrong}",
            'minilambda_internal_auth_refusals_total{reason="missing"}' in text and
            'minilambda_internal_auth_refusals_total{reason="wrong"}' in text, text[-300:])


def body_never_read():
    """A request announcing 1 GiB without a token: answered 401 from its headers alone."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", PORTS["lambda-executor"]), timeout=5) as s:
        s.sendall(b"POST /functions/x/invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1073741824\r\n\r\n{")
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            pass
    S.check("no token and a 1 GiB body announced: 401 at once, the body is never read",
            got.startswith(b"HTTP/1.1 401") and time.time() - t0 < 3, (got[:120], time.time() - t0))


def through_gateway(fn, hook_url):
    auth = {"Authorization": "Bearer " + jwt(), "Content-Type": "application/json"}
    st, _, out = call("POST", GW + "/functions", json.dumps({
        "name": fn, "runtime": "python3", "handler": "app.handler", "webhook_url": hook_url,
        "code_base64": __import__("base64").b64encode(__import__("mlstack").make_zip({"app.py": APP})).decode()}).encode(), auth)
    S.check("through the gateway: POST /functions -> 202", st == 202, (st, out[:200]))
    build = json.loads(out).get("build_id") if st == 202 else None
    state = S.wait_state(fn)
    S.check("the build-worker's webhooks reached the executor (the function became active)",
            (state or {}).get("state") == "active", state)
    st, _, out = call("POST", f"{GW}/functions/{fn}/invoke", b'{"n":7}', auth)
    S.check("through the gateway: invoke -> 200 with the result", st == 200 and json.loads(out) == {"echo": {"n": 7}}, (st, out[:200]))
    inv = call("GET", f"{GW}/functions/{fn}/invocations", None, auth)
    S.check("through the gateway: invocations, builds, schedules, dlq -> 200",
            [inv[0], call("GET", f"{GW}/builds/{build}", None, auth)[0],
             call("GET", f"{GW}/functions/{fn}/schedules", None, auth)[0],
             call("GET", f"{GW}/functions/{fn}/dlq", None, auth)[0]] == [200] * 4)
    first = (json.loads(inv[2]).get("invocations") or [{}])[0].get("invocation_id") if inv[0] == 200 else None
    return build, first, auth


def user_hooks_clean():
    end = time.time() + 20
    while time.time() < end and not any(b"completed" in b for _, b in hooks):
        time.sleep(0.2)
    leaked = [h for h, _ in hooks if any(k.lower() == INTERNAL_HEADER.lower() for k in h)]
    S.check("the user's webhook_url got its build events, never the internal token",
            hooks and not leaked and any(b"completed" in b for _, b in hooks), (len(hooks), leaked[:1]))


def secure_by_default():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINILAMBDA_INTERNAL_TOKEN")}
    env.update(S.env, MINILAMBDA_BUILD_MASTER_PORT="31383")
    p = subprocess.run([os.path.join(BIN, "build-master")], env=env, capture_output=True, text=True, timeout=30)
    S.check("no token configured: build-master refuses to start and names the variable",
            p.returncode != 0 and "MINILAMBDA_INTERNAL_TOKEN" in p.stdout + p.stderr, (p.returncode, p.stdout[-300:]))
    env["MINILAMBDA_INTERNAL_TOKEN"] = "short"
    p = subprocess.run([os.path.join(BIN, "build-master")], env=env, capture_output=True, text=True, timeout=30)
    S.check("a token under 32 characters is refused at start", p.returncode != 0 and "32" in p.stdout + p.stderr,
            p.stdout[-300:])
    del env["MINILAMBDA_INTERNAL_TOKEN"]
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)  # Suite.start copies os.environ: no token in it
    try:
        S.start("insecure-master", "build-master", MINILAMBDA_INTERNAL_AUTH_INSECURE="true")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    st, _, _ = call("GET", f"http://127.0.0.1:31384/builds/{uuid.uuid4()}", None, NO_TOKEN)
    log = open(os.path.join(S.logs, "insecure-master.log")).read()
    S.check("MINILAMBDA_INTERNAL_AUTH_INSECURE=true: starts without a token, warns, accepts any caller",
            st == 404 and "INSECURE" in log, (st, log[-300:]))


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    run = uuid.uuid4().hex[:8]
    S.ports.update({"insecure-master": 31384})
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        fn = f"intauth-{run}"
        build, inv, auth = through_gateway(fn, hook_url)
        user_hooks_clean()
        direct_calls(fn, inv or uuid.uuid4(), build or uuid.uuid4())
        open_paths()
        body_never_read()
        st, _, _ = call("DELETE", f"{GW}/functions/{fn}", None, auth)
        S.check("through the gateway: DELETE -> 204 (build-master -> executor delete carries the token)",
                st == 204 and call("GET", f"{EXEC}/functions/{fn}")[0] == 404, st)
        secure_by_default()
    finally:
        S.stop_all()
        srv.shutdown()
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
