"""The gateway's access log (docs/logs.md §2) end to end.

The real gateway binary with the test stack's Redis, in front of the stand-in upstream of
gateway_tenants_e2e (it plays the lambda-executor and the build-master and serves access
keys), writing its access log to a file. Checks:
  - an allowed invoke's line: subject, namespace, route template, function, upstream,
    upstream_ms, status, bytes in and out, ratelimit=allowed, the request id it answered with;
  - a refused line with auth_error for each refusal: missing token, bad signature, expired,
    insufficient scope, namespace forbidden, unknown access key, bad SigV4; and refusals
    before routing or upstream: 404 (no route), 413, 429 (ratelimit=limited), 503;
  - hostile input (a function name with control characters and invalid UTF-8) stays one
    valid JSON line;
  - with MINILAMBDA_ACCESS_LOG_SAMPLE=0 (a second gateway) successful requests are absent and
    refused ones present;
  - every line is valid JSON with every required field; the line counter metric matches.
Prints ok/not ok lines."""
import json, os, signal, socket, subprocess, threading, time, uuid

import gateway_tenants_e2e as gt
from gateway_tenants_e2e import ALL, AWS_KEY, HDR, bearer, check, request, aws_invoke

LOGS = os.path.join(gt.ROOT, ".run", "test-gateway-access-log")
REQUIRED = ("ts", "type", "request_id", "client", "subject", "namespace", "auth", "method", "route",
            "function", "status", "bytes_in", "bytes_out", "duration_ms", "upstream", "ratelimit")
RUN = uuid.uuid4().hex[:6]
NS = f"al-{RUN}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway(executor, build_master, log_path, sample="1.0"):
    """A gateway writing its access log to log_path; (port, process) once healthy."""
    port = free_port()
    env = dict(os.environ, MINILAMBDA_GATEWAY_PORT=str(port), MINILAMBDA_BIND_ADDR="127.0.0.1",
               MINILAMBDA_JWT_SECRET=gt.SECRET, MINILAMBDA_EXECUTOR_URLS=executor,
               MINILAMBDA_BUILD_MASTER_URLS=build_master, MINILAMBDA_GATEWAY_HEALTH_INTERVAL_MS="300",
               MINILAMBDA_DEFAULT_RATE_LIMIT_RPS="1", MINILAMBDA_DEFAULT_RATE_LIMIT_BURST="2",
               MINILAMBDA_AWS_ACCESS_KEY=AWS_KEY, MINILAMBDA_AWS_SECRET_KEY=gt.AWS_SECRET,
               MINILAMBDA_HTTP_THREADS="2", MINILAMBDA_ACCESS_LOG=log_path,
               MINILAMBDA_ACCESS_LOG_SAMPLE=sample)
    out = open(os.path.join(LOGS, f"gateway-{port}.log"), "ab")
    proc = subprocess.Popen([os.path.join(gt.BIN, "gateway")], env=env, stdout=out, stderr=out)
    for _ in range(150):
        try:
            if request(port, "GET", "/health")[0] == 200:
                return port, proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gateway did not become healthy")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def read_lines(path):
    """Every line of the file, parsed (None for one that is not JSON)."""
    out = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n")[:-1]:
            try:
                out.append(json.loads(raw.decode("utf-8")))
            except ValueError:
                out.append(None)
    return out


def by_rid(lines, rid):
    got = [l for l in lines if l and l.get("request_id") == rid]
    return got[0] if len(got) == 1 else {"_found": len(got)}


