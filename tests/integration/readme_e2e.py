"""The README's shell blocks, run as written against the stack `make run` starts.

Runs inside a network namespace of its own (readme_e2e.sh), so `make run`'s fixed ports
(8080..., 20000+) are free even while a developer's `make run` or the test stack is up, and
the state goes to build/.../readme/ instead of .run/. Every ```sh block of README.md runs in
order, except one preceded by `<!-- readme-test: skip (reason) -->`. In those blocks:
  - `make run` runs first; `make test` is not run (this test is part of it); `make stop` runs last;
  - `$TOKEN` is the dev JWT and `<printed>` the SigV4 secret, both read from what `make run` printed;
  - a command's trailing `# ...` comment states its result: every "key":value pair written in
    it must appear in what the command printed, and every command must exit 0.
Files the commands write (app.py, fn.zip, out.json) go to a scratch folder."""
import fcntl, json, os, re, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.error, urllib.request

ROOT = os.environ.get("ML_ROOT", os.getcwd())
BUILD = os.environ.get("ML_BUILD_DIR", os.path.join(ROOT, "build"))
failures = 0


def check(name, cond, detail=""):
    global failures
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else f"  # {str(detail)[-600:]}"), flush=True)
    failures += 0 if cond else 1
    return cond


def loopback_up():
    """A new network namespace starts with lo down: SIOCSIFFLAGS IFF_UP|IFF_RUNNING."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x40, b"\0" * 14))


def readme_commands(path):
    """(command, stated result) for each command of the README's runnable sh blocks."""
    text = open(path).read()
    cmds = []
    for m in re.finditer(r"(?:^(<!-- readme-test: skip[^\n]*-->)\n)?^```sh\n(.*?)^```", text, re.M | re.S):
        if m.group(1):
            continue
        joined = re.sub(r"\\\n\s*", " ", m.group(2))
        for line in joined.splitlines():
            code, _, comment = line.partition("  #")
            if code.strip():
                cmds.append((code.strip(), comment.strip()))
    return cmds


def stated_pairs(comment):
    return re.findall(r'"[A-Za-z_]+":(?:"[^"]*"|-?\d+|true|false|null)', comment)


def run(cmd, env, cwd, timeout=600):
    p = subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def env_for_make_run():
    """The caller's environment minus the test stack's settings (run.sh exports them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINILAMBDA_") and k not in ("ML_PORT_BASE",)}
    state = os.path.join(BUILD, "readme")
    shutil.rmtree(state, ignore_errors=True)
    env.update(ML_RUN_DIR=os.path.join(state, "stack"), ML_PLATFORM_DIR=os.path.join(state, "platform"),
               BUILD=os.path.relpath(BUILD, ROOT), HOME=os.path.join(state, "home"),
               # a stock machine's PATH: Debian's aws (CLI v2), not a developer's pyenv shim (v1)
               PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    os.makedirs(env["HOME"], exist_ok=True)
    return env


def direct(url, token=None):
    """Status and JSON body of a GET straight to a daemon (not through the gateway)."""
    req = urllib.request.Request(url, headers={"X-Minilambda-Internal": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def internal_apis(env, out):
    """make run's platform: the executor and build-master refuse direct calls without the
    internal token (docs/security.md); with the token from the 0600 file it names, they answer."""
    path = os.path.join(env["ML_RUN_DIR"], "internal_token")
    check("make run made a 0600 internal token file and says where it is",
          os.path.exists(path) and os.stat(path).st_mode & 0o777 == 0o600 and path in out, out[-400:])
    token = open(path).read().strip() if os.path.exists(path) else "missing"
    for url in ("http://127.0.0.1:8081/functions", "http://127.0.0.1:8082/builds/00000000-0000-0000-0000-000000000000"):
        st, doc = direct(url)
        check(f"make run: direct GET {url[17:]} without the internal token -> 401 unauthorized",
              st == 401 and doc.get("error", {}).get("code") == "unauthorized", (st, doc))
        st, doc = direct(url, token[:-1] + "x")
        check(f"make run: direct GET {url[17:]} with a wrong token -> 401", st == 401, (st, doc))
        check(f"make run: direct GET {url[17:]} with the token -> answered", direct(url, token)[0] in (200, 404))
    check("make run: /health needs no token", direct("http://127.0.0.1:8081/health")[0] == 200)


def main():
    loopback_up()
    cmds = readme_commands(os.path.join(ROOT, "README.md"))
    check("README has runnable sh blocks with make run and make stop",
          any(c == "make run" for c, _ in cmds) and any(c == "make stop" for c, _ in cmds), cmds)
    env = env_for_make_run()
    scratch = tempfile.mkdtemp(prefix="readme-")
    rc, out = run("make run", env, ROOT)
    if not check("make run starts the platform", rc == 0, out):
        run("make stop", env, ROOT)
        return
    token = re.search(r"dev JWT:\s+(\S+)", out)
    secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", out)
    check("make run prints a dev JWT and the SigV4 secret", token and secret, out)
    env["TOKEN"] = token.group(1) if token else ""
    try:
        internal_apis(env, out)
        for cmd, comment in cmds:
            if cmd in ("make run", "make stop", "make test"):
                continue
            cmd = cmd.replace("<printed>", secret.group(1) if secret else "")
            rc, out = run(cmd, env, scratch, timeout=120)
            pairs = stated_pairs(comment)
            missing = [p for p in pairs if p not in out]
            check(f"README: {cmd[:70]}" + (f"  -> {', '.join(pairs)}" if pairs else ""),
                  rc == 0 and not missing, f"exit {rc}, missing {missing}: {out}")
    finally:
        rc, out = run("make stop", env, ROOT)
        check("make stop stops the platform", rc == 0, out)
    shutil.rmtree(scratch, ignore_errors=True)
    with socket.socket() as s:
        check("nothing listens on the gateway's port after make stop", s.connect_ex(("127.0.0.1", 8080)) != 0)


if __name__ == "__main__":
    main()
    sys.exit(1 if failures else 0)
