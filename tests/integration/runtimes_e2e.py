"""Runtimes users know and the function record's own fields (docs/versions.md "Runtimes",
"Function record additions"), against the real test stack (build-master, build-worker,
lambda-executor).

Names are taken from GET /runtimes, so the test passes on any host with a python 3 in
/usr/bin (Debian's 3.11, ...) and with or without node (18, 20, ...). The executor is started
with MINILAMBDA_RUNTIMES naming one python3.N that the host does not have as the host's
python: the executor must refuse it (its version does not fit), never run it on another
interpreter. Checks: GET /runtimes; create with python3.N runs that interpreter and shows its
exact version as runtime_version; a missing runtime is 400 invalid_runtime naming the
available ones (create and PATCH); java21 is 400; the nodejs alias and nodejsN.x; PATCH of
handler takes effect without a rebuild, PATCH of runtime; description and tags (merge);
last_update_status InProgress during a code update, then Successful, Failed after a failing
build; an invoke of a function whose runtime is not installed is 502 Runtime.Unavailable.
Prints "ok - ..." / "not ok - ..." per check.
"""
import base64, json, os, re, subprocess, sys, time, uuid

from mlstack import Suite, active_artifact, call, make_zip, post_build_event

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 1530  # clear of the stack's own ports
TAG = uuid.uuid4().hex[:6]


def host_python_minor():
    out = subprocess.run(["/usr/bin/python3", "--version"], capture_output=True, text=True).stdout
    return int(re.match(r"Python 3\.(\d+)", out).group(1))


HOST_MINOR = host_python_minor()
# a python3.N the executor is told to run with the host's (other) python: must stay unavailable
FAKE = next(f"python3.{m}" for m in (12, 13, 10, 9, 11) if m != HOST_MINOR)
S = Suite("test-runtimes", {"build-master": BASE + 2, "build-worker": BASE + 3, "lambda-executor": BASE + 1},
          {"MINILAMBDA_RUNTIMES": f"{FAKE}=/usr/bin/python3"})
EXEC, BM = S.url("lambda-executor"), S.url("build-master")

PY = """import sys
def handler(event, context):
    return {"minor": sys.version_info[1], "which": "handler"}
def other(event, context):
    return {"which": "other"}
"""
JS = """exports.handler = async (event) => ({ major: Number(process.versions.node.split('.')[0]) });
"""


