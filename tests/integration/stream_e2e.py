"""Response streaming end to end (issue 20 item 3, docs/http.md "Streaming") on the real
daemons: functions that emit one NDJSON record every 100 ms, each carrying the wall-clock ms
it was emitted, reach the client through the gateway record by record.

  - python generator and node awslambda.streamifyResponse through POST /functions/{fn}/invoke:
    200 with the stream's content type, chunked, each record received < 10 ms after it was
    emitted (median and max over 6 records), the first one long before the function ends;
  - @aws-sdk/client-lambda's InvokeWithResponseStreamCommand (npm, pinned by
    tests/aws-sdk-js/package-lock.json, installed once into build/aws-sdk-js/<hash>) consumes
    the gateway's event stream: PayloadChunk events as they come, then InvokeComplete;
    a non-streaming function gives one PayloadChunk; an error mid-stream is InvokeComplete's
    ErrorCode;
  - an error and a timeout mid-stream: the records so far, then the body ends cut (no final
    chunk), and the audit row says failed / timed_out;
  - a non-streaming function is unchanged (application/json, Content-Length); a streaming one
    called on the executor without X-Minilambda-Stream gets the collected bytes.
Ports: ML_PORT_BASE + 2200..2203. Prints ok/not ok lines."""
import base64, hashlib, http.client, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, uuid

from mlstack import BIN, ROOT, Suite, call, make_zip

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2200
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
AWS_KEY, AWS_SECRET = "AKIDSTREAME2E", base64.b64encode(os.urandom(24)).decode()
S = Suite("test-stream", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_AWS_ACCESS_KEY": AWS_KEY, "MINILAMBDA_AWS_SECRET_KEY": AWS_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
RECORDS, GAP_S = 6, 0.1
BIG_PIECES = 384  # 24 MiB: more than every buffer on the way (kernel and httpd's 1 MiB bounds)
JS_DIR = os.path.join(ROOT, "tests", "aws-sdk-js")

PY = f"""import time
def gen(event, context):
    for i in range({RECORDS}):
        time.sleep({GAP_S})
        yield {{'i': i, 't': time.time() * 1000}}
def boom(event, context):
    yield {{'i': 0, 't': time.time() * 1000}}
    yield {{'i': 1, 't': time.time() * 1000}}
    raise RuntimeError('broke mid-stream')
def slow(event, context):
    yield {{'i': 0, 't': time.time() * 1000}}
    time.sleep(5)
    yield {{'i': 1, 't': time.time() * 1000}}
def plain(event, context):
    return {{'ok': True}}
def big(event, context):
    piece = b'x' * 65536
    for i in range({BIG_PIECES}):
        yield piece
"""
JS = f"""const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {{
  responseStream.setContentType('application/x-ndjson');
  for (let i = 0; i < {RECORDS}; i++) {{
    await sleep({int(GAP_S * 1000)});
    responseStream.write(JSON.stringify({{ i, t: Date.now() }}) + '\\n');
  }}
  responseStream.end();
}});
"""
SDK_SCRIPT = r"""
import { LambdaClient, InvokeWithResponseStreamCommand } from "@aws-sdk/client-lambda";
const client = new LambdaClient({ endpoint: process.env.ML_ENDPOINT, region: "us-east-1", maxAttempts: 1 });
const out = {};
for (const fn of process.env.ML_FNS.split(",")) {
  const r = { chunks: [], complete: null };
  try {
    const res = await client.send(new InvokeWithResponseStreamCommand({ FunctionName: fn, Payload: Buffer.from("{}") }));
    r.status = res.StatusCode; r.version = res.ExecutedVersion; r.type = res.ResponseStreamContentType;
    for await (const ev of res.EventStream) {
      if (ev.PayloadChunk) r.chunks.push({ at: Date.now(), data: Buffer.from(ev.PayloadChunk.Payload).toString("utf8") });
      if (ev.InvokeComplete) r.complete = ev.InvokeComplete;
    }
  } catch (e) { r.error = `${e.name}: ${e.message}`; }
  out[fn] = r;
}
console.log(JSON.stringify(out));
"""


def stream_post(path, headers, body=b"{}"):
    """POSTs and reads the chunked answer itself, line by line as it arrives (http.client hides
    a missing final chunk): (status, headers, [(recv_ms, line)], "complete" when the final
    chunk came, else "cut")."""
    s = socket.create_connection(("127.0.0.1", PORTS["gateway"]), timeout=30)
    f = s.makefile("rb")
    try:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
                "Connection: close", *[f"{k}: {v}" for k, v in headers.items()]]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status = int(f.readline().split()[1])
        hd = {}
        while (line := f.readline().rstrip(b"\r\n")):
            k, _, v = line.decode().partition(":")
            hd[k.strip().lower()] = v.strip()
        lines, pending = [], b""
        if hd.get("transfer-encoding") != "chunked":
            return status, hd, [(time.time() * 1000, l) for l in f.read().splitlines(True)], "complete"
        while True:
            size_line = f.readline()
            if not size_line.strip():
                return status, hd, lines, "cut"
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return status, hd, lines, "complete"
            data = f.read(size)
            f.readline()
            if len(data) < size:
                return status, hd, lines, "cut"
            pending += data
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                lines.append((time.time() * 1000, line + b"\n"))
    finally:
        f.close()
        s.close()