def staged(gw):
    """Requests with known outcomes; returns {name: (request id, status)}."""
    got = {}

    def note(name, st, hdrs):
        got[name] = (hdrs.get("x-request-id"), st)

    body = {"x": 1}
    st, h, _ = request(gw, "POST", "/functions/hello/invoke", body=body, auth=bearer(sub="alice", ns=NS))
    note("allowed", st, h)
    now = int(time.time())
    note("missing_token", *request(gw, "GET", "/functions")[:2])
    note("bad_signature", *request(gw, "GET", "/functions", auth=bearer()[:-4] + "AAAA")[:2])
    note("expired", *request(gw, "GET", "/functions", auth=gt.jwt({"sub": "old", "scope": ALL, "exp": now - 3600}))[:2])
    note("insufficient_scope", *request(gw, "POST", "/functions/hello/invoke", body=body,
                                        auth=bearer("functions:read", sub="reader"))[:2])
    note("namespace_forbidden", *request(gw, "GET", "/functions", headers={HDR: "someone-else"},
                                         auth=bearer(sub="nosy", ns=NS))[:2])
    note("unknown_access_key", *aws_invoke(gw, "hello", "AKIANOSUCH" + RUN.upper(), "x")[:2])
    note("bad_sigv4", *aws_invoke(gw, "hello", AWS_KEY, "not-the-secret")[:2])
    note("no_route", *request(gw, "GET", "/no/such/route")[:2])
    note("too_large", *request(gw, "POST", "/functions/hello/invoke", body=b"x" * (7 << 20),
                               auth=bearer(sub="big"))[:2])
    fn = f"rl-{RUN}"  # the stand-in gives rl-* no rate limit: the default 1 rps, burst 2
    for i in range(3):
        note(f"rl{i}", *request(gw, "POST", f"/functions/{fn}/invoke", body=body, auth=bearer(sub="burst"))[:2])
    note("hostile_path", *request(gw, "POST", "/functions/a%01%0A%22%FF%C0b/invoke", body=body,
                                  auth=bearer(sub="x"))[:2])
    note("hostile_sub", *request(gw, "GET", "/functions", auth=bearer(sub="evil\x01\n\u2028\"\\}"))[:2])
    return got


