"""Build logs (docs/logs.md §3) on the test stack, the build-master and build-worker called
directly as the gateway would (X-Minilambda-Namespace; mlstack adds the internal token):

  1. a normal build's GET /builds/{id}/log: claim, download, extract, check, install, upload, done in
     order, numbered 1..n, with the package's real size, the files and bytes extracted, the
     artifact's size and the timings; paging with after/limit; next_after null at the end;
  2. a hostile package (path traversal, absolute path, symlink out of the package, in-tree
     symlink): one error line per refused entry naming it and why, then a failed 'done' line;
  3. live: while the build's last step is held (a test transaction locks the table the worker
     records into), the log already shows claim..upload with status building; a follower
     (?follow=1, SSE) gets the same lines as events (id: seq) and its stream ends right after
     the 'done' line once the build completes; Last-Event-ID resumes;
  4. another namespace: GET .../log and ?follow=1 are 404 with a missing build's body.
Prints "ok - ..." / "not ok - ..."."""
import base64, http.client, json, os, re, signal, subprocess, threading, time, uuid
from mlstack import Suite, make_zip, ns_call, wait_build as mlstack_wait_build

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2370
PORTS = {"lambda-executor": BASE, "build-master": BASE + 1, "build-worker": BASE + 2}
S = Suite("test-build-logs", PORTS)
NS_H = "X-Minilambda-Namespace"
APP = "def handler(event, context):\n    return event\n"
UTIL = "VALUE = 42\n" * 10


def bm(method, path, ns, body=None):
    return ns_call(S.url("build-master"), method, path, ns, body)


def create(ns, name, zipdata):
    st, b = bm("POST", "/functions", ns, {"name": name, "runtime": "python3", "handler": "app.handler",
                                           "code_base64": base64.b64encode(zipdata).decode()})
    if st != 202:
        raise RuntimeError(f"create {name}: {st} {b}")
    return b["build_id"]


def wait_build(ns, bid):
    return mlstack_wait_build(S.url("build-master"), ns, bid)


def read_log(ns, bid, timeout=30):
    """The whole log once it has ended (next_after null)."""
    end, b = time.time() + timeout, None
    while time.time() < end:
        st, b = bm("GET", f"/builds/{bid}/log?limit=1000", ns)
        if st == 200 and b["next_after"] is None:
            return b
        time.sleep(0.1)
    return b if st == 200 else None


def sse(ns, bid, headers=None, query=""):
    """GET ...?follow=1 as (status, [(id, data)], ended cleanly)."""
    c = http.client.HTTPConnection("127.0.0.1", PORTS["build-master"], timeout=90)
    c.request("GET", f"/builds/{bid}/log?follow=1{query}", headers={NS_H: ns, **(headers or {})})
    r = c.getresponse()
    if r.status != 200:
        return r.status, json.loads(r.read() or b"null"), False
    events, cur = [], {}
    try:
        while True:
            line = r.readline()
            if not line:
                return 200, events, True
            line = line.decode().rstrip("\n")
            if line == "":
                if "data" in cur:
                    events.append((int(cur["id"]), json.loads(cur["data"])))
                cur = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                cur[k] = v
    except OSError:
        return 200, events, False
    finally:
        c.close()


def symlink_zip(files, links):
    """make_zip plus symbolic links {name: target} (unix mode 0120777 in the central directory)."""
    import io, zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name)
            zi.external_attr = (0o100644) << 16
            z.writestr(zi, data)
        for name, target in links.items():
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = (0o120777) << 16
            z.writestr(zi, target)
    return buf.getvalue()