def slow_read(path, headers, stall_s):
    """POSTs with a small receive buffer, reads nothing for stall_s, then the whole chunked body:
    (status, body bytes, "complete" or "cut")."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(30)
    s.connect(("127.0.0.1", PORTS["gateway"]))
    f = s.makefile("rb")
    try:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 2", "Connection: close",
                *[f"{k}: {v}" for k, v in headers.items()]]
        s.sendall(("\r\n".join(head) + "\r\n\r\n{}").encode())
        time.sleep(stall_s)
        status = int(f.readline().split()[1])
        while f.readline().rstrip(b"\r\n"):
            pass
        got = 0
        while True:
            size_line = f.readline()
            if not size_line.strip():
                return status, got, "cut"
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return status, got, "complete"
            got += len(f.read(size))
            f.readline()
    finally:
        f.close()
        s.close()


def delays(lines):
    """ms from each record's emission to its arrival."""
    out = []
    for at, line in lines:
        try:
            out.append(at - json.loads(line)["t"])
        except (ValueError, KeyError):
            out.append(float("inf"))
    return out


def check_live(label, st, hd, lines, end, want_type):
    S.check(f"{label}: 200, {want_type}, chunked, the invocation id",
            st == 200 and hd.get("content-type") == want_type and hd.get("transfer-encoding") == "chunked"
            and hd.get("x-invocation-id"), (st, hd))
    S.check(f"{label}: all {RECORDS} records, in order, the body whole", end == "complete" and
            [json.loads(l)["i"] for _, l in lines] == list(range(RECORDS)), (end, lines))
    d = delays(lines)
    if len(d) == RECORDS:
        med, mx = statistics.median(d), max(d)
        print(f"# {label}: emission -> client delay median {med:.1f} ms, max {mx:.1f} ms "
              f"({', '.join(f'{x:.1f}' for x in d)})", flush=True)
        # the median is the claim (docs/http.md); the max only has to show that no record waited
        # for the next one (100 ms later): one slow scheduling slice on a loaded 2-core machine
        # must not fail the suite
        S.check(f"{label}: records reach the client as emitted (median < 10 ms, none held to the next)",
                med < 10 and mx < GAP_S * 1000 / 2, d)
        S.check(f"{label}: the first record arrives before the function ends (~{(RECORDS - 1) * GAP_S:.1f} s earlier)",
                lines[0][0] < json.loads(lines[-1][1])["t"] - (RECORDS - 2) * GAP_S * 1000, lines)


