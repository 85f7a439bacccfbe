"""Build-time dependencies (issue 19; services/build-worker/install.h) with no internet: a local
PEP 503 index and a local npm registry (tests/integration/depfixtures.py) feed a private
build-master + build-worker + executor (MINILAMBDA_PIP_INDEX_URL, MINILAMBDA_NPM_REGISTRY,
MINILAMBDA_PIP_ALLOW_SDIST for the hostile sdist), called directly as the gateway would:

  1. python + requirements.txt (two wheels, one requiring a third): the build completes, the
     artifact's file list (build_artifact_files) holds the installed files, the function imports
     them and returns their values;
  2. node + package.json + package-lock.json (npm ci) builds and runs; without a lockfile it
     builds with a warning line in the build log;
  3. a missing package: the build fails, its error names the package and the index URL;
  4. hostile build code (an sdist's setup.py; npm preinstall/postinstall, tests/deps/probe.*):
     /etc/shadow unreadable (its content nowhere: log, artifact, answers), no write to /usr,
     /etc, /var/task or the worker's scratch, no connection to the stack's Postgres/Redis or to
     203.0.113.1 (no route; nothing is ever sent there), the egress proxy answers 403 for a
     host that is not the registry; checked in what the scripts ship and on the host;
  5. cache: a code-only change rebuilds from the cache (a build-log line says so),
     minilambda_build_dep_cache_total{...,result="hit"} grows by one, the index saw no new
     download, and the build is faster than the miss;
  6. the hidden-dependency trap: `import yaml` (on the host, not in the artifact) fails at
     invoke with Runtime.ImportModuleError; a local wheel in requirements.txt works;
  7. opt-out: minilambda.json {"build":{"install":false}} installs nothing (a log line says so);
     a vendored node_modules/ is used as is.
Prints "ok - ..." / "not ok - ..."."""
import base64, datetime, json, os, re, shutil, subprocess, tempfile, time, urllib.parse, uuid
import depfixtures as dx
from mlstack import ROOT, Suite, make_zip, ns_call, psql, scrape, wait_build

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2430  # clear of the stack's and other suites' ports
PORTS = {"lambda-executor": BASE, "build-master": BASE + 1, "build-worker": BASE + 2}
RUN = uuid.uuid4().hex[:8]
NS = f"deps-{RUN}"
TAG = f"{RUN}"
WORK = tempfile.mkdtemp(prefix="build-deps-")
LOGS = os.path.join(ROOT, ".run", "test-build-deps")
SCRATCH = os.path.join(LOGS, "scratch")
DEPS = os.path.join(ROOT, "tests", "deps")
S = None  # the Suite, once the registries are up


def port_of(url):
    return urllib.parse.urlsplit(url).port


PG_PORT = port_of(os.environ["MINILAMBDA_BUILD_DB_URL"])
REDIS_PORT = port_of(os.environ.get("MINILAMBDA_REDIS_URL", "redis://127.0.0.1:6379"))


def bm(method, path, body=None):
    return ns_call(S.url("build-master"), method, path, NS, body)


def invoke(name, event=None, timeout=30):
    """Invokes name; while the executor has not yet heard of its newest build (409
    build_in_progress, or the previous code after an update: want_v), tries again."""
    end = time.time() + timeout
    while True:
        st, r = ns_call(S.url("lambda-executor"), "POST", f"/functions/{name}/invoke", NS, event or {})
        if st != 409 or time.time() > end:
            return st, r
        time.sleep(0.2)


def wait_active(name, bid, timeout=30):
    """Until the executor's view of name has the build bid active (its webhook arrived)."""
    end = time.time() + timeout
    while time.time() < end:
        st, f = ns_call(S.url("lambda-executor"), "GET", f"/functions/{name}", NS)
        if st == 200 and isinstance(f, dict) and bid in json.dumps(f):
            return f
        time.sleep(0.2)
    return None


def create(name, runtime, handler, files):
    st, b = bm("POST", "/functions", {"name": name, "runtime": runtime, "handler": handler,
                                      "code_base64": base64.b64encode(make_zip(files)).decode()})
    if st != 202:
        raise RuntimeError(f"create {name}: {st} {b}")
    return b["build_id"]


def update(name, files):
    st, b = bm("PUT", f"/functions/{name}/code", {"code_base64": base64.b64encode(make_zip(files)).decode()})
    if st != 202:
        raise RuntimeError(f"update {name}: {st} {b}")
    return b["build_id"]


def build(bid, name=None):
    """The finished build; for a completed one of name, once the executor has it active."""
    b = wait_build(S.url("build-master"), NS, bid, timeout=120) or {}
    if name and b.get("status") == "completed":
        wait_active(name, bid)
    return b


