"""Invoke input errors are the caller's (issue 13, item 4), end to end on the real daemons:
a body that is not JSON, or not UTF-8, is a 400 (native: invalid_request_content; AWS route:
InvalidRequestContentException), never the runtime's 502 Runtime.UnmarshalError; an empty
body is the event {}; a body over 6 MiB is a 413 the client reads (AWS:
RequestTooLargeException), not a connection reset; LogResult is there (empty) when the
function printed nothing. Clients: raw HTTP (http.client sends the whole body, then reads),
boto3 and the AWS CLI v2. Prints ok/not ok lines."""
import base64, http.client, json, os, re, socket, subprocess, sys, tempfile, time, uuid

from mlstack import BIN, Suite

PORTS = {"gateway": 31980, "lambda-executor": 31981, "build-master": 31982, "build-worker": 31992}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
AWS_KEY, AWS_SECRET = "AKIDINVOKEINPUT", base64.b64encode(os.urandom(24)).decode()
S = Suite("test-invoke-input", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_AWS_ACCESS_KEY": AWS_KEY, "MINILAMBDA_AWS_SECRET_KEY": AWS_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
ECHO = "def handler(event, context):\n    return {'event': event}\n"
TALK = "def handler(event, context):\n    print('said something')\n    return 1\n"
BIG = b'{"k":"' + b"x" * (7 << 20) + b'"}'  # 7 MiB of valid JSON: over the 6 MiB limit
BAD = {"non-JSON": b"{not json", "invalid UTF-8": b'{"s":"\xff\xfe"}', "plain text": b"hello"}


def post(port, path, body, headers=None):
    """One POST on a fresh connection, body sent whole before reading (as boto3 does).
    Returns (status, headers with lower-case names, body) or (None, the error, b"")."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("POST", path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except OSError as e:
        return None, repr(e), b""
    finally:
        c.close()


def expect_continue(port, path, length, headers):
    """Sends only the head of a request with Expect: 100-continue and returns what the server
    answers within 5 s (a client that waits for 100 before sending its body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
                 "Expect: 100-continue", *[f"{k}: {v}" for k, v in headers.items()]]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            pass
        return got.decode(errors="replace")


def jdoc(b):
    try:
        return json.loads(b)
    except ValueError:
        return {}


def native(run, fn, token):
    gw, ex = PORTS["gateway"], PORTS["lambda-executor"]
    auth = {"Authorization": "Bearer " + token}
    for where, port, h in (("executor", ex, {}), ("gateway", gw, auth)):
        path = f"/functions/{fn}/invoke"
        for what, body in BAD.items():
            st, hd, data = post(port, path, body, h)
            err = jdoc(data).get("error", {})
            S.check(f"{where}: {what} body -> 400 invalid_request_content, no function error",
                    st == 400 and err.get("code") == "invalid_request_content" and
                    "x-function-error" not in hd and b"stackTrace" not in data, (st, hd, data[:300]))
        st, hd, data = post(port, path, b"", h)
        S.check(f"{where}: empty body -> 200, the event is {{}}", st == 200 and jdoc(data) == {"event": {}},
                (st, data[:200]))
        st, hd, data = post(port, path, b'{"a":"caf\xc3\xa9"}', h)
        S.check(f"{where}: valid JSON in UTF-8 still runs", st == 200 and jdoc(data) == {"event": {"a": "café"}},
                (st, data[:200]))
        st, hd, data = post(port, path, b"{oops", dict(h, **{"X-Invocation-Type": "Event"}))
        S.check(f"{where}: Event with a non-JSON body -> 400, nothing queued", st == 400, (st, data[:200]))
        t0 = time.time()
        st, hd, data = post(port, path, BIG, h)
        S.check(f"{where}: 7 MiB body -> 413 payload_too_large that the client reads (no reset)",
                st == 413 and jdoc(data).get("error", {}).get("code") == "payload_too_large", (st, hd, data[:200]))
        print(f"# {where}: 7 MiB refused in {time.time() - t0:.2f} s", flush=True)
        st, hd, data = post(port, path, b"{}", dict(h, **{"X-Log-Type": "Tail"}))
        S.check(f"{where}: X-Log-Result present and empty when the function printed nothing",
                st == 200 and hd.get("x-log-result") == "", (st, hd))


def aws_raw(fn, quiet, token):
    port, path = PORTS["gateway"], f"/2015-03-31/functions/{fn}/invocations"
    auth = {"Authorization": "Bearer " + token}
    for what, body in BAD.items():
        st, hd, data = post(port, path, body, auth)
        doc = jdoc(data)
        S.check(f"aws route: {what} -> 400 InvalidRequestContentException in the AWS shape",
                st == 400 and hd.get("x-amzn-errortype") == "InvalidRequestContentException" and
                doc.get("Type") == "User" and doc.get("message") and hd.get("x-amzn-requestid") and
                "x-amz-function-error" not in hd, (st, hd, data[:300]))
    st, hd, data = post(port, path, b"", auth)
    S.check("aws route: empty body -> 200 with the event {}", st == 200 and jdoc(data) == {"event": {}},
            (st, data[:200]))
    st, hd, data = post(port, path, BIG, auth)
    doc = jdoc(data)
    S.check("aws route: 7 MiB -> 413 RequestTooLargeException in the AWS shape, read by the client",
            st == 413 and hd.get("x-amzn-errortype") == "RequestTooLargeException" and doc.get("message") and
            hd.get("x-amzn-requestid"), (st, hd, data[:300]))
    head = expect_continue(port, path, len(BIG), auth)
    S.check("aws route: 7 MiB with Expect: 100-continue -> 413 RequestTooLargeException at once, no 100",
            head.startswith("HTTP/1.1 413") and "RequestTooLargeException" in head and "100 Continue" not in head,
            head[:300])
    st, hd, data = post(port, f"/2015-03-31/functions/{quiet}/invocations", b"{}", dict(auth, **{"X-Amz-Log-Type": "Tail"}))
    S.check("aws route: X-Amz-Log-Result present and empty when the function printed nothing",
            st == 200 and hd.get("x-amz-log-result") == "", (st, hd))


def boto(fn, talker):
    import boto3, botocore.config, botocore.exceptions
    cl = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{PORTS['gateway']}", region_name="us-east-1",
                      aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET,
                      config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                                    read_timeout=60))

    def code_of(**kw):
        try:
            r = cl.invoke(FunctionName=fn, **kw)
            return "ok", r
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"], e.response
        except Exception as e:  # a connection reset would land here
            return type(e).__name__ + ": " + str(e)[:200], None

    for what, body in BAD.items():
        code, _ = code_of(Payload=body)
        S.check(f"boto3: {what} -> InvalidRequestContentException", code == "InvalidRequestContentException", code)
    code, r = code_of(Payload=b"")
    S.check("boto3: empty Payload -> 200, event {}", code == "ok" and r["StatusCode"] == 200 and
            json.loads(r["Payload"].read()) == {"event": {}}, code)
    code, r = code_of(Payload=BIG)
    S.check("boto3: 7 MiB -> RequestTooLargeException (not a connection error)",
            code == "RequestTooLargeException", code)
    code, r = code_of(Payload=b"{}", LogType="Tail")
    S.check("boto3: LogResult present and empty when the function printed nothing",
            code == "ok" and r.get("LogResult") == "", (code, r and {k: v for k, v in r.items() if k != "Payload"}))
    r = cl.invoke(FunctionName=talker, Payload=b"{}", LogType="Tail")
    S.check("boto3: LogResult carries what the function printed",
            b"said something" in base64.b64decode(r.get("LogResult", "")), r.get("LogResult"))