def audit_status(inv_id, token):
    """The invocation's audit status through the gateway (the row is written asynchronously)."""
    end = time.time() + 10
    while time.time() < end:
        st, _, body = call("GET", f"{S.url('gateway')}/invocations/{inv_id}",
                           headers={"Authorization": "Bearer " + token})
        if st == 200:
            return json.loads(body).get("status")
        time.sleep(0.2)
    return None


def js_modules():
    """npm ci of tests/aws-sdk-js into build/aws-sdk-js/<lockfile sha256[:16]> once per lockfile
    (the install aws_clients_e2e.py uses too)."""
    with open(os.path.join(JS_DIR, "package-lock.json"), "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(ROOT, "build", "aws-sdk-js")
    dest = os.path.join(cache, tag)
    if os.path.isfile(os.path.join(dest, "node_modules", "@aws-sdk", "client-lambda", "package.json")):
        return dest
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{tag}-", dir=cache)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(JS_DIR, f), tmp)
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"npm ci failed: {p.stderr[-600:]}")
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def deploy_all(specs):
    """Submits every build at once, then waits for all: {name: state}."""
    for name, files, runtime, handler, cfg in specs:
        doc = {"name": name, "runtime": runtime, "handler": handler,
               "code_base64": base64.b64encode(make_zip(files)).decode(), **cfg}
        st, _, body = call("POST", S.url("build-master") + "/functions", json.dumps(doc).encode(),
                           {"Content-Type": "application/json"})
        if st != 202:
            raise RuntimeError(f"deploy {name}: {st} {body[:200]}")
    return {name: (S.wait_state(name) or {}).get("state") for name, *_ in specs}


def sdk(fns):
    dest = js_modules()
    script = os.path.join(dest, "stream_e2e_sdk.mjs")
    with open(script, "w") as f:
        f.write(SDK_SCRIPT)
    p = subprocess.run(["node", script], capture_output=True, text=True, timeout=60, cwd=dest,
                       env=dict(os.environ, AWS_ACCESS_KEY_ID=AWS_KEY, AWS_SECRET_ACCESS_KEY=AWS_SECRET,
                                ML_ENDPOINT=S.url("gateway"), ML_FNS=",".join(fns)))
    if p.returncode != 0:
        raise RuntimeError(f"sdk script: {p.stderr[-600:]}")
    return json.loads(p.stdout)


