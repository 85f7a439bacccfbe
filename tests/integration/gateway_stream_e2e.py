"""Streamed responses through the gateway, end to end: the real gateway binary in front of a
stub executor and build-master (python, streaming like docs/logs.md's follow endpoints) that
emit an SSE event every 100 ms on GET /functions/{fn}/logs?follow=1.

Checks: the client gets the headers at once and each event as it is emitted (first event
long before the upstream ends; per-event delay from emission measured, asserted generously);
events in order, none lost; a stream outlives the gateway's total upstream timeout (2 s
here) but not a silence that long; NDJSON streams too; a client that does not read pauses
the upstream (bounded buffering) and gets every byte once it reads; a client that goes away
closes the upstream connection (the stub sees its writes fail); the query string and
Last-Event-ID pass through; a JWT without functions:read is refused before any upstream
sees the request; plain JSON answers on the new routes are unchanged (Content-Length, not
chunked).
"""
import hashlib, http.client, http.server, json, os, socket, statistics, sys, threading, time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_e2e as g  # noqa: E402  (tokens, the gateway launcher, check/note)
from gateway_e2e import check, note  # noqa: E402

EVENT_GAP_S = 0.1
BIG_CHUNK = 64 * 1024


class Stub:
    """One upstream: records every request and what became of each stream it served."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.requests, self.streams = [], {}
        stub = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_GET(self):
                stub.handle(self)

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def seen(self, prefix):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def reply(self, h, status, doc):
        body = json.dumps(doc).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        route, _, query = h.path.partition("?")
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        parts = route.strip("/").split("/")
        # the gateway forwards only the contract's query parameters: the stream's shape
        # comes in the function name / build id instead, e.g. "s-n40-kfollow"
        for opt in (parts[1].split("-")[1:] if len(parts) > 1 and parts[1].startswith("s-") else []):
            q[{"n": "n", "k": "key", "i": "idle", "b": "big", "f": "format"}[opt[0]]] = [opt[1:]]
        if route == "/health":
            return self.reply(h, 200, {"status": "ok"})
        rec = {"method": h.command, "path": h.path, "body": body.decode(errors="replace"),
               "headers": {k.lower(): v for k, v in h.headers.items()}}
        with self.lock:
            self.requests.append(rec)
        if "follow" in q:
            return self.stream(h, q)
        self.reply(h, 200, {"served_by": self.name, "method": h.command, "path": h.path,
                            "body": rec["body"], "lines": [], "next_cursor": None})

    def chunk(self, h, data):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        h.wfile.flush()

    def stream(self, h, q):
        """Chunked SSE (or NDJSON): ?n= events EVENT_GAP_S apart, ?idle= seconds of silence
        after the first, ?big= bytes in BIG_CHUNK pieces as fast as the reader takes them."""
        key = q.get("key", [""])[0]
        st = {"emitted": [], "sent": 0, "broken_at": None, "done": False}
        with self.lock:
            self.streams[key] = st
        ndjson = q.get("format", [""])[0] == "ndjson"
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson" if ndjson else "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        try:
            if "big" in q:
                total = int(q["big"][0])
                for i in range(total // BIG_CHUNK):
                    self.chunk(h, big_piece(i))
                    st["sent"] += BIG_CHUNK
            else:
                for i in range(int(q.get("n", ["30"])[0])):
                    t = time.time()
                    doc = json.dumps({"i": i, "t": t})
                    self.chunk(h, (doc + "\n" if ndjson else f"id: {i}\ndata: {doc}\n\n").encode())
                    st["emitted"].append(t)
                    time.sleep(float(q["idle"][0]) if i == 0 and "idle" in q else EVENT_GAP_S)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
            st["done"] = True
        except (BrokenPipeError, ConnectionResetError):
            st["broken_at"] = time.time()
            h.close_connection = True


def big_piece(i):
    return (b"%08d" % i) * (BIG_CHUNK // 8)


def sse_events(text):
    """[(id, data)] of an SSE body's complete events."""
    out = []
    for block in text.split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        out.append((fields.get("id"), fields.get("data")))
    return out


