"""Dependency fixtures with no internet (issue 19): pure-python wheels and sdists made in the
test, a PEP 503 index served from a thread, and a local npm registry (verdaccio, pinned by
tests/verdaccio/package-lock.json) seeded with `npm publish` of small local packages.
Used by tests/integration/build_deps_e2e.py and the bench scripts; keep the API stable:

  make_wheel(outdir, name, version, files, requires=()) -> path of name-version-py3-none-any.whl
  make_sdist(outdir, name, version, setup_py, files) -> path of name-version.tar.gz
  PyIndex(root): .add(path), .start() -> "http://127.0.0.1:<port>/simple/", .stop(), .requests
  Verdaccio(workdir): .start() -> registry URL, .publish(pkgdir), .stop()
  make_npm_package(dir, name, version, files, scripts=None, dependencies=None) -> dir
"""
import base64, hashlib, html, http.server, io, json, os, re, shutil, socket, subprocess, tarfile, tempfile, threading, time, urllib.request, zipfile

ROOT = os.environ.get("ML_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERDACCIO_DIR = os.path.join(ROOT, "tests", "verdaccio")
NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"


def normalize(name):
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(name):
    """The wheel/sdist file-name form of a project name (PEP 427 / 625)."""
    return re.sub(r"[-_.]+", "_", name)


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _bytes(v):
    return v if isinstance(v, bytes) else v.encode()


def make_wheel(outdir, name, version, files, requires=()):
    """A pure-python wheel name-version-py3-none-any.whl in outdir, written with zipfile:
    files ({path in site-packages: text or bytes}), a dist-info with METADATA (Requires-Dist per
    requires entry), WHEEL and RECORD (sha256 and size of every file). Returns its path."""
    os.makedirs(outdir, exist_ok=True)
    dist = f"{_dist_name(name)}-{version}"
    info = f"{dist}.dist-info"
    meta = "Metadata-Version: 2.1\n" + f"Name: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {r}\n" for r in requires) + "Summary: a minilambda test fixture\n"
    wheel = "Wheel-Version: 1.0\nGenerator: minilambda-depfixtures\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries = [(p, _bytes(d)) for p, d in sorted(files.items())]
    entries += [(f"{info}/METADATA", meta.encode()), (f"{info}/WHEEL", wheel.encode())]
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in entries) + f"{info}/RECORD,,\n"
    path = os.path.join(outdir, f"{dist}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in entries + [(f"{info}/RECORD", record.encode())]:
            zi = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o100644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return path


def make_sdist(outdir, name, version, setup_py, files):
    """A source distribution name-version.tar.gz in outdir: <dist>-<version>/ with setup.py
    (setup_py's text: the package's own build code, run by pip), PKG-INFO and files
    ({path: text or bytes}). Only installed where sdists are allowed. Returns its path."""
    os.makedirs(outdir, exist_ok=True)
    dist = f"{_dist_name(name)}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: a minilambda test fixture\n"
    entries = {"setup.py": setup_py, "PKG-INFO": pkg_info, **files}
    path = os.path.join(outdir, f"{dist}.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for p, d in sorted(entries.items()):
            data = _bytes(d)
            ti = tarfile.TarInfo(f"{dist}/{p}")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1577836800
            t.addfile(ti, io.BytesIO(data))
    return path


def _project_of(filename):
    """The normalised project name of a wheel or sdist file name."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-")[0])
    base = filename[:-len(".tar.gz")] if filename.endswith(".tar.gz") else filename.rsplit(".", 1)[0]
    return normalize(base.rsplit("-", 1)[0])


class PyIndex:
    """A PEP 503 simple index of the files added, served by a ThreadingHTTPServer on
    127.0.0.1 from a thread: /simple/ (every project), /simple/<normalised>/ (its files, links
    with #sha256=), /files/<file>. .requests lists every path asked for (to prove what was
    fetched); unknown projects are 404, as on PyPI."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "files"), exist_ok=True)
        self.requests, self._lock = [], threading.Lock()
        self.server = self.thread = None
        self.url = None

    def add(self, path):
        """Copies a wheel or sdist into the index (a file with that name is replaced)."""
        dest = os.path.join(self.root, "files", os.path.basename(path))
        if os.path.abspath(path) != os.path.abspath(dest):
            shutil.copyfile(path, dest)
        return dest

    def projects(self):
        """{normalised project: [file names]}."""
        out = {}
        for f in sorted(os.listdir(os.path.join(self.root, "files"))):
            out.setdefault(_project_of(f), []).append(f)
        return out

    def downloads(self):
        """The file downloads seen so far (paths under /files/)."""
        with self._lock:
            return [p for p in self.requests if p.startswith("/files/")]

    def _page(self, path):
        """(status, content type, body) for a request path."""
        projects = self.projects()
        if path in ("/simple", "/simple/"):
            links = "".join(f'<a href="/simple/{p}/">{html.escape(p)}</a>\n' for p in sorted(projects))
            return 200, "text/html", f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if m:
            name = normalize(m.group(1))
            if name != m.group(1) or not path.endswith("/"):
                return 301, f"/simple/{name}/", b""
            if name not in projects:
                return 404, "text/plain", b"not found\n"
            links = ""
            for f in projects[name]:
                with open(os.path.join(self.root, "files", f), "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                links += f'<a href="/files/{html.escape(f)}#sha256={digest}">{html.escape(f)}</a>\n'
            return 200, "text/html", f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        m = re.fullmatch(r"/files/([^/]+)", path)
        if m and os.path.isfile(os.path.join(self.root, "files", m.group(1))):
            with open(os.path.join(self.root, "files", m.group(1)), "rb") as fh:
                return 200, "application/octet-stream", fh.read()
        return 404, "text/plain", b"not found\n"

    def start(self):
        """Serves the index on a free port; returns "http://127.0.0.1:<port>/simple/"."""
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path.startswith("http://"):  # absolute form, as a proxy would forward it
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                with index._lock:
                    index.requests.append(path)
                st, ctype, body = index._page(path)
                self.send_response(st)
                if st == 301:
                    self.send_header("Location", ctype)
                    body = b""
                else:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        return self.url

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def make_npm_package(dir, name, version, files, scripts=None, dependencies=None):
    """A package directory for npm publish: package.json (name, version, main index.js,
    scripts, dependencies) and files ({relative path: text}). Returns dir."""
    os.makedirs(dir, exist_ok=True)
    doc = {"name": name, "version": version, "main": "index.js", "license": "MIT",
           "description": "a minilambda test fixture"}
    if scripts:
        doc["scripts"] = scripts
    if dependencies:
        doc["dependencies"] = dependencies
    with open(os.path.join(dir, "package.json"), "w") as f:
        json.dump(doc, f, indent=2)
    for p, d in files.items():
        full = os.path.join(dir, p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(_bytes(d))
    return dir


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verdaccio_lock_allows_node18():
    """[(package, engines.node)] of the pinned lockfile's packages whose engines exclude node 18
    (Debian 12's); [] when every one allows it."""
    with open(os.path.join(VERDACCIO_DIR, "package-lock.json")) as f:
        lock = json.load(f)
    bad = []
    for name, p in lock["packages"].items():
        eng = p.get("engines")
        want = eng.get("node", "") if isinstance(eng, dict) else ""
        if not want or want.strip() == "*":
            continue
        ok = False
        for alt in want.split("||"):
            m = re.fullmatch(r"\s*>=?\s*v?(\d+)(\.[\dx]+)*\s*", alt)
            if m and int(m.group(1)) <= 18:
                ok = True
            m = re.fullmatch(r"\s*\^(\d+)(\.\d+)*\s*", alt)
            if m and int(m.group(1)) == 18:
                ok = True
        if not ok:
            bad.append((name, want))
    return bad


def verdaccio_install():
    """npm ci of tests/verdaccio into <repo>/build/verdaccio/<lockfile sha256[:12]>, once per
    lockfile (not ML_BUILD_DIR: make asan/tsan share one install). Returns (dir, how)."""
    with open(os.path.join(VERDACCIO_DIR, "package-lock.json"), "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:12]
    cache = os.path.join(ROOT, "build", "verdaccio")
    dest = os.path.join(cache, tag)
    if os.path.isfile(os.path.join(dest, "node_modules", "verdaccio", "package.json")):
        return dest, "cached"
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{tag}-", dir=cache)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(VERDACCIO_DIR, f), tmp)
    t0 = time.time()
    p = subprocess.run([NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"npm ci of verdaccio failed: {p.stderr[-600:]}")
    try:
        os.rename(tmp, dest)  # atomic: a concurrent run that won keeps its own copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, f"npm ci {time.time() - t0:.1f} s"


class Verdaccio:
    """A local npm registry: verdaccio from build/verdaccio/<hash> on a free 127.0.0.1 port,
    storage and configuration in workdir, no uplinks (nothing is fetched from outside), anyone
    may read, a user created at start publishes (its token in workdir/.npmrc)."""

    def __init__(self, workdir):
        self.workdir = os.path.abspath(workdir)
        self.proc, self.url, self.port, self.token, self.how = None, None, None, None, None
        self.npmrc = os.path.join(self.workdir, ".npmrc")

    def start(self, timeout=60):
        """Installs verdaccio if needed, starts it and creates the publishing user; returns the
        registry URL ("http://127.0.0.1:<port>/")."""
        home, self.how = verdaccio_install()
        os.makedirs(os.path.join(self.workdir, "storage"), exist_ok=True)
        self.port = _free_port()
        with open(os.path.join(VERDACCIO_DIR, "config.yaml.in")) as f:
            cfg = f.read().replace("@STORAGE@", os.path.join(self.workdir, "storage")) \
                          .replace("@HTPASSWD@", os.path.join(self.workdir, "htpasswd"))
        conf = os.path.join(self.workdir, "config.yaml")
        with open(conf, "w") as f:
            f.write(cfg)
        self.url = f"http://127.0.0.1:{self.port}/"
        log = open(os.path.join(self.workdir, "verdaccio.log"), "ab")
        self.proc = subprocess.Popen([NODE, os.path.join(home, "node_modules", "verdaccio", "bin", "verdaccio"),
                                      "--config", conf, "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env=dict(os.environ, HOME=self.workdir))
        end = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"verdaccio exited with {self.proc.returncode} (see {self.workdir}/verdaccio.log)")
            try:
                with urllib.request.urlopen(self.url + "-/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > end:
                    raise RuntimeError("verdaccio did not answer /-/ping")
                time.sleep(0.2)
        self.token = self._add_user("mltest", "mltest-" + os.urandom(6).hex())
        with open(self.npmrc, "w") as f:
            f.write(f"registry={self.url}\n//127.0.0.1:{self.port}/:_authToken={self.token}\n")
        return self.url

    def _add_user(self, name, password):
        """Creates a user through the CouchDB-style endpoint npm adduser uses; its token."""
        body = json.dumps({"name": name, "password": password, "type": "user", "roles": [],
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        req = urllib.request.Request(f"{self.url}-/user/org.couchdb.user:{name}", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["token"]

    def publish(self, pkgdir):
        """npm publish of pkgdir with the registry user's token; raises on failure."""
        env = dict(os.environ, npm_config_userconfig=self.npmrc, npm_config_registry=self.url,
                   npm_config_cache=os.path.join(self.workdir, "npm-cache"), npm_config_update_notifier="false")
        p = subprocess.run([NPM, "publish", "--registry", self.url, "--ignore-scripts", "--loglevel=error"],
                           cwd=pkgdir, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"npm publish {pkgdir}: {p.stderr[-600:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