def log_lines(bid):
    st, b = bm("GET", f"/builds/{bid}/log?limit=1000")
    return b["lines"] if st == 200 and isinstance(b, dict) else []


def log_text(bid):
    return "\n".join(f"{l.get('step')} {l.get('level')} {l.get('message')}" for l in log_lines(bid))


def artifact_files(bid):
    return psql(f"SELECT string_agg(path, ',' ORDER BY path) FROM build_artifact_files WHERE build_id = '{bid}'",
                "MINILAMBDA_BUILD_DB_URL").split(",")


def seconds(b):
    """A build's run time (started_at .. finished_at), seconds."""
    f = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (f(b["finished_at"]) - f(b["started_at"])).total_seconds()


def cache_hits(eco):
    values, _ = scrape(S.url("build-worker"))
    return sum(v for k, v in values.items() if k.startswith("minilambda_build_dep_cache_total{")
               and f'ecosystem="{eco}"' in k and 'result="hit"' in k)


def deploy_active(name, runtime, handler, files, what):
    bid = create(name, runtime, handler, files)
    b = build(bid, name)
    S.check(f"{what}: the build completes", b.get("status") == "completed", (b.get("status"), b.get("error"), log_text(bid)[-800:]))
    return bid, b


# ------------------------------------------------------------------ fixtures

PROBE_CONFIG = None


def python_fixtures(index):
    w = os.path.join(WORK, "wheels")
    index.add(dx.make_wheel(w, "mlfake-alpha", "1.0", {"mlfake_alpha/__init__.py": "from mlfake_gamma import G\nA = 'alpha' + G\n"},
                            requires=["mlfake-gamma>=1"]))
    index.add(dx.make_wheel(w, "mlfake_beta", "2.0", {"mlfake_beta.py": "B = 'beta'\n"}))
    index.add(dx.make_wheel(w, "mlfake.gamma", "1.1", {"mlfake_gamma/__init__.py": "G = '+gamma'\n"}))
    index.add(dx.make_wheel(w, "mlfake-yaml", "6.0", {"mlfake_yaml/__init__.py": "def safe_load(s):\n    return {'loaded': s}\n"}))
    with open(os.path.join(DEPS, "probe.py")) as f:
        probe = f.read()
    setup_py = (f"PROBE_CONFIG = {PROBE_CONFIG['pip']!r}\n" + probe +
                "with open('mlfake_hostile_report.py', 'w') as f:\n"
                "    f.write('REPORT = ' + repr(REPORT) + '\\n')\n"
                "from setuptools import setup\n"
                "setup(name='mlfake-hostile', version='0.1', py_modules=['mlfake_hostile_report'])\n")
    index.add(dx.make_sdist(w, "mlfake-hostile", "0.1", setup_py, {}))


def npm_fixtures(reg):
    pk = os.path.join(WORK, "npm")
    reg.publish(dx.make_npm_package(os.path.join(pk, "ml-ms"), "ml-ms", "1.0.0", {"index.js": "module.exports = (x) => x * 1000;\n"}))
    reg.publish(dx.make_npm_package(os.path.join(pk, "ml-top"), "ml-top", "1.2.0",
                                    {"index.js": "const ms = require('ml-ms');\nmodule.exports = () => 'top' + ms(2);\n"},
                                    dependencies={"ml-ms": "^1.0.0"}))
    with open(os.path.join(DEPS, "probe.js")) as f:
        probe = f.read()
    reg.publish(dx.make_npm_package(os.path.join(pk, "ml-hostile"), "ml-hostile", "0.1.0",
                                    {"index.js": "module.exports = {};\n", "probe.js": probe,
                                     "probe-config.json": json.dumps(PROBE_CONFIG["npm"])},
                                    scripts={"preinstall": "node probe.js preinstall", "postinstall": "node probe.js postinstall"}))


