#!/usr/bin/python3
"""Offline checks of the container deployment: docker-compose.yml, .env.example,
infrastructure/docker/ (Dockerfile, seccomp profile, scripts) and infrastructure/k8s/.

No Docker engine is needed: Debian's docker-compose 1.29 validates and resolves the compose file
(`config`), everything else is read from the files and compared with what the code really
does (the daemons' --print-config, the binaries' NEEDED libraries, the build queue name, the
sandbox's capability needs, measured by starting a real lambda-executor with exactly the
compose capability set and seccomp profile when the test stack is up and we are root).
Prints "ok - ..." / "not ok - ..." per check; exits 1 if any failed."""
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ML_BIN_DIR", os.path.join(ROOT, "build", "bin"))
DOCKERFILE = "infrastructure/docker/Dockerfile"
SECCOMP = "infrastructure/docker/executor-seccomp.json"
DAEMONS = {"gateway": 8080, "build-master": 8082, "build-worker": 9092, "lambda-executor": 8081}
BACKING_PORTS = {"postgres": 5432, "redis": 6379, "rabbitmq": 5672, "minio": 9000, "loki": 3100}
SERVICES = {"postgres", "redis", "rabbitmq", "minio", "minio-init", "migrate", "gateway",
            "build-master", "build-worker", "lambda-executor", "prometheus", "grafana", "loki",
            "promtail", "redis-exporter", "postgres-exporter"}
PUBLISHED = {"gateway": {8080}, "grafana": {3000}, "prometheus": {9090}, "rabbitmq": {15672},
             "minio": {9001}}
EXECUTOR_CAPS = ["SYS_ADMIN", "NET_ADMIN", "SETUID", "SETGID", "SETPCAP", "KILL", "MKNOD"]
# system calls the sandbox makes (services/lambda-executor/sandbox.c): the container profile
# must not deny them
SANDBOX_SYSCALLS = ["clone", "unshare", "mount", "umount2", "pivot_root", "sethostname",
                    "setresuid", "setresgid", "setgroups", "capset", "prctl", "seccomp", "mknod",
                    "ioctl", "socket", "close_range", "pidfd_open", "memfd_create", "execve",
                    "setrlimit", "kill", "wait4", "waitid", "setsid",
                    "open_tree", "mount_setattr", "setns", "move_mount"]   # stem cells
# the live probe's executor port (below 32768, clear of the other tests' ports)
PROBE_PORT = 31881

failures = 0


def report(ok, what, detail=""):
    global failures
    if ok:
        print(f"ok - {what}")
    else:
        failures += 1
        print(f"not ok - {what}" + (f": {detail}" if detail else ""))


def check(what, fn):
    """Runs fn(), which returns its problems: an empty list (or "") passes; a non-empty list
    or string, an AssertionError or any exception fails. None fails too: a check that forgot
    to return its problems would otherwise always pass."""
    try:
        problems = fn()
    except AssertionError as e:
        report(False, what, str(e))
        return
    except Exception as e:  # a crash in a check is that check's failure, not the suite's
        report(False, what, f"{type(e).__name__}: {e}")
        return
    if problems is None:
        report(False, what, "the check returned None instead of its list of problems")
        return
    report(not problems, what, "; ".join(problems) if isinstance(problems, list) else str(problems or ""))


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


# ------------------------------------------------------------------ compose