def req(base, method, path, body=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    st, _, raw = call(method, base + path, json.dumps(body).encode() if body is not None else None, h)
    try:
        return st, json.loads(raw) if raw else None
    except ValueError:
        return st, raw


def create(name, runtime, files, handler="app.handler", **extra):
    doc = {"name": name, "runtime": runtime, "handler": handler,
           "code_base64": base64.b64encode(make_zip(files)).decode(), **extra}
    return req(BM, "POST", "/functions", doc)


def code_update(name, files):
    return req(BM, "PUT", f"/functions/{name}/code", {"code_base64": base64.b64encode(make_zip(files)).decode()})


def wait_fn(name, cond, timeout=60):
    end, doc = time.time() + timeout, None
    while time.time() < end:
        st, doc = req(EXEC, "GET", f"/functions/{name}")
        if st == 200 and cond(doc):
            return doc
        time.sleep(0.1)
    return doc


def err_code(b):
    return b.get("error", {}).get("code") if isinstance(b, dict) else None


def err_msg(b):
    return b.get("error", {}).get("message", "") if isinstance(b, dict) else ""


def check_list():
    st, doc = req(EXEC, "GET", "/runtimes")
    items = doc.get("runtimes", []) if st == 200 else []
    by = {i["name"]: i for i in items}
    S.check("GET /runtimes answers a list", st == 200 and items, (st, doc))
    py = [i for i in items if re.fullmatch(r"python3\.\d+", i["name"])]
    S.check("the host's python is listed as python3.N with its exact version",
            any(i["name"] == f"python3.{HOST_MINOR}" and i["version"].startswith(f"Python 3.{HOST_MINOR}.")
                and i["family"] == "python" for i in py), items)
    S.check("python3 is an alias of a listed python", any("python3" in i["aliases"] for i in py), py)
    S.check(f"{FAKE} configured with another python's interpreter is not listed", FAKE not in by and
            not any(FAKE in i["aliases"] for i in items), items)
    prov = by.get("provided.al2023", {})
    S.check("provided.al2023 with aliases provided and provided.al2", set(prov.get("aliases", [])) ==
            {"provided", "provided.al2"} and prov.get("interpreter") is None, prov)
    node = [i for i in items if re.fullmatch(r"nodejs\d+\.x", i["name"])]
    if node:
        n = node[0]
        S.check("nodejsN.x matches its node's major", n["version"].startswith("Node.js v" + n["name"][6:-2] + "."), n)
    return by, py, node


def check_python(by):
    name, rt = f"py-{TAG}", f"python3.{HOST_MINOR}"
    st, b = create(name, rt, {"app.py": PY}, description="first", tags={"team": "a"})
    S.check(f"create with {rt} is accepted", st == 202, (st, b))
    f = S.wait_state(name)
    S.check(f"{rt} function is active", f and f["state"] == "active", f)
    S.check("runtime_version is the exact interpreter", f and f.get("runtime") == rt and
            f.get("runtime_version") == by[rt]["version"], f)
    S.check("last_update_status Successful after the create", f and f.get("last_update_status") == "Successful"
            and f.get("last_update_reason") is None, f)
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check(f"invoke runs python 3.{HOST_MINOR}", st == 200 and r == {"minor": HOST_MINOR, "which": "handler"}, (st, r))
    return name, f


def check_refusals(by, name):
    avail = f"python3.{HOST_MINOR}"
    missing = next(f"python3.{m}" for m in (9, 10, 12, 13) if f"python3.{m}" not in by and
                   not any(f"python3.{m}" in i["aliases"] for i in by.values()))
    st, b = create(f"miss-{TAG}", missing, {"app.py": PY})
    S.check(f"create with {missing} (not installed) is 400 invalid_runtime naming what is available",
            st == 400 and err_code(b) == "invalid_runtime" and missing in err_msg(b) and avail in err_msg(b), (st, b))
    st, b = create(f"fake-{TAG}", FAKE, {"app.py": PY})
    S.check(f"create with {FAKE} (configured, wrong version) is 400 invalid_runtime",
            st == 400 and err_code(b) == "invalid_runtime", (st, b))
    st, b = create(f"java-{TAG}", "java21", {"app.py": PY})
    S.check("create with java21 is 400", st == 400, (st, b))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"runtime": missing})
    S.check("PATCH runtime to a missing one is 400 invalid_runtime", st == 400 and err_code(b) == "invalid_runtime"
            and avail in err_msg(b), (st, b))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"runtime": "ruby3.3"})
    S.check("PATCH runtime to an unknown name is 400 invalid_runtime", st == 400 and err_code(b) == "invalid_runtime", (st, b))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"handler": "app"})
    S.check("PATCH of a handler not of the runtime's form is 400", st == 400 and err_code(b) == "invalid_field", (st, b))


def check_patch(name, f):
    st, p = req(EXEC, "PATCH", f"/functions/{name}", {"handler": "app.other"})
    S.check("PATCH handler answers the new handler", st == 200 and p["handler"] == "app.other", (st, p))
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check("... and takes effect at once, no rebuild", st == 200 and r == {"which": "other"}, (st, r))
    S.check("... same code revision", req(EXEC, "GET", f"/functions/{name}")[1]["version"] == f["version"])
    st, p = req(EXEC, "PATCH", f"/functions/{name}", {"runtime": "python3", "handler": "app.handler"})
    S.check("PATCH runtime to the python3 alias", st == 200 and p["runtime"] == "python3" and
            p["runtime_version"].startswith("Python 3."), (st, p))
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check("... runs", st == 200 and r.get("which") == "handler", (st, r))
    S.check("description and tags given at create", p.get("description") == "first" and p.get("tags") == {"team": "a"}, p)
    st, p = req(EXEC, "PATCH", f"/functions/{name}", {"description": "d" * 256, "tags": {"k": "v", "x": "y"}})
    st2, p2 = req(EXEC, "PATCH", f"/functions/{name}", {"tags": {"x": None, "z": "1"}})
    S.check("tags merge: set, and null removes", st == st2 == 200 and p2["tags"] == {"team": "a", "k": "v", "z": "1"}
            and p2["description"] == "d" * 256, (p, p2))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"description": "d" * 257})
    S.check("description of 257 characters is 400", st == 400 and err_code(b) == "invalid_field", (st, b))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"tags": {f"t{i}": "v" for i in range(48)}})
    S.check("more than 50 tags after the merge is 400", st == 400, (st, b))
    st, b = req(EXEC, "PATCH", f"/functions/{name}", {"tags": {"k": 5}})
    S.check("a tag value that is no string is 400", st == 400, (st, b))
    S.check("refused PATCHes changed nothing", req(EXEC, "GET", f"/functions/{name}")[1]["tags"] ==
            {"team": "a", "k": "v", "z": "1"})