def normal(run, ns):
    zipdata = make_zip({"app.py": APP, "lib/util.py": UTIL})
    bid = create(ns, f"plain-{run}", zipdata)
    b = wait_build(ns, bid)
    S.check("the normal build completes", b and b["status"] == "completed", b)
    log = read_log(ns, bid)
    lines = log["lines"] if log else []
    steps = [l["step"] for l in lines]
    S.check("its log has each step in order: claim, download, extract, check, install, upload, done",
            steps == ["claim", "download", "download", "extract", "check", "install", "upload", "done"], steps)
    S.check("lines are numbered 1..n, timestamps in order, all info",
            [l["seq"] for l in lines] == list(range(1, len(lines) + 1)) and
            [l["ts"] for l in lines] == sorted(l["ts"] for l in lines) and all(l["level"] == "info" for l in lines),
            lines)
    msg = {l["step"]: l["message"] for l in lines}
    S.check("claim names the worker and the attempt", re.fullmatch(r"claimed by worker \S+:\d+ \(attempt 1\)", msg.get("claim", "")), msg)
    S.check("download gives the package's real size and the time",
            re.fullmatch(rf"downloaded {len(zipdata)} bytes in \d+ ms", msg.get("download", "")), (len(zipdata), msg))
    S.check("extract gives entries, files, bytes and the time",
            re.fullmatch(rf"extracted 2 entries \(2 files, {len(APP) + len(UTIL)} bytes\) in \d+ ms", msg.get("extract", "")), msg)
    S.check("check names the handler", "handler 'app.handler' found" in msg.get("check", ""), msg)
    S.check("install says why nothing was installed", msg.get("install") == "no requirements.txt at the package root: nothing to install", msg)
    m = re.fullmatch(r"uploaded the artifact: (\d+) bytes \(2 files, sha256 ([0-9a-f]{64})\) in \d+ ms", msg.get("upload", ""))
    S.check("upload gives the artifact's size and hash (as the build records them) and the time",
            m and b and int(m.group(1)) == b["artifact"]["size_bytes"] and m.group(2) == b["artifact"]["sha256"], (msg, b))
    S.check("the outcome line gives the total time", re.fullmatch(r"build completed in \d+ ms", msg.get("done", "")), msg)
    st, p = bm("GET", f"/builds/{bid}/log?after=2&limit=2", ns)
    S.check("after/limit page: seq 3 and 4, next_after 4, the build's status",
            st == 200 and [l["seq"] for l in p["lines"]] == [3, 4] and p["next_after"] == 4 and p["status"] == "completed"
            and p["build_id"] == bid, (st, p))
    st, p = bm("GET", f"/builds/{bid}/log?limit=0", ns)
    S.check("limit=0 is 400 invalid_request", st == 400 and p["error"]["code"] == "invalid_request", (st, p))
    return bid


def hostile(run, ns):
    zipdata = symlink_zip({"app.py": APP, "../evil.py": "x = 1\n", "/abs.py": "y = 2\n"},
                          {"escape": "../../../etc/passwd", "inner": "app.py"})
    bid = create(ns, f"hostile-{run}", zipdata)
    b = wait_build(ns, bid)
    S.check("the hostile build fails", b and b["status"] == "failed", b)
    log = read_log(ns, bid)
    lines = log["lines"] if log else []
    refused = [l["message"] for l in lines if l["step"] == "extract" and l["level"] == "error"]
    want = [("traversal", "'../evil.py'"), ("absolute_path", "'/abs.py'"), ("symlink", "'escape'"), ("symlink", "'inner'")]
    S.check("one error line per refused entry, naming it and why",
            len(refused) == 4 and all(any(m.startswith(f"rejected ({r}): ") and n in m for m in refused) for r, n in want),
            refused)
    S.check("the symlink out of the package is said to point outside it",
            any("'escape'" in m and "pointing outside the package" in m for m in refused), refused)
    last = lines[-1] if lines else {}
    S.check("the log ends with a failed 'done' line (no upload)",
            last.get("step") == "done" and last.get("level") == "error" and last.get("message", "").startswith("build failed after")
            and "upload" not in [l["step"] for l in lines], lines[-2:])


