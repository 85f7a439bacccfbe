"""Function URLs end to end through the real gateway, executor and build pipeline (issue 20,
part 1; docs/http.md).

One python function answers per path: /echo returns the v2 event it got, /respond returns the
response object the client sent as its body, /mirror returns the request body's bytes, /bare a
bare value, /boom raises, /sleep outlives its timeout. Checks: no URL -> 404 JSON; GET, POST,
PUT and DELETE with query strings (raw and parsed, repeats), cookies, a binary body (base64 in
the event, the exact bytes back), a redirect, a custom status with headers, multi-value
headers and cookies round-trip exactly; a public (NONE) URL works with no token; a JWT URL
refuses without one (401 JSON) and works with one (the token's claims in the event); CORS
preflight is answered (and the actual response carries Access-Control-Allow-Origin); a
function error is 502 function_error JSON, a timeout 504 function_timeout JSON; the per-IP
budget of a public URL gives 429; the outcome metric counts. Prints ok/not ok."""
import base64, http.client, json, os, sys, threading, time, uuid

from mlstack import Suite, jcall, jerr, scrape

BASE = int(os.environ.get("ML_PORT_BASE", "30000"))
# below the ephemeral range (32768+: a client socket could hold a port there), clear of the other tests
PORTS = {"gateway": BASE + 2300, "lambda-executor": BASE + 2301, "build-master": BASE + 2302,
         "build-worker": BASE + 2312}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
IP_BURST = 40
S = Suite("test-fnurl", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
    "MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS": "200",
    "MINILAMBDA_GATEWAY_INVOKE_TIMEOUT_MARGIN_S": "3",
    "MINILAMBDA_FNURL_IP_RPS": "1", "MINILAMBDA_FNURL_IP_BURST": str(IP_BURST)})
APP = '''import base64, json, time
def handler(event, context):
    path = event.get("rawPath", "/")
    if path == "/respond":
        return json.loads(event["body"])
    if path == "/bare":
        return [1, "two"]
    if path == "/boom":
        raise ValueError("kaboom")
    if path == "/sleep":
        time.sleep(10)
    if path in ("/stream", "/stream-fail"):
        context.set_stream_metadata(content_type="text/plain", status_code=201, headers={"x-streamed": "yes"})
        def parts():
            for i in range(3):
                yield "part %d\\n" % i
                time.sleep(0.2)
            if path == "/stream-fail":
                raise RuntimeError("mid-stream")
        return parts()
    if path == "/mirror":
        raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else (event.get("body") or "").encode()
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
'''
ORIGIN = "https://app.example"