def check_updates(name):
    # the build follows the executor's handler: after a PATCH the new ZIP needs main.py, not app.py
    st0, _ = req(EXEC, "PATCH", f"/functions/{name}", {"handler": "main.handler"})
    st, b = code_update(name, {"main.py": PY + "\nimport time\ntime.sleep(0)\n"})
    st2, f = req(EXEC, "GET", f"/functions/{name}")
    S.check("during a code update last_update_status is InProgress", st == 202 and st2 == 200 and
            f["last_update_status"] == "InProgress" and f["state"] == "active", (st, b, f))
    f = wait_fn(name, lambda d: d["last_update_status"] != "InProgress")
    S.check("... then Successful (built with the PATCHed handler's file)", st0 == 200 and f and
            f["last_update_status"] == "Successful" and f["handler"] == "main.handler", (st0, f))
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check("... and runs the new code", st == 200 and r.get("which") == "handler", (st, r))
    st, b = code_update(name, {"other.py": "x = 1\n"})   # no app.py: the build fails
    f = wait_fn(name, lambda d: d["last_update_status"] == "Failed")
    S.check("a failing build: last_update_status Failed with its reason, still active",
            st == 202 and f and f["last_update_status"] == "Failed" and f["last_update_reason"] and f["state"] == "active",
            (st, f))
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check("... and the function still runs its last good code", st == 200 and r.get("which") == "handler", (st, r))


def check_node(node):
    if not node:
        print("# no node on this host: nodejs checks skipped")
        return
    for rt in ("nodejs", node[0]["name"]):
        name = f"js-{rt.replace('.', '-')}-{TAG}"
        st, b = create(name, rt, {"index.js": JS}, handler="index.handler")
        f = S.wait_state(name)
        S.check(f"{rt}: created and active", st == 202 and f and f["state"] == "active", (st, b, f))
        st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
        S.check(f"{rt}: runs node with runtime_version Node.js v...", st == 200 and f and
                f["runtime_version"] == f"Node.js v{r['major']}" + f["runtime_version"][len(f"Node.js v{r['major']}"):]
                and f["runtime_version"].startswith(f"Node.js v{r['major']}."), (st, r, f))


def deliver(fid, name, runtime, artifact):
    """A signed completed build event straight to the executor: a function whose runtime the
    build-master would have refused."""
    bid = str(uuid.uuid4())
    doc = {"type": "build.status", "build_id": bid, "function_id": fid, "status": "completed", "error": None,
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
           "function": {"name": name, "runtime": runtime, "handler": "app.handler",
                        "config": {"memory_mb": 128, "timeout_s": 30, "env": {}}},
           "artifact": {"prefix": artifact[0], "sha256": artifact[1], "size_bytes": 100, "files": 1}}
    return post_build_event(EXEC, S.secret, doc)


def check_unavailable_invoke(src_id):
    name = f"gone-{TAG}"
    S.check(f"a {FAKE} function arrives by a build event", deliver(str(uuid.uuid4()), name, FAKE,
                                                                    active_artifact(src_id)) == 200)
    st, r = req(EXEC, "POST", f"/functions/{name}/invoke", {})
    S.check(f"invoking it is 502 Runtime.Unavailable naming {FAKE}, nothing runs",
            st == 502 and isinstance(r, dict) and r.get("errorType") == "Runtime.Unavailable" and
            FAKE in r.get("errorMessage", ""), (st, r))
    st, f = req(EXEC, "GET", f"/functions/{name}")
    S.check("its record shows runtime_version null", st == 200 and f.get("runtime_version") is None, f)


def main():
    try:
        S.start("lambda-executor")
        S.start("build-master")
        S.start("build-worker")
        by, py, node = check_list()
        name, f = check_python(by)
        check_refusals(by, name)
        check_patch(name, f)
        check_updates(name)
        check_node(node)
        check_unavailable_invoke(f["id"])
    finally:
        S.stop_all()
    print(f"# {S.failures} failure(s)")
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