def live(run, ns):
    lock = subprocess.Popen(["psql", os.environ["MINILAMBDA_BUILD_DB_URL"], "-qAt"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    lock.stdin.write("BEGIN;\nLOCK TABLE build_artifact_files IN EXCLUSIVE MODE;\n\\echo locked\n")
    lock.stdin.flush()
    S.check("a test transaction holds the table the worker records a completed build into",
            lock.stdout.readline().strip() == "locked")
    bid = create(ns, f"live-{run}", make_zip({"app.py": APP}))
    end, page = time.time() + 60, None
    while time.time() < end:
        st, page = bm("GET", f"/builds/{bid}/log", ns)
        if st == 200 and any(l["step"] == "upload" for l in page["lines"]):
            break
        time.sleep(0.05)
    steps = [l["step"] for l in (page or {}).get("lines", [])]
    S.check("the log is readable while the build runs: status building, claim..upload, no done yet, next_after set",
            page and page["status"] == "building" and steps[:1] == ["claim"] and "upload" in steps and "done" not in steps
            and page["next_after"] == len(steps), page)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=sse(ns, bid)), daemon=True)
    t.start()
    time.sleep(1.0)
    S.check("the follower stays connected while the build is held", t.is_alive())
    lock.stdin.write("COMMIT;\n")
    lock.stdin.close()
    lock.wait(30)
    t.join(60)
    st, events, ended = result.get("r", (None, [], False))
    log = read_log(ns, bid)
    S.check("follow streams every line as an event (id = seq) and ends after the 'done' line",
            st == 200 and ended and [i for i, _ in events] == list(range(1, len(events) + 1)) and events
            and events[-1][1]["step"] == "done" and events[-1][1]["message"].startswith("build completed"),
            (st, ended, events[-2:]))
    S.check("the streamed lines are the stored ones", log and [e for _, e in events] == log["lines"], (events, log))
    n = len(events)
    st, again, ended = sse(ns, bid, {"Last-Event-ID": str(n - 1)})
    S.check("Last-Event-ID resumes after that line (the finished build's stream ends at once)",
            st == 200 and ended and [i for i, _ in again] == [n], (st, again))
    return bid


def other_namespace(run, ns, bid):
    missing = str(uuid.uuid4())
    for other in (f"other-{run}", "default"):
        st, b = bm("GET", f"/builds/{bid}/log", other)
        mst, mb = bm("GET", f"/builds/{missing}/log", other)
        S.check(f"GET /builds/{{id}}/log from namespace {other}: 404 as a missing build",
                st == 404 and mst == 404 and b["error"]["message"].replace(bid, "x") == mb["error"]["message"].replace(missing, "x"),
                (st, b, mb))
        st, body, _ = sse(other, bid)
        S.check(f"?follow=1 from namespace {other}: 404", st == 404, (st, body))


def shutdown_with_follower(run, ns):
    """A follower of a build that never ends (no build-worker) does not keep the build-master
    from stopping: SIGTERM ends its stream and the process exits 0."""
    S.procs["build-worker"].send_signal(signal.SIGTERM)
    S.procs["build-worker"].wait(60)
    bid = create(ns, f"stuck-{run}", make_zip({"app.py": APP}))
    result = {}
    t = threading.Thread(target=lambda: result.update(r=sse(ns, bid)), daemon=True)
    t.start()
    time.sleep(1.0)
    alive = t.is_alive()
    S.procs["build-master"].send_signal(signal.SIGTERM)
    try:
        code = S.procs["build-master"].wait(10)  # generous: a follower notices within one 200 ms poll
    except subprocess.TimeoutExpired:
        code = None
    t.join(10)
    S.check("a follower of a build still queued stays connected; SIGTERM ends its stream and the"
            " build-master exits 0", alive and code == 0 and not t.is_alive() and result.get("r", (0,))[0] == 200,
            (alive, code, result))


def main():
    run = uuid.uuid4().hex[:8]
    ns = f"logs-{run}"
    try:
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        normal(run, ns)
        hostile(run, ns)
        bid = live(run, ns)
        other_namespace(run, ns, bid)
        shutdown_with_follower(run, ns)
    finally:
        S.stop_all()
    raise SystemExit(1 if S.failures else 0)


main()