def req(method, path, body=None, headers=None):
    """(status, headers as http.client's message, body bytes) of one request to the gateway."""
    c = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def event_checks(pub):
    st, h, b = req("GET", f"/fn/{pub}/echo?x=1&x=2&y=%2C&flag",
                   headers={"Cookie": "c1=v1; c2=v2", "X-Multi": "a", "User-Agent": "fnurl-e2e/1"})
    ev = json.loads(b) if st == 200 else {}
    S.check("GET, no token: 200 with the event", st == 200 and ev.get("version") == "2.0", (st, b[:300]))
    if st != 200:
        return
    ctx = ev.get("requestContext", {})
    S.check("rawPath and rawQueryString exactly as sent",
            ev.get("rawPath") == "/echo" and ev.get("rawQueryString") == "x=1&x=2&y=%2C&flag", ev)
    S.check("queryStringParameters decoded, repeats comma-joined",
            ev.get("queryStringParameters") == {"x": "1,2", "y": ",", "flag": ""}, ev.get("queryStringParameters"))
    S.check("cookies split, no cookie header",
            ev.get("cookies") == ["c1=v1", "c2=v2"] and "cookie" not in ev.get("headers", {}), ev)
    S.check("headers lower-case, the internal credential never passed",
            ev["headers"].get("x-multi") == "a" and ev["headers"].get("user-agent") == "fnurl-e2e/1" and
            "x-minilambda-internal" not in ev["headers"], ev["headers"])
    S.check("requestContext: method, path, sourceIp, userAgent, requestId = X-Request-Id, stage",
            ctx.get("http", {}).get("method") == "GET" and ctx["http"].get("path") == "/echo" and
            ctx["http"].get("sourceIp") == "127.0.0.1" and ctx["http"].get("userAgent") == "fnurl-e2e/1" and
            ctx.get("requestId") == h.get("X-Request-Id") and ctx.get("stage") == "$default" and
            len(ctx.get("accountId", "")) == 12 and abs(ctx.get("timeEpoch", 0) / 1000 - time.time()) < 60,
            (h.get("X-Request-Id"), ctx.get("requestId"), ctx.get("stage"), ctx.get("timeEpoch"), time.time()))
    S.check("pathParameters.proxy", ev.get("pathParameters") == {"proxy": "echo"}, ev.get("pathParameters"))
    st, _, b = req("POST", f"/fn/{pub}/echo", b'{"k": "v"}', {"Content-Type": "application/json"})
    ev = json.loads(b) if st == 200 else {}
    S.check("POST JSON: the body as text", st == 200 and ev.get("body") == '{"k": "v"}' and
            ev.get("isBase64Encoded") is False and ev["requestContext"]["http"]["method"] == "POST", (st, b[:300]))
    st, _, b = req("DELETE", f"/fn/{pub}/echo/a/b")
    ev = json.loads(b) if st == 200 else {}
    S.check("DELETE with a deeper path", st == 200 and ev["requestContext"]["http"]["method"] == "DELETE" and
            ev.get("rawPath") == "/echo/a/b" and "body" not in ev, (st, b[:300]))
    st, _, b = req("GET", f"/fn/{pub}")
    ev = json.loads(b) if st == 200 else {}
    S.check("no rest: rawPath /", st == 200 and ev.get("rawPath") == "/" and "pathParameters" not in ev, (st, b[:200]))
    raw = bytes(range(256)) * 4
    st, h, b = req("PUT", f"/fn/{pub}/mirror?bin=1", raw, {"Content-Type": "application/octet-stream"})
    S.check("PUT binary: the exact bytes back (base64 both ways)",
            st == 200 and b == raw and h.get("Content-Type") == "application/octet-stream", (st, len(b), h.get("Content-Type")))