def aws_cli(fn):
    if not os.access("/usr/bin/aws", os.X_OK) or b"aws-cli/2" not in subprocess.run(
            ["/usr/bin/aws", "--version"], capture_output=True).stdout:
        print("# SKIP aws cli checks: /usr/bin/aws (AWS CLI v2, Debian's awscli) is not installed", flush=True)
        return
    home = tempfile.mkdtemp(prefix="invoke-input-aws-")
    env = {"PATH": os.environ["PATH"], "HOME": home, "AWS_ACCESS_KEY_ID": AWS_KEY,
           "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1",
           "AWS_PAGER": "", "AWS_CONFIG_FILE": os.path.join(home, "c"),
           "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "k")}
    out = os.path.join(home, "out.json")

    def aws(payload, *args):
        src = os.path.join(home, "payload")
        with open(src, "wb") as f:
            f.write(payload)
        p = subprocess.run(["/usr/bin/aws", "lambda", "invoke", "--endpoint-url",
                            f"http://127.0.0.1:{PORTS['gateway']}", "--function-name", fn,
                            "--payload", "fileb://" + src, *args, out], capture_output=True, text=True,
                           env=env, timeout=120)
        return p.returncode, p.stdout, p.stderr

    rc, so, se = aws(b"{not json")
    S.check("aws cli: non-JSON payload -> InvalidRequestContentException",
            rc != 0 and "InvalidRequestContentException" in se, (rc, se[-300:]))
    rc, so, se = aws(b'"\xff"')
    S.check("aws cli: invalid UTF-8 payload -> InvalidRequestContentException",
            rc != 0 and "InvalidRequestContentException" in se, (rc, se[-300:]))
    rc, so, se = aws(BIG)
    S.check("aws cli: 7 MiB payload -> RequestTooLargeException (not a connection error)",
            rc != 0 and "RequestTooLargeException" in se, (rc, se[-300:]))
    rc, so, se = aws(b"", "--log-type", "Tail")
    meta = jdoc(so)
    S.check("aws cli: empty payload -> 200 with the event {}; LogResult present and empty",
            rc == 0 and meta.get("StatusCode") == 200 and meta.get("LogResult") == "" and
            jdoc(open(out, "rb").read()) == {"event": {}}, (rc, so[-300:], se[-300:]))


def quiet_logs():
    for name in ("lambda-executor", "gateway"):
        text = open(os.path.join(S.logs, name + ".log"), errors="replace").read()
        bad = re.findall(r".*(?:cannot add response header|UnmarshalError).*", text)
        S.check(f"{name} log: no header warning, no UnmarshalError", not bad, bad[:3])


def main():
    run = uuid.uuid4().hex[:8]
    t0 = time.time()
    for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
        S.start(name)
    try:
        token = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "input"], capture_output=True,
                               text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
        fn, talker = f"in-echo-{run}", f"in-talk-{run}"
        ok = S.check("functions deployed", (S.deploy(fn, {"app.py": ECHO}) or {}).get("state") == "active" and
                     (S.deploy(talker, {"app.py": TALK}) or {}).get("state") == "active")
        if ok:
            native(run, fn, token)
            aws_raw(fn, fn, token)
            boto(fn, talker)
            aws_cli(fn)
            quiet_logs()
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