def compose(env_file, *args):
    return subprocess.run(["docker-compose", "--env-file", env_file, "-f", "docker-compose.yml", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def make_env(tmp):
    path = os.path.join(tmp, ".env")
    out = subprocess.run(["sh", "infrastructure/docker/gen-env.sh"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    with open(path, "w") as f:
        f.write(out)
    return path


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


# ------------------------------------------------------------------ Dockerfile


def dockerfile_stages(text):
    """[(name, base, [instructions])] with continuation lines joined and comments dropped."""
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages = []
    for ins in lines:
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", ins, re.I)
        if m:
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append(ins)
    return stages


def apt_installs(ins):
    """Package names of every `apt-get install` in one RUN."""
    pkgs = []
    for part in re.split(r"&&|;", ins):
        words = part.split()
        if "apt-get" in words and "install" in words:
            pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def stage_packages(stages, name):
    chain, by_name = [], {s[0]: s for s in stages}
    while name in by_name:
        chain.append(by_name[name])
        name = by_name[name][1]
    return {p for st in chain for ins in st[2] if ins.startswith("RUN") for p in apt_installs(ins)}


def hadolint_like(stages):
    problems, names = [], {s[0] for s in stages}
    for name, base, instrs in stages:
        if base not in names:
            if ":" not in base.split("/")[-1] or base.endswith(":latest"):
                problems.append(f"stage {name}: base {base} has no pinned tag")
        for ins in instrs:
            word = ins.split()[0].upper()
            if word == "RUN":
                if re.search(r"apt-get\s+(dist-)?upgrade", ins):
                    problems.append(f"{name}: apt-get upgrade")
                if "apt-get install" in ins:
                    if "--no-install-recommends" not in ins or not re.search(r"\s-y\b", ins):
                        problems.append(f"{name}: apt-get install without -y --no-install-recommends")
                    if "rm -rf /var/lib/apt/lists/*" not in ins:
                        problems.append(f"{name}: apt lists not removed in the same RUN")
                    if "apt-get update" not in ins:
                        problems.append(f"{name}: apt-get install without update in the same RUN")
                elif "apt-get update" in ins:
                    problems.append(f"{name}: apt-get update alone in a RUN layer")
                if re.search(r"(^|&&|;)\s*cd\s", ins[3:]):
                    problems.append(f"{name}: cd in RUN (use WORKDIR)")
                if "sudo " in ins:
                    problems.append(f"{name}: sudo")
                if "|" in ins.replace("||", "") and "pipefail" not in ins:
                    problems.append(f"{name}: pipe without pipefail: {ins[:60]}")
            elif word == "ADD":
                problems.append(f"{name}: ADD (use COPY)")
            elif word in ("CMD", "ENTRYPOINT") and not ins.split(None, 1)[1].startswith("["):
                problems.append(f"{name}: {word} not in JSON form")
            elif word == "WORKDIR" and not ins.split()[1].startswith("/"):
                problems.append(f"{name}: relative WORKDIR")
            elif word == "MAINTAINER":
                problems.append(f"{name}: MAINTAINER")
    return problems


SANITIZER_RUNTIMES = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")


def needed_packages(binary):
    """Debian packages holding the shared libraries `binary` links directly (NEEDED). The
    sanitizer runtimes of a `make asan` build are not what the images build, so they are left out."""
    out = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    sonames = [so for so in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
               if not SANITIZER_RUNTIMES.match(so)]
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    pkgs = set()
    for so in sonames:
        m = re.search(r"^\s*" + re.escape(so) + r" \(libc6,x86-64\) => (\S+)", cache, re.M) or \
            re.search(r"^\s*" + re.escape(so) + r" .*=> (\S+)", cache, re.M)
        assert m, f"{so} not in the ld cache"
        path = os.path.realpath(m.group(1))
        owner = None
        for cand in (path, re.sub(r"^/usr", "", path)):
            r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        assert owner, f"no package owns {path}"
        pkgs.add(owner)
    return pkgs - {"libc6"}


# ------------------------------------------------------------------ config tables


def print_config(daemon):
    out = subprocess.run([os.path.join(BIN, daemon), "--print-config"], capture_output=True,
                         text=True, check=True).stdout
    return set(re.findall(r"^\| `(MINILAMBDA_[A-Z0-9_]+)`", out, re.M))


def readme_table():
    """{variable: set of daemons} from the README config table ("all" expanded)."""
    text = read("README.md")
    block = text.split("<!-- config:begin -->")[1].split("<!-- config:end -->")[0]
    table = {}
    for m in re.finditer(r"^\| `(MINILAMBDA_[A-Z0-9_]+)` \|[^|]*\| ([^|]+) \|", block, re.M):
        used = m.group(2).strip()
        table[m.group(1)] = set(DAEMONS) if used == "all" else {u.strip() for u in used.split(",")}
    return table


# ------------------------------------------------------------------ seccomp via libseccomp


def load_seccomp(profile_path):
    """Installs a Docker-format seccomp profile on this process (native architecture)."""
    p = json.load(open(profile_path))
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

    class Arg(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                    ("datum_b", ctypes.c_uint64)]

    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(Arg)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ops = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
           "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

    def action(name, errno):
        if name == "SCMP_ACT_ALLOW":
            return 0x7FFF0000
        assert name == "SCMP_ACT_ERRNO", name
        return 0x00050000 | (errno & 0xFFFF)

    ctx = lib.seccomp_init(action(p["defaultAction"], p.get("defaultErrnoRet", 1)))
    assert ctx
    for rule in p["syscalls"]:
        args = rule.get("args") or []
        arr = (Arg * len(args))(*[Arg(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0))
                                  for a in args]) if args else None
        for name in rule["names"]:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:  # __NR_SCMP_ERROR: unknown name
                continue
            rc = lib.seccomp_rule_add_array(ctx, action(rule["action"], rule.get("errnoRet", 1)), nr,
                                            len(args), arr)
            assert rc == 0, f"libseccomp rejected the rule for {name}: {rc}"
    assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"


def run_executor_probe(caps, tmp, tag):
    """Starts the lambda-executor as root with only `caps` in its bounding set, no_new_privs and
    the compose seccomp profile (what Docker gives the container), returns its sandbox log line."""
    env = dict(os.environ)
    env.update({"MINILAMBDA_EXECUTOR_PORT": str(PROBE_PORT), "MINILAMBDA_BIND_ADDR": "127.0.0.1",
                "MINILAMBDA_INTERNAL_WEBHOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=",
                "MINILAMBDA_AUDIT_SPILL_PATH": os.path.join(tmp, f"spill-{tag}.jsonl"),
                "MINILAMBDA_ARTIFACT_CACHE_DIR": os.path.join(tmp, f"artifacts-{tag}"),
                "MINILAMBDA_RUNTIMES_DIR": os.path.join(ROOT, "services/lambda-executor/runtimes"),
                "MINILAMBDA_ASYNC_CONSUMERS": "1", "MINILAMBDA_HTTP_WORKERS": "8"})
    if not env.get("MINILAMBDA_INTERNAL_TOKEN") and not env.get("MINILAMBDA_INTERNAL_TOKEN_FILE"):
        env["MINILAMBDA_INTERNAL_TOKEN"] = os.urandom(32).hex()  # a daemon refuses to start without one
    bset = "-all," + ",".join("+" + c.lower() for c in caps)
    cmd = ["setpriv", "--bounding-set", bset, "--inh-caps", "-all", "--no-new-privs", sys.executable,
           os.path.abspath(__file__), "--exec-with-seccomp", os.path.join(ROOT, SECCOMP),
           os.path.join(BIN, "lambda-executor")]
    log = os.path.join(tmp, f"executor-{tag}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    line, deadline = None, time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None and line is None:
            time.sleep(0.2)
            for raw in open(log):
                if '"sandbox: ' in raw:
                    line = json.loads(raw)["msg"]
        # healthy too: the sandbox layers are not all the container must allow
        healthy, status = False, ""
        while line and time.time() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PROBE_PORT}/health", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                time.sleep(0.3)
        if proc.poll() is None:  # the same pid through setpriv -> python -> executor (exec)
            status = open(f"/proc/{proc.pid}/status").read()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if line is None:
        raise AssertionError("no sandbox line; log tail: " + open(log).read()[-800:])
    return line, healthy, status


def confined_like_docker(status, caps):
    """Problems if /proc/PID/status does not show exactly what Docker would give the container:
    these capabilities (effective and bounding), no_new_privs, a seccomp filter."""
    numbers = {"KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_ADMIN": 12, "SYS_ADMIN": 21, "MKNOD": 27}
    want = sum(1 << numbers[c] for c in caps)
    fields = dict(l.split(":\t", 1) for l in status.splitlines() if ":\t" in l)
    bad = [f"{f}={fields.get(f)}, expected {want:016x}" for f in ("CapEff", "CapBnd")
           if int(fields.get(f, "0"), 16) != want]
    if fields.get("NoNewPrivs", "").strip() != "1":
        bad.append("no_new_privs not set")
    if fields.get("Seccomp", "").strip() != "2":
        bad.append("no seccomp filter")
    return bad


# ------------------------------------------------------------------ main


def main():
    tmp = tempfile.mkdtemp(prefix="compose-check-")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    env_file = make_env(tmp)

    r = compose(env_file, "config", "-q")
    report(r.returncode == 0, "docker-compose 1.29 `config -q` accepts docker-compose.yml with a generated .env",
           r.stderr.strip()[-400:])
    blank = os.path.join(tmp, "blank.env")
    with open(blank, "w") as f:
        f.write(read(".env.example"))
    r2 = compose(blank, "config", "-q")
    report(r2.returncode != 0 and "in .env" in r2.stderr,
           "with .env.example's empty secrets, compose refuses to start and names the missing secret",
           r2.stderr.strip()[-200:])
    if r.returncode != 0:
        return
    cfg = yaml.safe_load(compose(env_file, "config").stdout)
    services = cfg["services"]
    raw = yaml.safe_load(read("docker-compose.yml"))
    check("no top-level name:, every contract service and only those",
          lambda: ["top-level name"] * ("name" in raw) +
          [f"missing {s}" for s in SERVICES - set(services)] +
          [f"unexpected {s}" for s in set(services) - SERVICES])

    def oneshot(name):
        return services[name].get("restart") == "no"

    def healthchecks():
        bad = []
        for name, s in services.items():
            hc = s.get("healthcheck") or {}
            if oneshot(name):
                if hc:
                    bad.append(f"{name}: one-shot with a healthcheck")
            elif not hc.get("test") or hc.get("disable") or hc["test"][0] == "NONE":
                bad.append(f"{name}: long-running without a healthcheck")
        return bad
    check("every long-running service has a healthcheck; the rest are one-shot jobs (restart: no)", healthchecks)

    def depends():
        bad = []
        for name, s in services.items():
            for dep, spec in (s.get("depends_on") or {}).items():
                cond = spec.get("condition") if isinstance(spec, dict) else None
                if cond == "service_healthy" and not services[dep].get("healthcheck"):
                    bad.append(f"{name} waits for {dep} healthy, which has no healthcheck")
                elif cond == "service_completed_successfully" and not oneshot(dep):
                    bad.append(f"{name} waits for {dep} to complete, which is long-running")
                elif cond not in ("service_healthy", "service_completed_successfully"):
                    bad.append(f"{name} -> {dep}: condition {cond}")
        oneshots = {n for n in services if oneshot(n)}
        waited = {d for s in services.values() for d, sp in (s.get("depends_on") or {}).items()
                  if sp.get("condition") == "service_completed_successfully"}
        bad += [f"nothing waits for one-shot {n}" for n in oneshots - waited]
        for d in ("build-master", "build-worker", "lambda-executor"):
            deps = services[d].get("depends_on") or {}
            bad += [f"{d} does not wait for {x}" for x in ("migrate", "minio-init") if x not in deps]
        return bad
    check("depends_on uses service_healthy / service_completed_successfully consistently; daemons wait for migrate and minio-init", depends)

    stages = dockerfile_stages(read(DOCKERFILE))
    stage_names = {s[0] for s in stages}

    def images():
        bad = []
        for name, s in services.items():
            img = s.get("image", "")
            tag = img.rsplit(":", 1)[1] if ":" in img.split("/")[-1] else ""
            if not tag or tag == "latest":
                bad.append(f"{name}: image {img!r} not pinned")
            b = s.get("build")
            if b:
                df = os.path.join(b["context"], b.get("dockerfile", "Dockerfile"))
                if not os.path.isfile(df):
                    bad.append(f"{name}: {df} missing")
                elif os.path.realpath(df) != os.path.join(ROOT, DOCKERFILE):
                    bad.append(f"{name}: unexpected Dockerfile {df}")
                elif b.get("target") not in stage_names:
                    bad.append(f"{name}: target {b.get('target')} is not a stage")
                if not os.path.isfile(os.path.join(b["context"], ".dockerignore")):
                    bad.append(f"{name}: no .dockerignore in the build context")
                if not img.startswith(f"minilambda/{name}:"):
                    bad.append(f"{name}: built image named {img}")
        return bad
    check("every image pinned (no :latest); every build: names an existing Dockerfile, target and .dockerignore", images)

    def publishing():
        bad = []
        for name, s in services.items():
            got = {int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1].split("/")[0])
                   for p in s.get("ports") or []}
            if got != PUBLISHED.get(name, set()):
                bad.append(f"{name} publishes {sorted(got)}, expected {sorted(PUBLISHED.get(name, set()))}")
            if s.get("network_mode") or set(s.get("networks") or {}) != {"minilambda"}:
                bad.append(f"{name}: networks {s.get('networks')}")
        if set(cfg.get("networks", {})) != {"minilambda"}:
            bad.append(f"networks {list(cfg.get('networks', {}))}")
        return bad
    check("one network; only gateway, grafana, prometheus and the RabbitMQ/MinIO consoles published", publishing)

    def volumes():
        bad, declared = [], set(cfg.get("volumes") or {})
        for name, s in services.items():
            for v in s.get("volumes") or []:
                src = v["source"] if isinstance(v, dict) else v.split(":")[0]
                if src.startswith("/") and src.startswith(ROOT):
                    if not os.path.exists(src):
                        bad.append(f"{name}: bind source {os.path.relpath(src, ROOT)} missing")
                elif src.startswith("/"):
                    if name != "promtail":
                        bad.append(f"{name}: host path {src}")
                elif src not in declared:
                    bad.append(f"{name}: volume {src} not declared")
        for name, path in (("postgres", "/var/lib/postgresql/data"), ("rabbitmq", "/var/lib/rabbitmq"),
                           ("minio", "/data"), ("prometheus", "/prometheus"), ("grafana", "/var/lib/grafana"),
                           ("lambda-executor", "/var/lib/minilambda")):
            if not any(str(v).split(":")[1:2] == [path] for v in services[name].get("volumes") or []):
                bad.append(f"{name}: no named volume at {path}")
        return bad
    check("named volumes for state; every bind-mounted repo file exists (observability/, infrastructure/docker/)", volumes)

    check("Dockerfile: hadolint-style rules (pinned bases, no apt-get upgrade, -y --no-install-recommends, apt lists removed, JSON entrypoints)",
          lambda: hadolint_like(stages))

    def dockerfile_targets():
        bad = []
        for t in ("build", "runtime", "gateway", "build-master", "build-worker", "lambda-executor", "migrate"):
            if t not in stage_names:
                bad.append(f"no stage {t}")
        for name, base, _ in stages:
            if name != "build" and base == "build":
                bad.append(f"{name} runs on the build stage")
        for name, base, instrs in stages:
            if name in ("gateway", "build-master", "build-worker", "migrate"):
                users = [i.split()[1] for i in instrs if i.upper().startswith("USER")]
                if not users or users[-1].split(":")[0] in ("0", "root"):
                    bad.append(f"{name} does not run as a non-root user")
        runtime_pkgs = stage_packages(stages, "lambda-executor")
        bad += [f"runtime stages install {p}" for p in runtime_pkgs if p.endswith("-dev") or p == "build-essential"]
        bad += [f"executor image lacks {p}" for p in ("python3", "nodejs") if p not in runtime_pkgs]
        return bad
    check("Dockerfile: multi-stage build -> runtime (no -dev packages), non-root daemons, executor with python3 and nodejs",
          dockerfile_targets)

    def build_deps():
        pkgs = re.search(r"^PKGS\s*:=\s*(.+)$", read("Makefile"), re.M).group(1).split()
        need = set()
        for p in pkgs:
            pc = subprocess.run(["pkg-config", "--path", p], capture_output=True, text=True, check=True).stdout.strip()
            need.add(subprocess.run(["dpkg", "-S", pc], capture_output=True, text=True, check=True).stdout.split(":")[0])
        have = stage_packages(stages, "build")
        return [f"build stage lacks {p} (Makefile PKGS)" for p in sorted(need - have)]
    check("Dockerfile build stage installs the -dev package of every library in the Makefile's PKGS", build_deps)

    def runtime_libs():
        have = stage_packages(stages, "runtime")
        bad = []
        for b in list(DAEMONS) + ["ml-migrate"]:
            bad += [f"{b} needs {p}" for p in sorted(needed_packages(os.path.join(BIN, b)) - have)]
        return bad
    check("Dockerfile runtime stage installs the package of every shared library the binaries link", runtime_libs)

    pc = {d: print_config(d) for d in DAEMONS}

    def env_vs_print_config():
        bad = []
        for d in DAEMONS:
            got = {k for k in env_of(services[d]) if k.startswith("MINILAMBDA_")}
            bad += [f"{d}: {v} not set" for v in sorted(pc[d] - got)]
            bad += [f"{d}: sets {v}, which it does not read" for v in sorted(got - pc[d])]
        script = read("infrastructure/docker/migrate.sh")
        mig = env_of(services["migrate"])
        bad += [f"migrate: {v} not set" for v in set(re.findall(r"\$\{?(MINILAMBDA_[A-Z_]+)", script)) - set(mig)]
        return bad
    check("compose sets every variable each daemon reads (--print-config), and no other MINILAMBDA_*", env_vs_print_config)

    def internal_token():
        gen = dict(l.split("=", 1) for l in open(env_file).read().splitlines() if re.match(r"^[A-Z]", l))
        want, bad = gen.get("INTERNAL_TOKEN", ""), []
        if not 32 <= len(want) <= 256:
            bad.append(f"gen-env.sh: INTERNAL_TOKEN has {len(want)} characters (a daemon needs 32..256)")
        for d in DAEMONS:
            e = env_of(services[d])
            if e.get("MINILAMBDA_INTERNAL_TOKEN") != want:
                bad.append(f"{d}: MINILAMBDA_INTERNAL_TOKEN is not .env's INTERNAL_TOKEN")
            if e.get("MINILAMBDA_INTERNAL_TOKEN_FILE"):
                bad.append(f"{d}: sets MINILAMBDA_INTERNAL_TOKEN_FILE too (the daemon refuses both)")
            if e.get("MINILAMBDA_INTERNAL_AUTH_INSECURE", "false").lower() not in ("false", "0", "no", "off"):
                bad.append(f"{d}: MINILAMBDA_INTERNAL_AUTH_INSECURE is on")
        return bad
    check("every daemon gets the same internal token from .env (INTERNAL_TOKEN), none runs insecure", internal_token)

    def readme_vs_print_config():
        table, bad = readme_table(), []
        for d in DAEMONS:
            for v in pc[d]:
                if d not in table.get(v, set()):
                    bad.append(f"README does not list {d} for {v}")
        for v, users in table.items():
            for d in users:
                if d in DAEMONS and v not in pc[d]:
                    bad.append(f"README says {d} reads {v}; it does not")
        return bad
    check("README config table, --print-config and compose agree on who reads what", readme_vs_print_config)

    EXTERNAL_URLS = {"MINILAMBDA_PIP_INDEX_URL", "MINILAMBDA_PIP_EXTRA_INDEX_URL"}

    def urls():
        bad = []
        for d in list(DAEMONS) + ["migrate"]:
            for k, v in env_of(services[d]).items():
                if k in EXTERNAL_URLS:   # outside the stack by design (the package registries)
                    continue
                for url in re.split(r",", v) if re.search(r"_(URL|URLS|ENDPOINT)$", k) else []:
                    m = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/]+):(\d+)", url)
                    if not m:
                        bad.append(f"{d}: {k}={url} has no host:port")
                        continue
                    host, port = m.group(1), int(m.group(2))
                    want = DAEMONS.get(host) or BACKING_PORTS.get(host)
                    if host not in services or port != want:
                        bad.append(f"{d}: {k} points at {host}:{port}")
                    if host in DAEMONS and env_of(services[host]).get(
                            [p for p in pc[host] if p.endswith("_PORT")][0]) != str(port):
                        bad.append(f"{d}: {k} port differs from {host}'s own port setting")
        return bad
    check("every cross-service URL names a compose service and the port it listens on", urls)

    def healthcheck_ports():
        bad = []
        for d, port in DAEMONS.items():
            t = " ".join(services[d]["healthcheck"]["test"])
            if f"127.0.0.1:{port}/health" not in t:
                bad.append(f"{d}: healthcheck {t}")
        return bad
    check("daemon healthchecks GET /health on the daemon's port", healthcheck_ports)

    def secrets():
        example = read(".env.example")
        names = set(re.findall(r"\$\{([A-Z0-9_]+):\?", read("docker-compose.yml")))
        declared = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", read("docker-compose.yml")))
        bad = [f"required {n} not in .env.example" for n in sorted(names - declared)]
        bad += [f"compose uses {n}, not documented in .env.example" for n in sorted(used - declared)]
        bad += [f".env.example has {n}, compose never uses it" for n in sorted(declared - used)]
        bad += [f".env.example ships a value for secret {n}" for n in sorted(names)
                if re.search(rf"^{n}=.+$", example, re.M)]
        for s in ("JWT_SECRET", "INTERNAL_WEBHOOK_SECRET", "INTERNAL_TOKEN", "S3_SECRET_KEY", "POSTGRES_PASSWORD",
                  "BUILD_DB_PASSWORD", "LAMBDA_DB_PASSWORD"):
            if s not in names:
                bad.append(f"{s} is not required (${{{s}:?}})")
        gen = dict(l.split("=", 1) for l in open(env_file).read().splitlines() if re.match(r"^[A-Z]", l))
        if not gen.get("INTERNAL_WEBHOOK_SECRET", "").startswith("whsec_"):
            bad.append("gen-env.sh: INTERNAL_WEBHOOK_SECRET is not a whsec_ secret")
        if ".env" not in read(".dockerignore").split():
            bad.append(".env not in .dockerignore")
        return bad
    check("secrets come from .env: required ones fail loudly, .env.example documents every variable and ships no secret", secrets)

    def observability_mounts():
        bad = []
        prom = yaml.safe_load(read("observability/prometheus/prometheus.yml"))
        for job in prom.get("scrape_configs", []):
            targets = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
            targets += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
            for t in targets:
                host, port = t.rsplit(":", 1)
                if host != "localhost" and host not in services:
                    bad.append(f"prometheus job {job['job_name']} scrapes {t}: no such service")
                if host in DAEMONS and int(port) != DAEMONS[host]:
                    bad.append(f"prometheus scrapes {t}, {host} listens on {DAEMONS[host]}")
        pt = yaml.safe_load(read("observability/promtail/promtail.yml"))
        if str(pt["server"]["http_listen_port"]) not in " ".join(services["promtail"]["healthcheck"]["test"]):
            bad.append("promtail healthcheck port differs from promtail.yml")
        for name, path in (("promtail", os.path.dirname(pt["positions"]["filename"])),
                           ("loki", yaml.safe_load(read("observability/loki/loki.yml"))["common"]["path_prefix"])):
            if not any(str(v).split(":")[1:2] == [path] for v in services[name].get("volumes") or []):
                bad.append(f"{name}: {path} (from its config) is not on a named volume")
        return bad
    check("observability configs agree with compose: scrape targets are services/ports, promtail and loki state on volumes", observability_mounts)

    # ------------------------------------------------------------ executor privileges
    ex = services["lambda-executor"]

    def sandbox_privs(name):
        """The daemons that run the sandbox (functions; build-time installers) get exactly its
        capabilities and options, nothing more."""
        svc, bad = services[name], []
        if svc.get("privileged"):
            bad.append(f"{name}: privileged: true")
        if svc.get("cap_drop") != ["ALL"]:
            bad.append(f"{name}: cap_drop {svc.get('cap_drop')}")
        if sorted(svc.get("cap_add") or []) != sorted(EXECUTOR_CAPS):
            bad.append(f"{name}: cap_add {svc.get('cap_add')} != {EXECUTOR_CAPS}")
        opts = svc.get("security_opt") or []
        for want in ("apparmor:unconfined", f"seccomp:{SECCOMP}", "no-new-privileges:true"):
            if want not in opts:
                bad.append(f"{name}: security_opt lacks {want}")
        return bad

    def executor_privs():
        bad = sandbox_privs("lambda-executor") + sandbox_privs("build-worker")
        doc = read("docs/deployment.md")
        bad += [f"docs/deployment.md does not explain CAP_{c}" for c in EXECUTOR_CAPS if f"CAP_{c}" not in doc]
        for name in ("gateway", "build-master", "migrate"):
            if services[name].get("cap_drop") != ["ALL"] or services[name].get("cap_add"):
                bad.append(f"{name} keeps capabilities")
        return bad
    check("executor and build-worker (the sandbox): cap_drop ALL + exactly the documented capabilities, not privileged; other daemons keep none", executor_privs)

    def seccomp_profile():
        p = json.load(open(os.path.join(ROOT, SECCOMP)))
        bad = [] if p["defaultAction"] == "SCMP_ACT_ALLOW" else ["not a deny list"]
        denied = {n for r in p["syscalls"] if r["action"] != "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}
        bad += [f"denies {s}, which the sandbox calls" for s in SANDBOX_SYSCALLS if s in denied]
        bad += [f"allows {s}" for s in ("kexec_load", "init_module", "bpf", "ptrace", "open_by_handle_at", "keyctl")
                if s not in denied]
        return bad
    check("executor seccomp profile: allows every call the sandbox makes (pivot_root, mount, clone ...), denies kernel attack surface", seccomp_profile)

    if os.geteuid() == 0 and os.environ.get("MINILAMBDA_LAMBDA_DB_URL") and os.path.exists(os.path.join(BIN, "lambda-executor")):
        def live_full():
            line, healthy, status = run_executor_probe(EXECUTOR_CAPS, tmp, "full")
            bad = ([] if healthy else ["not healthy"]) + confined_like_docker(status, EXECUTOR_CAPS)
            for want in ("namespaces pid,mnt,net,ipc,uts,cgroup", "seccomp on", "per-instance uid"):
                if want not in line:
                    bad.append(f"missing '{want}'")
            if re.search(r"FALLBACK (namespaces|uid drop|seccomp)|NO namespaces|NO uid drop", line):
                bad.append("fell back: " + line)
            return bad
        check("a real lambda-executor with only the compose capabilities, no_new_privs and the seccomp profile sandboxes fully (namespaces, uid drop, seccomp)", live_full)

        def live_without_sys_admin():
            line, _, _ = run_executor_probe([c for c in EXECUTOR_CAPS if c != "SYS_ADMIN"], tmp, "nosysadmin")
            return [] if "FALLBACK namespaces off" in line else ["no namespaces fallback: " + line]
        check("control: without CAP_SYS_ADMIN the same executor falls back (so the check above can fail)", live_without_sys_admin)
    else:
        print("# skipped the live executor probe (needs root, the test stack and built binaries)")

    # ------------------------------------------------------------ k8s
    k8s_dir = os.path.join(ROOT, "infrastructure/k8s")
    docs = {}

    def k8s_parse():
        bad = []
        for fn in sorted(os.listdir(k8s_dir)):
            if fn.endswith((".yaml", ".yml")):
                try:
                    docs[fn] = [d for d in yaml.safe_load_all(open(os.path.join(k8s_dir, fn))) if d]
                except yaml.YAMLError as e:
                    bad.append(f"{fn}: {e}")
        for fn, ds in docs.items():
            for d in ds:
                if fn != "kustomization.yaml" and not (d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")):
                    bad.append(f"{fn}: object without apiVersion/kind/name")
        return bad or ([] if docs else ["no manifests"])
    check("k8s: every manifest parses and names apiVersion, kind, metadata.name", k8s_parse)
    objs = [d for fn, ds in docs.items() if fn != "kustomization.yaml" for d in ds]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o

    def k8s_kustomization():
        k = docs.get("kustomization.yaml", [{}])[0]
        listed = set(k.get("resources", []))
        files = set(docs) - {"kustomization.yaml", "secret.example.yaml"}
        bad = [f"{f} not in kustomization resources" for f in sorted(files - listed)]
        bad += [f"{f} listed but missing" for f in sorted(listed - set(docs))]
        compose_tags = {s["image"].split(":")[0]: s["image"].split(":")[1] for s in services.values() if s.get("build")}
        for img in k.get("images", []):
            if compose_tags.get(img["name"]) != img.get("newTag"):
                bad.append(f"kustomize image {img['name']}:{img.get('newTag')} is not a compose-built image")
        return bad
    check("k8s: kustomization lists every manifest (the Secret is an example) and the compose-built image tags", k8s_kustomization)

    def k8s_pods():
        bad = []
        images = {s["image"] for s in services.values()}
        cm = by_kind.get("ConfigMap", {}).get("minilambda-config", {}).get("data", {})
        sec_keys = set()
        for d in docs.get("secret.example.yaml", []):
            sec_keys |= set(d.get("stringData", {}))
        table = readme_table()
        bad += [f"ConfigMap key {k} is not a variable (README)" for k in cm if k not in table]
        bad += [f"Secret key {k} is not a variable (README)" for k in sec_keys if k not in table]
        for o in objs:
            if o["kind"] not in ("Deployment", "Job"):
                continue
            spec = o["spec"]["template"]["spec"]
            for c in spec["containers"]:
                if c["image"] not in images:
                    bad.append(f"{o['metadata']['name']}: image {c['image']} is not one compose builds or pins")
                svc = c["image"].split("/")[-1].split(":")[0]
                reads = pc.get(svc, {"MINILAMBDA_BUILD_DB_URL", "MINILAMBDA_LAMBDA_DB_URL"})
                for e in c.get("env", []):
                    if e["name"] not in reads:
                        bad.append(f"{svc}: sets {e['name']}, which it does not read")
                    ref = e.get("valueFrom", {})
                    if "configMapKeyRef" in ref:
                        r = ref["configMapKeyRef"]
                        if r["name"] != "minilambda-config" or r["key"] not in cm:
                            bad.append(f"{svc}: ConfigMap {r['name']}/{r['key']} does not exist")
                    if "secretKeyRef" in ref:
                        r = ref["secretKeyRef"]
                        if r["name"] != "minilambda-secrets" or r["key"] not in sec_keys:
                            bad.append(f"{svc}: Secret {r['name']}/{r['key']} does not exist")
                required = {v for v in reads if v in table} if svc in pc else reads
                req_names = {v for v in required if re.search(r"_(DB_URL|REDIS_URL|AMQP_URL|S3_ENDPOINT|S3_ACCESS_KEY|S3_SECRET_KEY|JWT_SECRET|INTERNAL_WEBHOOK_SECRET|INTERNAL_TOKEN)$", v)}
                got = {e["name"] for e in c.get("env", [])}
                bad += [f"{svc}: required {v} not set" for v in sorted(req_names - got)]
                port = DAEMONS.get(svc)
                if port and port not in [p["containerPort"] for p in c.get("ports", [])]:
                    bad.append(f"{svc}: containerPort is not {port}")
                if port and c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health":
                    bad.append(f"{svc}: no /health readiness probe")
        return bad
    check("k8s: Deployments/Job use only compose images, existing ConfigMap/Secret keys, variables the service reads, /health probes", k8s_pods)

    def k8s_scaling():
        bad = []
        deps = by_kind.get("Deployment", {})
        bad += [f"no Deployment {d}" for d in DAEMONS if d not in deps]
        hpa = [h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()
               if h["spec"]["scaleTargetRef"]["name"] == "lambda-executor"]
        if not hpa:
            bad.append("no HPA for lambda-executor")
        so = [s for s in by_kind.get("ScaledObject", {}).values() if s["spec"]["scaleTargetRef"]["name"] == "build-worker"]
        queue = re.search(r'#define TOPO_BUILD_QUEUE "([^"]+)"', read("shared/topology.h")).group(1)
        if not so:
            bad.append("no KEDA ScaledObject for build-worker")
        for s in so:
            for t in s["spec"]["triggers"]:
                if t["type"] != "rabbitmq" or t["metadata"].get("queueName") != queue:
                    bad.append(f"ScaledObject trigger {t['type']} on {t['metadata'].get('queueName')}, build queue is {queue}")
                auth = t.get("authenticationRef", {}).get("name")
                if auth not in by_kind.get("TriggerAuthentication", {}):
                    bad.append(f"TriggerAuthentication {auth} missing")
        if "replicas" in deps.get("build-worker", {}).get("spec", {}):
            bad.append("build-worker sets replicas (KEDA owns them)")
        ex_sc = deps["lambda-executor"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        if sorted(ex_sc["capabilities"]["add"]) != sorted(EXECUTOR_CAPS) or ex_sc["capabilities"]["drop"] != ["ALL"] or ex_sc.get("privileged"):
            bad.append("executor capabilities differ from compose")
        ext = {n for n, s in by_kind.get("Service", {}).items() if s["spec"].get("type") == "ExternalName"}
        bad += [f"no ExternalName Service {n}" for n in ("postgres", "redis", "rabbitmq", "s3") if n not in ext]
        return bad
    check("k8s: Deployment per daemon, executor HPA, KEDA ScaledObject on the real build queue, backing services external", k8s_scaling)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--exec-with-seccomp":
        load_seccomp(sys.argv[2])
        os.execv(sys.argv[3], sys.argv[3:])
    t0 = time.time()
    main()
    print(f"# compose_check took {time.time() - t0:.1f}s")
    sys.exit(1 if failures else 0)