def main():
    run = uuid.uuid4().hex[:6]
    t0 = time.time()
    for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
        S.start(name)
    try:
        token = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "stream",
                                "--scope", "functions:read functions:invoke"], capture_output=True, text=True,
                               env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
        auth = {"Authorization": "Bearer " + token}
        fn = {k: f"st-{k}-{run}" for k in ("gen", "boom", "slow", "plain", "big", "node")}
        states = deploy_all([(fn[k], {"app.py": PY}, "python3", f"app.{k}", {"timeout_s": 1 if k == "slow" else 10})
                             for k in ("gen", "boom", "slow", "plain", "big")] +
                            [(fn["node"], {"index.js": JS}, "nodejs", "index.handler", {"timeout_s": 10})])
        if not S.check("functions deployed", all(s == "active" for s in states.values()), states):
            return
        print(f"# deployed in {time.time() - t0:.1f} s", flush=True)
        for k, label in (("gen", "python generator"), ("node", "node streamifyResponse")):
            post = lambda: stream_post(f"/functions/{fn[k]}/invoke", auth)  # noqa: E731
            post()  # warm: the cold start is not what is measured
            check_live(label, *post(), "application/x-ndjson")

        st, hd, lines, end = stream_post(f"/functions/{fn['boom']}/invoke", auth)
        S.check("error mid-stream: 200, the records before it, then the body cut (no final chunk)",
                st == 200 and len(lines) == 2 and end == "cut", (st, lines, end))
        S.check("error mid-stream: the audit row says failed",
                audit_status(hd.get("x-invocation-id"), token) == "failed")
        st, hd, lines, end = stream_post(f"/functions/{fn['slow']}/invoke", auth)
        S.check("timeout mid-stream: the first record, then the body cut at the 1 s timeout",
                st == 200 and len(lines) == 1 and end == "cut", (st, lines, end))
        S.check("timeout mid-stream: the audit row says timed_out",
                audit_status(hd.get("x-invocation-id"), token) == "timed_out")

        st, got, end = slow_read(f"/functions/{fn['big']}/invoke", auth, 2.0)
        S.check("a slow reader (2 s stalled) gets the whole 24 MiB stream: the function waits for it",
                st == 200 and got == BIG_PIECES * 65536 and end == "complete", (st, got, end))

        c = http.client.HTTPConnection("127.0.0.1", PORTS["gateway"], timeout=30)
        c.request("POST", f"/functions/{fn['plain']}/invoke", body=b"{}", headers=auth)
        r = c.getresponse()
        body, hd = r.read(), {k.lower(): v for k, v in r.getheaders()}
        c.close()
        S.check("non-streaming function unchanged: 200 application/json with Content-Length",
                r.status == 200 and json.loads(body) == {"ok": True} and hd.get("content-type") == "application/json"
                and "content-length" in hd and "transfer-encoding" not in hd, (r.status, hd, body))
        st, hdrs, body = call("POST", f"{S.url('lambda-executor')}/functions/{fn['gen']}/invoke", b"{}")
        recs = [json.loads(l) for l in body.splitlines()] if st == 200 else []
        S.check("executor without X-Minilambda-Stream: the collected records, application/x-ndjson",
                st == 200 and [x["i"] for x in recs] == list(range(RECORDS)) and
                "application/x-ndjson" in str(hdrs), (st, body[:200]))

        out = sdk([fn["gen"], fn["boom"], fn["plain"]])
        g = out[fn["gen"]]
        data = "".join(ch["data"] for ch in g["chunks"])
        recs = [json.loads(l) for l in data.splitlines() if l]
        S.check("aws sdk: InvokeWithResponseStream 200, event stream, $LATEST",
                g.get("status") == 200 and g.get("version") == "$LATEST" and
                g.get("type") == "application/vnd.amazon.eventstream", g)
        S.check(f"aws sdk: PayloadChunk events carry the {RECORDS} records, then InvokeComplete without error",
                [x["i"] for x in recs] == list(range(RECORDS)) and len(g["chunks"]) >= RECORDS // 2 and
                g.get("complete") is not None and not g["complete"].get("ErrorCode"), g)
        if len(g["chunks"]) == RECORDS:
            d = [ch["at"] - json.loads(ch["data"])["t"] for ch in g["chunks"]]
            print(f"# aws sdk: emission -> PayloadChunk delay median {statistics.median(d):.1f} ms, max {max(d):.1f} ms",
                  flush=True)
            S.check("aws sdk: chunks arrive as emitted (median < 10 ms)", statistics.median(d) < 10, d)
        b = out[fn["boom"]]
        S.check("aws sdk: error mid-stream -> the records, then InvokeComplete ErrorCode Unhandled with the message",
                len("".join(ch["data"] for ch in b["chunks"]).splitlines()) == 2 and
                (b.get("complete") or {}).get("ErrorCode") == "Unhandled" and
                "broke mid-stream" in (b.get("complete") or {}).get("ErrorDetails", ""), b)
        p = out[fn["plain"]]
        S.check("aws sdk: a non-streaming function -> one PayloadChunk with its result, InvokeComplete",
                len(p["chunks"]) == 1 and json.loads(p["chunks"][0]["data"]) == {"ok": True} and
                p.get("complete") is not None and not p["complete"].get("ErrorCode"), p)
    finally:
        S.stop_all()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