def response_checks(pub):
    def respond(doc):
        return req("POST", f"/fn/{pub}/respond", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    st, h, b = respond({"statusCode": 302, "headers": {"Location": "https://example.com/next"}})
    S.check("redirect: 302 with Location", st == 302 and h.get("Location") == "https://example.com/next" and
            b == b"", (st, dict(h), b))
    st, h, b = respond({"statusCode": 301, "headers": {"location": "/moved"}, "body": None})
    S.check("redirect: 301", st == 301 and h.get("Location") == "/moved", (st, dict(h)))
    st, h, b = respond({"statusCode": 418, "headers": {"Content-Type": "text/plain", "X-Custom": "yes", "X-Num": 7},
                        "multiValueHeaders": {"X-Multi": ["a", "b"]}, "cookies": ["a=1", "b=2; Path=/; HttpOnly"],
                        "body": "short and stout"})
    S.check("custom status, headers, multi-value headers, cookies, body: exactly",
            st == 418 and b == b"short and stout" and h.get("Content-Type") == "text/plain" and
            h.get("X-Custom") == "yes" and h.get("X-Num") == "7" and h.get_all("X-Multi") == ["a", "b"] and
            h.get_all("Set-Cookie") == ["a=1", "b=2; Path=/; HttpOnly"], (st, dict(h), b))
    st, h, b = respond({"statusCode": 204})
    S.check("204 without a body", st == 204 and b == b"", (st, b))
    st, h, b = respond({"statusCode": 200, "headers": {"Transfer-Encoding": "gzip", "Connection": "close"}, "body": "x"})
    S.check("framing headers from the function are dropped", st == 200 and b == b"x" and
            h.get("Connection") != "close" and h.get("Transfer-Encoding") is None, (st, dict(h)))
    st, h, b = respond({"statusCode": 1000})
    S.check("statusCode out of range: 502 invalid_function_response JSON",
            st == 502 and jerr(b).get("code") == "invalid_function_response" and
            h.get("Content-Type") == "application/json", (st, b))
    st, h, b = req("GET", f"/fn/{pub}/bare")
    S.check("bare value: 200 application/json", st == 200 and json.loads(b) == [1, "two"] and
            h.get("Content-Type") == "application/json", (st, b))
    st, h, b = req("GET", f"/fn/{pub}/boom")
    e = jerr(b)
    S.check("function error: 502 function_error JSON with its message and type",
            st == 502 and e.get("code") == "function_error" and e.get("message") == "kaboom" and
            e.get("error_type") == "ValueError" and h.get("Content-Type") == "application/json", (st, b))
    t0 = time.time()
    st, h, b = req("GET", f"/fn/{pub}/sleep")
    S.check("timeout: 504 function_timeout JSON", st == 504 and jerr(b).get("code") == "function_timeout" and
            h.get("Content-Type") == "application/json", (st, b, time.time() - t0))


def cors_checks(pub):
    st, h, b = req("OPTIONS", f"/fn/{pub}/anything",
                   headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
                            "Access-Control-Request-Headers": "content-type"})
    S.check("CORS preflight: 204 with the configured headers",
            st == 204 and h.get("Access-Control-Allow-Origin") == ORIGIN and
            h.get("Access-Control-Allow-Methods") == "GET,POST,PUT" and
            h.get("Access-Control-Allow-Headers") == "content-type" and h.get("Access-Control-Max-Age") == "300",
            (st, dict(h)))
    st, h, b = req("OPTIONS", f"/fn/{pub}/anything",
                   headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
    S.check("CORS preflight from another origin: 204 without CORS headers",
            st == 204 and h.get("Access-Control-Allow-Origin") is None, (st, dict(h)))
    st, h, b = req("GET", f"/fn/{pub}/bare", headers={"Origin": ORIGIN})
    S.check("actual response: Access-Control-Allow-Origin, Vary, Expose-Headers",
            st == 200 and h.get("Access-Control-Allow-Origin") == ORIGIN and "Origin" in (h.get("Vary") or "") and
            h.get("Access-Control-Expose-Headers") == "x-trace", (st, dict(h)))


def stream_checks(pub):
    """A streaming handler through the URL: status and headers from its metadata, each part
    as it is yielded (the first long before the last), an error mid-stream cuts the body."""
    c = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=30)
    try:
        t0 = time.time()
        c.request("GET", f"/fn/{pub}/stream", headers={"Origin": ORIGIN})
        r = c.getresponse()
        if r.status != 201:
            S.check("streamed: 201", False, (r.status, r.read()[:300]))
            return
        chunks, t_first, clean = [], None, False
        while True:  # the chunked body by hand: when each chunk came, and whether it ended
            size = r.fp.readline()
            if not size:
                break
            n = int(size.split(b";")[0], 16)
            if n == 0:
                clean = r.fp.readline() == b"\r\n"
                break
            chunks.append(r.fp.read(n))
            r.fp.readline()
            t_first = t_first or time.time() - t0
        total = time.time() - t0
        S.check("streamed: 201, its headers, chunked, CORS",
                r.headers.get("x-streamed") == "yes" and
                r.headers.get("Content-Type") == "text/plain" and r.headers.get("Transfer-Encoding") == "chunked" and
                r.headers.get("Access-Control-Allow-Origin") == ORIGIN, dict(r.headers))
        S.check("streamed: every part, the first before the function ended, a clean end",
                b"".join(chunks) == b"part 0\npart 1\npart 2\n" and t_first is not None and
                t_first < total - 0.3 and clean, (chunks, t_first, total, clean))
    finally:
        c.close()
    c = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=30)
    try:
        c.request("GET", f"/fn/{pub}/stream-fail")
        r = c.getresponse()
        try:
            r.read()
            cut = False
        except http.client.IncompleteRead:
            cut = True
        S.check("streamed, failing mid-stream: the body ends cut", r.status == 201 and cut, r.status)
    finally:
        c.close()