def lockfile(reg, deps):
    """package.json and the package-lock.json npm writes for deps against the local registry."""
    d = tempfile.mkdtemp(dir=WORK)
    pj = json.dumps({"name": "fn", "version": "1.0.0", "private": True, "dependencies": deps}, indent=2)
    with open(os.path.join(d, "package.json"), "w") as f:
        f.write(pj)
    env = dict(os.environ, npm_config_registry=reg.url, npm_config_cache=os.path.join(WORK, "npm-cache"),
               npm_config_userconfig=os.path.join(WORK, "none"), npm_config_update_notifier="false")
    p = subprocess.run([dx.NPM, "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"npm lockfile: {p.stderr[-400:]}")
    with open(os.path.join(d, "package-lock.json")) as f:
        return pj, f.read()


# ------------------------------------------------------------------ checks

APP_PY = "import mlfake_alpha, mlfake_beta\n\ndef handler(event, context):\n    return {'a': mlfake_alpha.A, 'b': mlfake_beta.B, 'v': %d}\n"


def python_deps(index):
    name = f"py-{RUN}"
    req = "mlfake-alpha==1.0\nmlfake_beta\n"
    bid, b = deploy_active(name, "python3", "app.handler", {"app.py": APP_PY % 1, "requirements.txt": req}, "python + requirements.txt")
    files = artifact_files(bid)
    S.check("the artifact lists the installed files (the two wheels and the one required)",
            all(any(f.startswith(p) for f in files) for p in ("mlfake_alpha/__init__.py", "mlfake_beta.py", "mlfake_gamma/__init__.py")), files)
    st, r = invoke(name)
    S.check("the function imports them and returns their values", st == 200 and r == {"a": "alpha+gamma", "b": "beta", "v": 1}, (st, r))
    # The cache: a code-only change.
    downloads = len(index.downloads())
    hits = cache_hits("pip")
    bid2 = update(name, {"app.py": APP_PY % 2, "requirements.txt": req})
    b2 = build(bid2, name)
    S.check("a code-only change rebuilds", b2.get("status") == "completed", (b2, log_text(bid2)[-600:]))
    text = log_text(bid2)
    S.check("its build log says the dependencies came from the cache", re.search(r"cache", text, re.I) and
            re.search(r"\bhit\b|from the cache|restored", text, re.I), text[-800:])
    S.check("minilambda_build_dep_cache_total{ecosystem=\"pip\",result=\"hit\"} grew by one", cache_hits("pip") == hits + 1,
            (hits, cache_hits("pip")))
    S.check("the index saw no new download", len(index.downloads()) == downloads, index.downloads()[downloads:])
    st, r = invoke(name)
    S.check("the rebuilt function runs the new code with the cached dependencies",
            st == 200 and r == {"a": "alpha+gamma", "b": "beta", "v": 2}, (st, r))
    both = b.get("status") == b2.get("status") == "completed"
    S.check(f"the cache hit ({seconds(b2) if both else 0:.2f} s) took less time than the miss ({seconds(b) if both else 0:.2f} s)",
            both and seconds(b2) < seconds(b), (b.get("status"), b2.get("status")))


def node_deps(reg):
    name = f"js-{RUN}"
    pj, lock = lockfile(reg, {"ml-top": "1.2.0"})
    js = "const top = require('ml-top');\nexports.handler = async () => ({ top: top() });\n"
    bid, _ = deploy_active(name, "nodejs", "index.handler", {"index.js": js, "package.json": pj, "package-lock.json": lock},
                           "node + package.json + package-lock.json")
    files = artifact_files(bid)
    S.check("the node artifact holds node_modules/ml-top and its dependency ml-ms",
            "node_modules/ml-top/index.js" in files and "node_modules/ml-ms/index.js" in files, files)
    st, r = invoke(name)
    S.check("the node function runs with them", st == 200 and r == {"top": "top2000"}, (st, r))
    name2 = f"js-nolock-{RUN}"
    bid, _ = deploy_active(name2, "nodejs", "index.handler", {"index.js": js, "package.json": pj}, "node without a lockfile")
    lines = log_lines(bid)
    S.check("without a lockfile: a warning line in the build log",
            any(l.get("level") in ("warn", "warning") and re.search(r"lock", l.get("message", ""), re.I) for l in lines),
            [l for l in lines if l.get("level") != "info"] or lines[-6:])
    st, r = invoke(name2)
    S.check("and it runs", st == 200 and r == {"top": "top2000"}, (st, r))


def missing(index_url):
    name = f"py-missing-{RUN}"
    pkg = f"mlfake-nowhere-{RUN}"
    bid = create(name, "python3", "app.handler", {"app.py": "def handler(e, c):\n    return 1\n", "requirements.txt": pkg + "\n"})
    b = build(bid)
    err = b.get("error") or ""
    S.check("a missing package: the build fails", b.get("status") == "failed", b)
    S.check("its error names the package and the index URL", pkg in err and index_url.rstrip("/") in err, err)
    S.check("the build log holds the installer's output", pkg in log_text(bid), log_text(bid)[-600:])


def shadow_content():
    try:
        with open("/etc/shadow") as f:
            return f.read()
    except OSError:
        return ""


def judge(what, rep):
    """Checks one probe report (probe.py / probe.js)."""
    if not S.check(f"{what}: the script ran and reported", isinstance(rep, dict) and "shadow" in rep, rep):
        return
    S.check(f"{what}: reading /etc/shadow fails", rep["shadow"].startswith("denied"), rep["shadow"][:80])
    for d in ("/usr", "/etc", "/var/task", SCRATCH):
        S.check(f"{what}: writing to {d} fails", str(rep.get("write " + d, "")).startswith("denied"), rep.get("write " + d))
    for t in ("postgres", "redis"):
        S.check(f"{what}: connecting to the stack's {t} (127.0.0.1) fails", str(rep.get("connect " + t, "")).startswith("failed"),
                rep.get("connect " + t))
    S.check(f"{what}: 203.0.113.1:80 is unreachable (no route)", str(rep.get("connect 203.0.113.1:80", "")).startswith("failed"),
            rep.get("connect 203.0.113.1:80"))
    S.check(f"{what}: the egress proxy is there and reaches this build's index/registry",
            re.match(r"HTTP/1\.[01] 200", str(rep.get("proxy registry", ""))), (rep.get("proxy"), rep.get("proxy registry")))
    for k in ("proxy blocked host", "proxy postgres", "proxy other registry"):
        S.check(f"{what}: through the proxy, {k.split(' ', 1)[1]} is 403", re.match(r"HTTP/1\.[01] 403", str(rep.get(k, ""))), rep.get(k))


def probe_from_log(text, phase=None):
    for line in text.splitlines():
        m = re.search(r"MLPROBE (\{.*\})", line)
        if m:
            try:
                rep = json.loads(m.group(1))
            except ValueError:
                continue
            if phase is None or rep.get("phase") == phase:
                return rep
    return None


def hostile(reg):
    secret = shadow_content()
    # pip: an sdist whose setup.py is the probe.
    name = f"py-hostile-{RUN}"
    bid = create(name, "python3", "app.handler", {"app.py": "import mlfake_hostile_report\n\ndef handler(e, c):\n    return mlfake_hostile_report.REPORT\n",
                                                 "requirements.txt": "mlfake-hostile==0.1\n"})
    b = build(bid, name)
    text = log_text(bid)
    rep = None
    if b.get("status") == "completed":
        st, rep = invoke(name)
    else:
        rep = probe_from_log(text)
        print(f"# the hostile sdist's build ended {b.get('status')}: {str(b.get('error'))[:200]}", flush=True)
    judge("setup.py", rep)
    answers = [json.dumps(rep)]
    # npm: preinstall and postinstall are the probe.
    name = f"js-hostile-{RUN}"
    pj, lock = lockfile(reg, {"ml-hostile": "0.1.0"})
    js = ("exports.handler = async () => { const r = {};\n"
          "  for (const p of ['preinstall', 'postinstall']) { try { r[p] = require('ml-hostile/report-' + p + '.json'); } catch (e) { r[p] = null; } }\n"
          "  return r; };\n")
    bid2 = create(name, "nodejs", "index.handler", {"index.js": js, "package.json": pj, "package-lock.json": lock})
    b2 = build(bid2, name)
    text2 = log_text(bid2)
    reps = {}
    if b2.get("status") == "completed":
        st, r = invoke(name)
        reps = r if isinstance(r, dict) else {}
    for phase in ("preinstall", "postinstall"):
        if not reps.get(phase):
            reps[phase] = probe_from_log(text2, phase)
        judge(f"npm {phase}", reps[phase])
    answers.append(json.dumps(reps))
    files = artifact_files(bid) + artifact_files(bid2)
    planted = [os.path.join(d, f"ml-probe-{TAG}") for d in ("/usr", "/etc", "/var/task", SCRATCH)]
    S.check("nothing the scripts tried to write exists on the host", not any(os.path.exists(p) for p in planted),
            [p for p in planted if os.path.exists(p)])
    hay = text + text2 + "".join(answers)
    S.check("/etc/shadow's content appears nowhere (build logs, answers)", secret and secret not in hay and "READ root:" not in hay
            and secret.splitlines()[0] not in hay, "leaked" if secret else "no /etc/shadow on the host to compare")
    S.check("and no file of the artifacts is named for it", not any("shadow" in f for f in files), files)
    for p in planted:  # a failing run must not leave them behind
        if os.path.exists(p):
            os.unlink(p)


def hidden():
    name = f"py-hidden-{RUN}"
    deploy_active(name, "python3", "app.handler", {"app.py": "import yaml\n\ndef handler(e, c):\n    return yaml.safe_load('a: 1')\n"},
                  "a function importing yaml without shipping it")
    st, r = invoke(name)
    S.check("importing a host package not in the artifact fails at invoke with Runtime.ImportModuleError",
            isinstance(r, dict) and r.get("errorType") == "Runtime.ImportModuleError", (st, r))
    name = f"py-yaml-{RUN}"
    deploy_active(name, "python3", "app.handler", {"app.py": "import mlfake_yaml\n\ndef handler(e, c):\n    return mlfake_yaml.safe_load('a: 1')\n",
                                                   "requirements.txt": "mlfake-yaml==6.0\n"}, "the same with its wheel in requirements.txt")
    st, r = invoke(name)
    S.check("with the wheel in requirements.txt it works", st == 200 and r == {"loaded": "a: 1"}, (st, r))


def opt_out(reg):
    name = f"py-optout-{RUN}"
    bid, _ = deploy_active(name, "python3", "app.handler", {"app.py": "def handler(e, c):\n    return 'plain'\n",
                                                            "requirements.txt": f"mlfake-nowhere-{RUN}\n",
                                                            "minilambda.json": json.dumps({"build": {"install": False}})},
                           "opt-out (minilambda.json build.install false) with an unresolvable requirements.txt")
    text = log_text(bid)
    S.check("its build log says the install was skipped", re.search(r"skip|opt|not install|install.*false", text, re.I), text[-600:])
    S.check("nothing was installed", not any(f.endswith(".dist-info/METADATA") for f in artifact_files(bid)), artifact_files(bid))
    st, r = invoke(name)
    S.check("and it runs", st == 200 and r == "plain", (st, r))
    name = f"js-vendored-{RUN}"
    pj = json.dumps({"name": "fn", "version": "1.0.0", "dependencies": {f"ml-vendored-{RUN}": "1.0.0"}})
    bid, _ = deploy_active(name, "nodejs", "index.handler",
                           {"index.js": f"const v = require('ml-vendored-{RUN}');\nexports.handler = async () => ({{ v: v() }});\n",
                            "package.json": pj, f"node_modules/ml-vendored-{RUN}/index.js": "module.exports = () => 'vendored';\n",
                            f"node_modules/ml-vendored-{RUN}/package.json": json.dumps({"name": f"ml-vendored-{RUN}", "version": "1.0.0"})},
                           "a vendored node_modules/ (its package is in no registry)")
    text = log_text(bid)
    S.check("its build log says the vendored node_modules is used", re.search(r"vendored|node_modules", text, re.I), text[-600:])
    st, r = invoke(name)
    S.check("the vendored module is used as is", st == 200 and r == {"v": "vendored"}, (st, r))


def main():
    global S, PROBE_CONFIG
    t0 = time.time()
    index = dx.PyIndex(os.path.join(WORK, "index"))
    reg = dx.Verdaccio(os.path.join(WORK, "verdaccio"))
    S = None
    try:
        bad = dx.verdaccio_lock_allows_node18()
        print(f"# verdaccio lockfile: {'every package allows node 18' if not bad else bad}", flush=True)
        index_url = index.start()
        reg_url = reg.start()
        print(f"# index {index_url}, registry {reg_url} (verdaccio: {reg.how}), {time.time() - t0:.1f} s", flush=True)
        common = {"tag": TAG, "scratch": SCRATCH, "pg_port": PG_PORT, "redis_port": REDIS_PORT}
        PROBE_CONFIG = {"pip": dict(common, registry=index_url, other=reg_url + "-/ping"),
                        "npm": dict(common, registry=reg_url + "-/ping", other=index_url)}
        python_fixtures(index)
        npm_fixtures(reg)
        S = Suite("test-build-deps", PORTS, {"MINILAMBDA_PIP_INDEX_URL": index_url, "MINILAMBDA_NPM_REGISTRY": reg_url,
                                              "MINILAMBDA_PIP_ALLOW_SDIST": "true", "MINILAMBDA_BUILD_SCRATCH_DIR": SCRATCH})
        for name in ("lambda-executor", "build-master", "build-worker"):
            S.start(name)
        print(f"# fixtures and daemons ready, {time.time() - t0:.1f} s", flush=True)
        for step in (lambda: python_deps(index), lambda: node_deps(reg), lambda: missing(index_url),
                     lambda: hostile(reg), hidden, lambda: opt_out(reg)):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - one broken step must not hide the others
                S.check(f"step {getattr(step, '__name__', '')} ran to its end", False, f"{type(e).__name__}: {e}")
        print(f"# {time.time() - t0:.1f} s in all", flush=True)
    finally:
        if S:
            S.stop_all()
        reg.stop()
        index.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    if S is None:
        print("not ok - the fixtures started", flush=True)
        raise SystemExit(1)
    raise SystemExit(1 if S.failures else 0)


main()