def open_stream(port, path, auth=g.TOKEN, headers=None, rcvbuf=None):
    """A raw HTTP/1.1 GET: (socket, status line, headers dict, leftover bytes, t_headers)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n{extra}\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = s.recv(65536)
        if not more:
            break
        buf += more
    t = time.time()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return s, lines[0], hdrs, rest, t


class Dechunker:
    """Incremental chunked-body decoder: feed() bytes, data holds the body so far."""

    def __init__(self):
        self.raw, self.data, self.ended = b"", b"", False

    def feed(self, b):
        self.raw += b
        while not self.ended:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                return
            if len(rest) < size + 2:
                return
            self.data += rest[:size]
            self.raw = rest[size + 2:]


def read_events(s, rest, want=None, hdrs=None):
    """Reads SSE events until the end (or `want` events); [(received_at, id, data)], ended.
    A body that is not chunked (an error answer) gives ([], False)."""
    d, got, seen = Dechunker(), [], 0
    if hdrs is not None and hdrs.get("transfer-encoding") != "chunked":
        return got, False
    d.feed(rest)
    while True:
        evs = sse_events(d.data.decode())
        now = time.time()
        got += [(now, i, data) for i, data in evs[seen:]]
        seen = len(evs)
        if d.ended or (want and len(got) >= want):
            return got, d.ended
        more = s.recv(65536)
        if not more:
            return got, d.ended
        d.feed(more)


def check_follow(port, ex):
    path = "/functions/s-n40-kfollow/logs?follow=1&since=10m&stream=stdout&stream=stderr&x=1&q=a%20b"
    t0 = time.time()
    s, status, hdrs, rest, t_head = open_stream(port, path, headers={"Last-Event-ID": "7"})
    got, ended = read_events(s, rest, hdrs=hdrs)
    s.close()
    st = ex.streams.get("follow", {})
    emitted = st.get("emitted", [])
    check("follow: 200 text/event-stream, chunked, headers before the first event's gap is over",
          status.endswith("200 OK") and hdrs.get("content-type") == "text/event-stream" and
          hdrs.get("transfer-encoding") == "chunked" and t_head - t0 < 1.0, (status, hdrs, t_head - t0))
    check("follow: the upstream's Cache-Control passes, X-Request-Id is the gateway's",
          hdrs.get("cache-control") == "no-cache" and hdrs.get("x-request-id"), hdrs)
    check("follow: all 40 events, in order, intact, then a clean end",
          ended and [int(i) for _, i, _ in got] == list(range(40)) and
          [json.loads(d)["i"] for _, _, d in got] == list(range(40)), (ended, [i for _, i, _ in got]))
    delays = [r - json.loads(d)["t"] for r, _, d in got]
    if delays:
        note(f"per-event delay emission -> client: median {statistics.median(delays) * 1000:.1f} ms, "
             f"max {max(delays) * 1000:.1f} ms over {len(delays)} events {EVENT_GAP_S * 1000:.0f} ms apart")
    check("follow: the first event arrived long before the upstream ended (incremental, not buffered)",
          got and emitted and got[0][0] < emitted[-1] - 2.0, (got[:1], emitted[-1:]))
    check("follow: each event reached the client soon after its emission (median < 250 ms, max < 1 s)",
          delays and statistics.median(delays) < 0.25 and max(delays) < 1.0, delays)
    check("follow: the stream outlived the gateway's 2 s total upstream timeout (lasted > 3.5 s)",
          got and got[-1][0] - t0 > 3.5, got[-1][0] - t0 if got else None)
    seen = ex.seen("/functions/s-n40-kfollow/logs")
    fwd = seen[-1] if seen else {"path": "", "headers": {}}
    check("follow: the known query parameters pass in order, repeats kept, unknown ones dropped",
          fwd["path"] == "/functions/s-n40-kfollow/logs?follow=1&since=10m&stream=stdout&stream=stderr&q=a%20b",
          fwd["path"])
    check("follow: Last-Event-ID and the caller's namespace are forwarded, Authorization is not",
          fwd["headers"].get("last-event-id") == "7" and fwd["headers"].get("x-minilambda-namespace") == "default"
          and "authorization" not in fwd["headers"], fwd["headers"])


def check_disconnect(port, ex):
    s, status, hdrs, rest, _ = open_stream(port, "/functions/s-n600-kgone/logs?follow=1")
    got, _ = read_events(s, rest, want=3, hdrs=hdrs)
    t_close = time.time()
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline and not ex.streams.get("gone", {}).get("broken_at"):
        time.sleep(0.05)
    st = ex.streams.get("gone", {})
    broken = st.get("broken_at")
    if broken:
        note(f"client disconnect -> upstream connection closed in {(broken - t_close) * 1000:.0f} ms")
    check("disconnect: the client read 3 events, then left",
          status.endswith("200 OK") and len(got) >= 3, (status, len(got)))
    check("disconnect: the gateway closed the upstream connection (the stub's writes failed, < 5 s)",
          broken is not None and broken - t_close < 5.0 and not st.get("done"), st)


def check_idle(port):
    t0 = time.time()
    s, status, hdrs, rest, _ = open_stream(port, "/functions/s-n2-i20-kidle/logs?follow=1")
    got, _ = read_events(s, rest, hdrs=hdrs)
    t_end = time.time() - t0
    s.close()
    note(f"a stream silent past the 2 s upstream timeout ended after {t_end:.1f} s")
    # curl's speed is an average over its last ~5 s: the cut comes that much after the timeout
    check("idle: a stream silent for longer than the upstream timeout is ended (well before the 20 s silence is over)",
          status.endswith("200 OK") and len(got) == 1 and t_end < 14.0, (status, len(got), t_end))


def check_ndjson(port, bm):
    t0 = time.time()
    s, status, hdrs, rest, _ = open_stream(port, "/builds/s-fndjson-n20-knd/log?follow=1")
    d, first = Dechunker(), None
    d.feed(rest)
    while not d.ended and hdrs.get("transfer-encoding") == "chunked":
        if first is None and b"\n" in d.data:
            first = time.time()
        more = s.recv(65536)
        if not more:
            break
        d.feed(more)
    s.close()
    lines = [json.loads(l) for l in d.data.decode().splitlines()]
    check("ndjson: GET /builds/{id}/log?follow=1 goes to the build-master and streams (first line early)",
          hdrs.get("content-type") == "application/x-ndjson" and [l["i"] for l in lines] == list(range(20))
          and first is not None and first - t0 < 1.0 and bm.seen("/builds/s-fndjson-n20-knd/log"), (hdrs, len(lines), first and first - t0))


def check_backpressure(port, ex):
    total = 48 * 1024 * 1024
    s, status, hdrs, rest, _ = open_stream(port, f"/functions/s-b{total}-kbig/logs?follow=1", rcvbuf=65536)
    time.sleep(3)  # the client reads nothing: the gateway must pause the upstream
    stalled = ex.streams.get("big", {}).get("sent", 0)
    note(f"a client that does not read: the upstream got {stalled / 1048576:.1f} MiB of {total >> 20} MiB out")
    d = Dechunker()
    d.feed(rest)
    h = hashlib.sha256()
    n = 0
    while not d.ended and hdrs.get("transfer-encoding") == "chunked":
        more = s.recv(1 << 20)
        if not more:
            break
        d.feed(more)
        h.update(d.data)
        n += len(d.data)
        d.data = b""
    s.close()
    want = hashlib.sha256(b"".join(big_piece(i) for i in range(total // BIG_CHUNK))).hexdigest()
    check("backpressure: a client that does not read holds the upstream back (< half sent after 3 s)",
          status.endswith("200 OK") and 0 < stalled < total // 2, stalled)
    check("backpressure: once it reads, it gets every byte in order and a clean end (48 MiB > the 8 MiB response cap)",
          d.ended and n == total and h.hexdigest() == want, (d.ended, n))


def check_auth_and_plain(port, ex, bm):
    before = len(ex.seen("/functions/fn1/logs"))
    st, h, data = g.request(port, "GET", "/functions/fn1/logs?follow=1&key=refused",
                            auth=g.bearer("functions:invoke"))
    check("auth: a JWT without functions:read -> 403 insufficient_scope, nothing upstream",
          st == 403 and "insufficient_scope" in h.get("WWW-Authenticate", "") and
          len(ex.seen("/functions/fn1/logs")) == before, (st, dict(h), data[:200]))
    st, _, _ = g.request(port, "GET", "/functions/fn1/logs?follow=1", auth=None)
    check("auth: no token -> 401", st == 401, st)
    st, _, _ = g.request(port, "POST", "/invocations/i1/deliveries/d1/redeliver", auth=g.bearer("functions:read"))
    check("auth: redeliver needs functions:write -> 403 with functions:read", st == 403, st)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/functions/fn1/logs?limit=5&since=1h", headers={"Authorization": g.TOKEN})
    r = c.getresponse()
    body = r.read()
    c.close()
    doc = g.jbody(body) or {}
    check("plain: GET /functions/{fn}/logs (no follow) is a JSON answer with Content-Length, as before",
          r.status == 200 and r.getheader("Content-Type") == "application/json" and
          r.getheader("Content-Length") == str(len(body)) and r.getheader("Transfer-Encoding") is None and
          doc.get("served_by") == "executor" and doc.get("path") == "/functions/fn1/logs?limit=5&since=1h",
          (r.status, r.getheaders(), body[:200]))
    routes = [("GET", "/builds/b1/log?after=3&limit=2", "build-master"),
              ("GET", "/builds/b1/deliveries", "build-master"),
              ("POST", "/builds/b1/deliveries/d1/redeliver", "build-master"),
              ("GET", "/invocations/i1/deliveries", "executor"),
              ("POST", "/invocations/i1/deliveries/d1/redeliver", "executor")]
    for method, path, owner in routes:
        st, _, data = g.request(port, method, path, body=b"" if method == "POST" else None)
        doc = g.jbody(data) or {}
        check(f"route: {method} {path.split('?')[0]} -> {owner}",
              st == 200 and doc.get("served_by") == owner and doc.get("path") == path and doc.get("method") == method,
              (st, data[:200]))
    st, _, data = g.request(port, "POST", "/invocations/i1/deliveries/d1/redeliver", body={"note": "x"})
    check("route: redeliver forwards a small JSON body", st == 200 and (g.jbody(data) or {}).get("body") == '{"note": "x"}',
          (st, data[:200]))
    st, _, _ = g.request(port, "POST", "/builds/b1/deliveries/d1/redeliver", body=b"x" * (64 * 1024))
    check("route: a redeliver body over 16 KiB -> 413", st == 413, st)


def main():
    os.makedirs(g.LOGS, exist_ok=True)
    ex, bm = Stub("executor"), Stub("build-master")

    def checks():
        port, _ = g.start_gateway("gw-stream", ex.url, bm.url)
        time.sleep(0.5)  # the first health round has run
        check_follow(port, ex)
        check_disconnect(port, ex)
        check_ndjson(port, bm)
        check_backpressure(port, ex)
        check_idle(port)
        check_auth_and_plain(port, ex, bm)
    g.run_and_exit("gateway stream e2e", checks)


if __name__ == "__main__":
    main()