def main():
    os.makedirs(LOGS, exist_ok=True)
    srv = gt.Server(("127.0.0.1", 0), gt.Upstream)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{srv.server_address[1]}"
    dead = f"http://127.0.0.1:{free_port()}"
    log1, log2 = os.path.join(LOGS, f"access-{RUN}.log"), os.path.join(LOGS, f"access-{RUN}-sampled.log")
    gw, proc = gateway(up, dead, log1)
    try:
        got = staged(gw)
        st, h, _ = request(gw, "POST", "/functions", body={"name": "x"}, auth=bearer(sub="builder"))
        got["no_upstream"] = (h.get("x-request-id"), st)
        time.sleep(0.3)  # the writer flushes every 20 ms
        counted = metric_total(gw, "minilambda_access_log_lines_total")
    finally:
        stop(proc)
    lines = read_lines(log1)
    check("every line of the access log is valid JSON", lines and all(l is not None for l in lines))
    missing = [(l.get("route"), k) for l in lines if l for k in REQUIRED if k not in l]
    check("every line has every required field and type=access",
          not missing and all(l["type"] == "access" for l in lines if l), missing[:5])
    check("the line counter matches what was written (before shutdown)", 0 < counted <= len(lines), (counted, len(lines)))

    a = by_rid(lines, got["allowed"][0])
    check("an allowed invoke: 200 with subject, namespace, route template, function",
          got["allowed"][1] == 200 and a.get("status") == 200 and a.get("subject") == "alice" and a.get("namespace") == NS
          and a.get("route") == "/functions/{fn}/invoke" and a.get("function") == "hello", a)
    check("... auth allowed (no auth_error), upstream lambda-executor with upstream_ms, ratelimit allowed",
          a.get("auth") == "allowed" and "auth_error" not in a and a.get("upstream") == "lambda-executor"
          and isinstance(a.get("upstream_ms"), (int, float)) and a.get("ratelimit") == "allowed", a)
    check("... bytes in (the body) and out, client address, a duration",
          a.get("bytes_in") == len(json.dumps({"x": 1})) and a.get("bytes_out", 0) > 0 and a.get("client") == "127.0.0.1"
          and a.get("duration_ms", -1) >= a.get("upstream_ms", 0), a)

    for why, status in (("missing_token", 401), ("bad_signature", 401), ("expired", 401),
                        ("insufficient_scope", 403), ("namespace_forbidden", 403),
                        ("unknown_access_key", 401), ("bad_sigv4", 401)):
        l = by_rid(lines, got[why][0])
        check(f"refused ({why}): {status}, auth refused, auth_error {why}, no upstream",
              got[why][1] == status and l.get("status") == status and l.get("auth") == "refused"
              and l.get("auth_error") == why and l.get("upstream") is None, (got[why], l))
    l = by_rid(lines, got["insufficient_scope"][0])
    check("an authenticated refusal names its subject", l.get("subject") == "reader", l)
    l = by_rid(lines, got["no_route"][0])
    check("404 before routing: logged with route unmatched, auth none",
          got["no_route"][1] == 404 and l.get("status") == 404 and l.get("route") == "unmatched" and l.get("auth") == "none", l)
    l = by_rid(lines, got["too_large"][0])
    check("413 before the handler: logged with its route and the bytes read",
          got["too_large"][1] == 413 and l.get("status") == 413 and l.get("route") == "/functions/{fn}/invoke"
          and l.get("bytes_in", 0) > 0, (got["too_large"], {k: l.get(k) for k in ("status", "route", "bytes_in")}))
    rl = [by_rid(lines, got[f"rl{i}"][0]) for i in range(3)]
    check("a rate-limited invoke: 429 with ratelimit limited (the two before: allowed)",
          [got[f"rl{i}"][1] for i in range(3)] == [200, 200, 429] and [l.get("ratelimit") for l in rl] == ["allowed", "allowed", "limited"]
          and rl[2].get("status") == 429 and rl[2].get("upstream") is None, rl)
    l = by_rid(lines, got["no_upstream"][0])
    check("503 with no build-master up: logged", got["no_upstream"][1] == 503 and l.get("status") == 503
          and l.get("auth") == "allowed" and l.get("subject") == "builder", (got["no_upstream"], l))
    l = by_rid(lines, got["hostile_path"][0])
    check("a path with control characters and invalid UTF-8 (400 from the server): one valid line, escaped",
          got["hostile_path"][1] == 400 and l.get("status") == 400 and l.get("function") == "a\x01\n\"\ufffd\ufffdb", l)
    l = by_rid(lines, got["hostile_sub"][0])
    check("a hostile subject (control characters, quotes, U+2028): one valid line, escaped",
          got["hostile_sub"][1] == 200 and l.get("subject") == "evil\x01\n\u2028\"\\}", l)

    gw2, proc2 = gateway(up, dead, log2, sample="0")
    try:
        ok_rids = [request(gw2, "GET", "/functions", auth=bearer(sub="s0"))[1].get("x-request-id") for _ in range(5)]
        bad = [request(gw2, "GET", "/functions")[1].get("x-request-id") for _ in range(3)]
        limited = [request(gw2, "POST", f"/functions/rl-s-{RUN}/invoke", body={}, auth=bearer(sub="s0"))
                   for _ in range(3)]
        time.sleep(0.3)
    finally:
        stop(proc2)
    lines2 = read_lines(log2)
    rids = {l.get("request_id") for l in lines2 if l}
    check("sample=0: successful requests are absent", not (set(ok_rids) & rids), lines2[:3])
    check("sample=0: refused requests (401) are all present", set(bad) <= rids, (bad, lines2))
    st = [r[0] for r in limited]
    check("sample=0: the 429 is present, its 200s are not",
          st == [200, 200, 429] and limited[2][1].get("x-request-id") in rids
          and not ({r[1].get("x-request-id") for r in limited[:2]} & rids), (st, lines2))
    srv.shutdown()
    print(f"# {gt.failures} failure(s)")  # check() counts there
    return 1 if gt.failures else 0


def metric_total(port, name):
    c = gt.http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


if __name__ == "__main__":
    raise SystemExit(main())