def jwt_checks(priv, auth):
    st, h, b = req("GET", f"/fn/{priv}/echo")
    S.check("JWT URL without a token: 401 JSON", st == 401 and jerr(b).get("code") == "unauthorized" and
            "Bearer" in (h.get("WWW-Authenticate") or ""), (st, b))
    st, h, b = req("GET", f"/fn/{priv}/echo", headers=auth)
    ev = json.loads(b) if st == 200 else {}
    claims = ev.get("requestContext", {}).get("authorizer", {}).get("jwt", {}).get("claims", {})
    S.check("JWT URL with a token: 200, the claims in the event, not the token",
            st == 200 and claims.get("sub") == "fnurl" and "authorization" not in ev.get("headers", {}), (st, b[:300]))
    st, h, b = req("GET", f"/ns/default/fn/{priv}/echo", headers=auth)
    S.check("the /ns/{ns}/fn/{fn} form", st == 200, (st, b[:200]))
    st, h, b = req("GET", f"/ns/other-ns/fn/{priv}/echo", headers=auth)
    S.check("another namespace's URL: 404 (no such function there)", st == 404, (st, b[:200]))


def main():
    run = uuid.uuid4().hex[:8]
    t0 = time.time()
    try:
        auth = S.start_platform("fnurl")
        pub, priv = f"url-pub-{run}", f"url-jwt-{run}"
        states = {}
        ts = [threading.Thread(target=lambda n=n: states.__setitem__(n, (S.deploy(n, {"app.py": APP}, timeout_s=1) or {}).get("state")))
              for n in (pub, priv)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if not S.check("functions deployed", all(v == "active" for v in states.values()), states):
            return
        print(f"# deployed after {time.time() - t0:.1f} s", flush=True)
        gw = S.url("gateway")
        st, h, b = req("GET", f"/fn/{pub}/echo")
        S.check("no URL configured: 404 not_found JSON", st == 404 and jerr(b).get("code") == "not_found" and
                f"/fn/{pub}" in jerr(b).get("message", ""), (st, b))
        st, b = jcall(gw, "PUT", f"/functions/{pub}/url", auth,
                      {"auth": "NONE", "cors": {"allow_origins": [ORIGIN], "allow_methods": ["GET", "POST", "PUT"],
                                                "allow_headers": ["content-type"], "expose_headers": ["x-trace"],
                                                "max_age": 300}})
        S.check("PUT /functions/{fn}/url (NONE, CORS)", st in (200, 201), (st, b))
        st, b = jcall(gw, "PUT", f"/functions/{priv}/url", auth, {"auth": "JWT"})
        S.check("PUT /functions/{fn}/url (JWT)", st in (200, 201), (st, b))
        time.sleep(0.3)  # past the gateway's function cache TTL
        event_checks(pub)
        response_checks(pub)
        cors_checks(pub)
        stream_checks(pub)
        jwt_checks(priv, auth)
        codes = [req("GET", f"/fn/{pub}/bare")[0] for _ in range(IP_BURST + 5)]
        st, h, b = req("GET", f"/fn/{pub}/bare")
        S.check("public URL: the client IP's budget runs out (429 rate_limited JSON, Retry-After)",
                429 in codes and st == 429 and jerr(b).get("code") == "rate_limited" and h.get("Retry-After"),
                (codes, st, b))
        values, _ = scrape(gw)
        key = f'minilambda_gateway_fnurl_requests_total{{namespace="default",function="{pub}",auth="NONE",result="ok"}}'
        S.check("metric: URL requests by outcome", values.get(key, 0) >= 10, [k for k in values if "fnurl" in k][:8])
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
