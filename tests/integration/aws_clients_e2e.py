"""Issue 17 "Done when": the whole Lambda life cycle driven by unchanged AWS clients against
the gateway's AWS control plane (docs/versions.md, docs/aws-compat.md), each client in its own
namespace with its own SigV4 key:
  - python3-boto3 from Debian (this script runs under /usr/bin/python3),
  - the AWS CLI v2 from Debian (/usr/bin/aws),
  - @aws-sdk/client-lambda from npm, pinned by tests/aws-sdk-js/package-lock.json (npm ci into
    build/aws-sdk-js/<lockfile hash>, reused while the lockfile is unchanged), running
    tests/aws-sdk-js/lifecycle.mjs.
Each life cycle: create (ZipFile, an AWS runtime name) -> wait active (the SDK's waiter) -> get
(Code.Location downloads the ZIP) -> list with pagination -> update code -> wait updated ->
update configuration -> publish versions -> alias with weights (2,000 invocations at 0.3,
accepted in 0.3 +/- 0.05: 4.9 standard deviations, so it cannot flake) -> invoke by version,
alias, full and partial ARN, each running exactly that version's code and configuration (the
handler answers its code's marker and its STAGE variable) -> rollback (one UpdateAlias) ->
delete -> get is ResourceNotFoundException. Errors are asserted as each client's own error
classes. The CLI starts in 1-4 s a call, so through it the weighted alias is invoked 8 times
(each answer's ExecutedVersion is the code that ran); the share is counted with boto3 and JS. Ports: ML_PORT_BASE + 2100..2103.
ML_AWS_CLIENTS=boto3,cli,js picks clients (the aws_clients_*_e2e.sh wrappers run one each);
ML_AWS_SDK_JS_NODE runs lifecycle.mjs with another node (e.g. Debian 12's 18). Prints ok/not ok lines."""
import base64, concurrent.futures, hashlib, hmac, io, json, os, re, shutil, subprocess, sys, tempfile, time, uuid, zipfile

from mlstack import ROOT, Suite, call, make_zip
from aws_clients import Boto3, Cli, REGION

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 2100  # clear of the stack's own ports
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
RUN = uuid.uuid4().hex[:6]
S = Suite("test-aws-clients", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    # 2,000 invocations 4 in flight, 6 builds a client: above the per-function defaults
    "MINILAMBDA_DEFAULT_RATE_LIMIT_RPS": "100000", "MINILAMBDA_DEFAULT_RATE_LIMIT_BURST": "100000",
    "MINILAMBDA_BUILD_RATE_LIMIT_PER_MIN": "1000", "MINILAMBDA_BUILD_RATE_LIMIT_BURST": "100",
    "MINILAMBDA_AWS_ACCESS_KEY": "AKIDAWSCLIENTSE2E", "MINILAMBDA_AWS_SECRET_KEY": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
GW = S.url("gateway")
RUNTIME = "python3.11"  # Debian 12's python3, by its AWS name
ROLE = "arn:aws:iam::123456789012:role/minilambda-e2e"  # required by the API, ignored
APP = """import os
MARK = "%s"
def handler(event, context):
    return {"mark": MARK, "stage": os.environ.get("STAGE"), "mem": context.memory_limit_in_mb}
"""
SPLIT_N, SPLIT_W, SPLIT_TOL = 2000, 0.3, 0.05
CLI_RUNS = 8  # the CLI starts in 1-4 s: its own runs of the weighted alias check consistency only
JS_DIR = os.path.join(ROOT, "tests", "aws-sdk-js")
NODE = os.environ.get("ML_AWS_SDK_JS_NODE", "node")  # e.g. a Debian 12 node 18, to check the pinned SDK on it


class Stop(Exception):
    """A step the rest of one client's life cycle depends on failed."""


def code(mark):
    return make_zip({"app.py": APP % mark})


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def admin_jwt():
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": "aws-clients-e2e", "scope": "admin", "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {head}.{body}.{b64u(sig)}", "Content-Type": "application/json"}


def new_key(ns):
    """A SigV4 key bound to namespace ns (docs/tenants.md), through the gateway's admin API."""
    # functions:secrets: Environment.Variables shows values, as AWS does (else "***": docs/aws-compat.md)
    doc = {"namespace": ns, "scopes": "functions:read functions:write functions:invoke functions:secrets"}
    st, _, body = call("POST", GW + "/admin/keys", json.dumps(doc).encode(), admin_jwt())
    if st != 201:
        raise Stop(f"POST /admin/keys for {ns}: {st} {body[:200]}")
    k = json.loads(body)
    return k["access_key_id"], k["secret_access_key"]


def must(label, what, fn):
    """fn() as a check that stops this client's life cycle when it raises or is falsy."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        S.check(f"{label}: {what}", False, f"{type(e).__name__}: {e}")
        raise Stop(what) from e
    if not S.check(f"{label}: {what}", bool(r), r):
        raise Stop(what)
    return r


def try_check(label, what, fn, cond):
    """One check of cond(fn()) that does not stop the life cycle; fn's exception fails it."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001
        return S.check(f"{label}: {what}", False, f"{type(e).__name__}: {e}")
    return S.check(f"{label}: {what}", cond(r), r)


CONFIG_KEYS = ("Version", "Runtime", "Handler", "MemorySize", "Timeout", "Environment", "Description")


def pick(cfg):
    """The configuration fields the checks compare (so a failure shows them, not the rest)."""
    return {k: cfg.get(k) for k in CONFIG_KEYS}


def zip_names(data):
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {n: z.read(n)[:60] for n in z.namelist()}
    except zipfile.BadZipFile as e:
        return f"not a ZIP ({e}): {data[:60]}"


def create_and_get(c, L, fn, extras):
    """Create, wait active, get (with the code download), get configuration: the function ARN."""
    r = must(L, "CreateFunction (ZipFile, runtime python3.11) answers the function", lambda: c.call(
        "create_function", FunctionName=fn, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": code("v1")}, Description="life cycle", Timeout=10, MemorySize=128,
        Environment={"Variables": {"STAGE": "one"}}))
    arn = r.get("FunctionArn", "")
    S.check(f"{L}: CreateFunction: FunctionArn arn:aws:lambda:{REGION}:<12 digits>:function:{fn}, State Pending|Active",
            re.fullmatch(rf"arn:aws:lambda:{REGION}:\d{{12}}:function:{re.escape(fn)}", arn) is not None and
            r.get("State") in ("Pending", "Active") and r.get("Runtime") == RUNTIME, r)
    for x in extras:
        must(L, f"CreateFunction {x}", lambda x=x: c.call("create_function", FunctionName=x, Runtime=RUNTIME, Role=ROLE,
                                                        Handler="app.handler", Code={"ZipFile": code(x)}))
    S.check(f"{L}: CreateFunction of an existing name -> ResourceConflictException", c.error(
        "ResourceConflictException", "create_function", FunctionName=fn, Runtime=RUNTIME, Role=ROLE,
        Handler="app.handler", Code={"ZipFile": code("dup")}) is None)
    S.check(f"{L}: CreateFunction with runtime java21 (not installed) -> InvalidParameterValueException", c.error(
        "InvalidParameterValueException", "create_function", FunctionName=fn + "-java", Runtime="java21", Role=ROLE,
        Handler="app.handler", Code={"ZipFile": code("java")}) is None)
    must(L, "waiter function_exists succeeds", lambda: c.wait("function_exists", FunctionName=fn) is None)
    must(L, "waiter function_active_v2 succeeds", lambda: c.wait("function_active_v2", FunctionName=fn) is None)
    for x in extras:
        must(L, f"waiter function_active_v2 for {x}", lambda x=x: c.wait("function_active_v2", FunctionName=x) is None)
    g = must(L, "GetFunction answers Configuration and Code", lambda: c.call("get_function", FunctionName=fn))
    cfg, loc = g.get("Configuration", {}), g.get("Code", {}).get("Location", "")
    S.check(f"{L}: GetFunction: State Active, LastUpdateStatus Successful, Version $LATEST",
            cfg.get("State") == "Active" and cfg.get("LastUpdateStatus") == "Successful" and
            cfg.get("Version") == "$LATEST" and cfg.get("FunctionArn") == arn, cfg)
    st, _, data = call("GET", loc) if loc.startswith("http") else (0, {}, b"")
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    S.check(f"{L}: GetFunction Code.Location downloads the uploaded ZIP, no credentials",
            st == 200 and data == code("v1"), (st, zip_names(data), loc))
    # AWS: CodeSha256 is the deployment package's, the one Location serves (Terraform's
    # source_code_hash compares it with the local ZIP's)
    S.check(f"{L}: GetFunction CodeSha256 = base64 SHA-256 of the ZIP Code.Location serves",
            sha == cfg.get("CodeSha256"), (sha, cfg.get("CodeSha256")))
    try_check(L, "GetFunctionConfiguration: runtime, handler, memory, timeout, env, description",
              lambda: pick(c.call("get_function_configuration", FunctionName=fn)),
              lambda r: r.get("Runtime") == RUNTIME and r.get("Handler") == "app.handler" and r.get("MemorySize") == 128
              and r.get("Timeout") == 10 and r.get("Environment", {}).get("Variables") == {"STAGE": "one"}
              and r.get("Description") == "life cycle")
    return arn


def listing(c, L, names):
    try:
        by_page, sizes, limit, other = c.list_names()
    except Exception as e:  # noqa: BLE001
        return S.check(f"{L}: ListFunctions with pagination", False, f"{type(e).__name__}: {e}")
    S.check(f"{L}: ListFunctions {limit} a page: exactly this namespace's {len(names)} functions, no repeats",
            sorted(by_page) == sorted(names) and len(sizes) >= 2 and max(sizes) <= limit, (by_page, sizes))
    S.check(f"{L}: ListFunctions paged again ({'paginator, PageSize 2' if c.label == 'boto3' else '--page-size 1'}): the same",
            sorted(other) == sorted(names), other)


def marks(c, L, what, fn, qualifier, mark, stage, version):
    """Invoke fn[:qualifier]: runs exactly mark's code with STAGE=stage, ExecutedVersion=version."""
    try_check(L, f"invoke {what} runs {mark} with STAGE={stage}, ExecutedVersion {version}",
              lambda: c.invoke(fn, qualifier),
              lambda r: r[0] == version and r[2] is None and (r[1] or {}).get("mark") == mark
              and (r[1] or {}).get("stage") == stage)


def update(c, L, fn):
    """Code v2, wait, configuration (memory, timeout, env, description), wait."""
    r = must(L, "UpdateFunctionCode (ZipFile v2)", lambda: c.call("update_function_code", FunctionName=fn,
                                                                    ZipFile=code("v2")))
    S.check(f"{L}: UpdateFunctionCode answers LastUpdateStatus InProgress|Successful",
            r.get("LastUpdateStatus") in ("InProgress", "Successful"), r)
    must(L, "waiter function_updated_v2 succeeds after the code update",
         lambda: c.wait("function_updated_v2", FunctionName=fn) is None)
    marks(c, L, "$LATEST right after the waiter", fn, None, "v2", "one", "$LATEST")
    r = must(L, "UpdateFunctionConfiguration (memory 256, timeout 20, env, description)", lambda: c.call(
        "update_function_configuration", FunctionName=fn, MemorySize=256, Timeout=20,
        Environment={"Variables": {"STAGE": "two"}}, Description="second"))
    must(L, "waiter function_updated_v2 succeeds after the configuration update",
         lambda: c.wait("function_updated_v2", FunctionName=fn) is None)
    try_check(L, "GetFunctionConfiguration shows the new memory, timeout, env, description",
              lambda: pick(c.call("get_function_configuration", FunctionName=fn)),
              lambda r: r.get("MemorySize") == 256 and r.get("Timeout") == 20 and r.get("Description") == "second"
              and r.get("Environment", {}).get("Variables") == {"STAGE": "two"})
    try_check(L, "invoke $LATEST sees the new configuration (memory 256)", lambda: c.invoke(fn),
              lambda r: (r[1] or {}).get("mem") in (256, "256") and (r[1] or {}).get("stage") == "two")


def publish(c, L, fn):
    """Versions: 1 = code v1 + STAGE one (published right after create), 2 = v2 + two; then
    $LATEST moves on to v3."""
    r = must(L, "PublishVersion -> version 2", lambda: c.call("publish_version", FunctionName=fn, Description="v2"))
    S.check(f"{L}: PublishVersion answers Version 2 and a qualified ARN",
            r.get("Version") == "2" and r.get("FunctionArn", "").endswith(f":function:{fn}:2"), r)
    try_check(L, "PublishVersion with nothing changed returns version 2 again (no new version)",
              lambda: c.call("publish_version", FunctionName=fn), lambda r: r.get("Version") == "2")
    must(L, "UpdateFunctionCode v3 ($LATEST only)", lambda: c.call("update_function_code", FunctionName=fn,
                                                                     ZipFile=code("v3")))
    must(L, "waiter function_updated_v2 after v3", lambda: c.wait("function_updated_v2", FunctionName=fn) is None)
    try_check(L, "ListVersionsByFunction: $LATEST, 1, 2",
              lambda: c.call("list_versions_by_function", FunctionName=fn),
              lambda r: [v.get("Version") for v in r.get("Versions", [])] == ["$LATEST", "1", "2"])
    try_check(L, "GetFunctionConfiguration Qualifier=1: the snapshot (memory 128, STAGE one)",
              lambda: pick(c.call("get_function_configuration", FunctionName=fn, Qualifier="1")),
              lambda r: r.get("Version") == "1" and r.get("MemorySize") == 128
              and r.get("Environment", {}).get("Variables") == {"STAGE": "one"})


def invokes(c, L, fn, arn):
    marks(c, L, "Qualifier=1", fn, "1", "v1", "one", "1")
    marks(c, L, "Qualifier=2", fn, "2", "v2", "two", "2")
    marks(c, L, "Qualifier=$LATEST", fn, "$LATEST", "v3", "two", "$LATEST")
    marks(c, L, "no qualifier", fn, None, "v3", "two", "$LATEST")
    marks(c, L, "alias live (-> 1)", fn, "live", "v1", "one", "1")
    marks(c, L, "by full ARN :2", f"{arn}:2", None, "v2", "two", "2")
    marks(c, L, "by full ARN :live", f"{arn}:live", None, "v1", "one", "1")
    marks(c, L, "by full unqualified ARN", arn, None, "v3", "two", "$LATEST")
    partial = arn.split(":", 4)[4]  # <account>:function:<name>
    marks(c, L, "by partial ARN <account>:function:<name>:1", f"{partial}:1", None, "v1", "one", "1")
    S.check(f"{L}: invoke Qualifier=99 (no such version) -> ResourceNotFoundException, no fallback",
            c.error("ResourceNotFoundException", "invoke", FunctionName=fn, Qualifier="99") is None)
    S.check(f"{L}: invoke Qualifier=nosuch (no such alias) -> ResourceNotFoundException",
            c.error("ResourceNotFoundException", "invoke", FunctionName=fn, Qualifier="nosuch") is None)


def safe_invoke(c, fn, qualifier):
    """c.invoke, with an exception as the answer (None, its text, None) so a sample counts it."""
    try:
        return c.invoke(fn, qualifier)
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}", None


def split(c, L, fn):
    """SPLIT_N invocations of alias live (1, with 2 at SPLIT_W): the share of version 2 within
    SPLIT_TOL, and each answer's ExecutedVersion is the version whose code ran. The CLI
    (seconds a call on a loaded machine) makes CLI_RUNS of them, checked for the latter only:
    the split itself is the server's, counted through boto3 and the JS SDK."""
    n = SPLIT_N if c.label != "aws-cli" else CLI_RUNS
    seen, wrong = {"1": 0, "2": 0}, []
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # a boto3 client is thread-safe; CLI runs are processes
        runs = list(pool.map(lambda _: safe_invoke(c, fn, "live"), range(n)))
    for ver, doc, _ in runs:
        mark = doc.get("mark") if isinstance(doc, dict) else None
        if ver in seen and mark == "v" + ver:
            seen[ver] += 1
        else:
            wrong.append((ver, doc))
    share = seen["2"] / n
    if n < SPLIT_N:
        S.check(f"{L}: weighted alias, {n} invocations: each ran version 1 or 2, ExecutedVersion = the code that ran "
                f"({seen}, {time.time() - t0:.1f} s)", not wrong, wrong[:3])
        return
    S.check(f"{L}: weighted alias over {n} invocations: version 2 share {share:.3f} in "
            f"{SPLIT_W} +/- {SPLIT_TOL}, every ExecutedVersion matches the code that ran ({time.time() - t0:.1f} s)",
            not wrong and abs(share - SPLIT_W) <= SPLIT_TOL, (seen, wrong[:3]))


def aliases(c, L, fn, arn):
    r = must(L, "CreateAlias live -> 1", lambda: c.call("create_alias", FunctionName=fn, Name="live", FunctionVersion="1",
                                                          Description="production"))
    S.check(f"{L}: CreateAlias answers AliasArn {arn}:live",
            r.get("AliasArn") == f"{arn}:live" and r.get("FunctionVersion") == "1", r)
    S.check(f"{L}: CreateAlias live again -> ResourceConflictException",
            c.error("ResourceConflictException", "create_alias", FunctionName=fn, Name="live", FunctionVersion="2") is None)
    S.check(f"{L}: CreateAlias to version 42 (none) -> ResourceNotFoundException",
            c.error("ResourceNotFoundException", "create_alias", FunctionName=fn, Name="ghost", FunctionVersion="42") is None)
    invokes(c, L, fn, arn)
    must(L, f"UpdateAlias live: 1 with RoutingConfig {{2: {SPLIT_W}}}", lambda: c.call(
        "update_alias", FunctionName=fn, Name="live", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": SPLIT_W}}))
    try_check(L, "GetAlias live shows the weights", lambda: c.call("get_alias", FunctionName=fn, Name="live"),
              lambda r: r.get("FunctionVersion") == "1" and
              r.get("RoutingConfig", {}).get("AdditionalVersionWeights") == {"2": SPLIT_W})
    S.check(f"{L}: UpdateAlias routing to $LATEST -> InvalidParameterValueException", c.error(
        "InvalidParameterValueException", "update_alias", FunctionName=fn, Name="live",
        RoutingConfig={"AdditionalVersionWeights": {"$LATEST": 0.5}}) is None)
    split(c, L, fn)
    must(L, "UpdateAlias live -> 2, no routing (promote)", lambda: c.call(
        "update_alias", FunctionName=fn, Name="live", FunctionVersion="2", RoutingConfig={"AdditionalVersionWeights": {}}))
    marks(c, L, "alias live after the promotion", fn, "live", "v2", "two", "2")
    must(L, "rollback: UpdateAlias live -> 1", lambda: c.call("update_alias", FunctionName=fn, Name="live",
                                                                FunctionVersion="1"))
    n = 20 if c.label != "aws-cli" else CLI_RUNS
    runs = [safe_invoke(c, fn, "live") for _ in range(n)]
    S.check(f"{L}: after the rollback {n} of {n} invocations of live run version 1",
            all(v == "1" and isinstance(d, dict) and d.get("mark") == "v1" for v, d, _ in runs), runs[:3])
    try_check(L, "ListAliases: live", lambda: c.call("list_aliases", FunctionName=fn),
              lambda r: [a.get("Name") for a in r.get("Aliases", [])] == ["live"])
    must(L, "DeleteAlias live", lambda: c.call("delete_alias", FunctionName=fn, Name="live") is not None)
    S.check(f"{L}: GetAlias live after the delete -> ResourceNotFoundException",
            c.error("ResourceNotFoundException", "get_alias", FunctionName=fn, Name="live") is None)


def delete(c, L, fn, extras):
    must(L, "DeleteFunction", lambda: c.call("delete_function", FunctionName=fn) is not None)
    S.check(f"{L}: GetFunction after the delete -> ResourceNotFoundException",
            c.error("ResourceNotFoundException", "get_function", FunctionName=fn) is None)
    S.check(f"{L}: invoke after the delete -> ResourceNotFoundException",
            c.error("ResourceNotFoundException", "invoke", FunctionName=fn) is None)
    for x in extras:
        try_check(L, f"DeleteFunction {x}", lambda x=x: c.call("delete_function", FunctionName=x), lambda r: True)
    try_check(L, "ListFunctions after the deletes: empty namespace", lambda: c.call("list_functions"),
              lambda r: r.get("Functions") == [])
    try_check(L, "GetAccountSettings answers AccountLimit and AccountUsage", lambda: c.call("get_account_settings"),
              lambda r: isinstance(r.get("AccountLimit"), dict) and isinstance(r.get("AccountUsage"), dict))


def lifecycle(make_client, label):
    """One client's whole life cycle in a namespace of its own."""
    ns = f"{label}-{RUN}"
    fn, extras = "orders", ["orders-extra-a", "orders-extra-b"]
    c = None
    try:
        key = new_key(ns)
        c = make_client(GW, *key)
        print(f"# {label}: {c.version}, namespace {ns}", flush=True)
        arn = create_and_get(c, label, fn, extras)
        must(label, "PublishVersion right after create -> version 1",
             lambda: c.call("publish_version", FunctionName=fn).get("Version") == "1")
        listing(c, label, [fn] + extras)
        update(c, label, fn)
        publish(c, label, fn)
        aliases(c, label, fn, arn)
        delete(c, label, fn, extras)
    except Stop as e:
        S.check(f"{label}: life cycle completed", False, f"stopped at: {e}")
    except Exception as e:  # noqa: BLE001 - a bug in a step must not hide the other clients' runs
        S.check(f"{label}: life cycle completed", False, f"{type(e).__name__}: {e}")
    finally:
        if c is not None and hasattr(c, "close"):
            c.close()


# ---------------------------------------------------------------- @aws-sdk/client-lambda

def lock_engines_allow_node18():
    """Every package in the lockfile runs on Debian 12's node 18 (its engines.node)."""
    with open(os.path.join(JS_DIR, "package-lock.json")) as f:
        lock = json.load(f)
    bad = []
    for name, p in lock["packages"].items():
        want = (p.get("engines") or {}).get("node", "")
        m = re.fullmatch(r">=\s*v?(\d+)(\.\d+)*(\.x)?", want.strip()) if want else None
        if want and not (m and int(m.group(1)) <= 18):
            bad.append((name, want))
    S.check(f"aws-sdk-js: every package of the lockfile ({len(lock['packages']) - 1}) allows node 18", not bad, bad)


def js_modules():
    """npm ci of tests/aws-sdk-js into build/aws-sdk-js/<lockfile sha256[:16]>, once per lockfile."""
    with open(os.path.join(JS_DIR, "package-lock.json"), "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(ROOT, "build", "aws-sdk-js")  # not ML_BUILD_DIR: make asan/tsan share one install
    dest = os.path.join(cache, tag)
    if os.path.isfile(os.path.join(dest, "node_modules", "@aws-sdk", "client-lambda", "package.json")):
        return dest, "cached"
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{tag}-", dir=cache)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(JS_DIR, f), tmp)
    t0 = time.time()
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp,
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Stop(f"npm ci failed: {p.stderr[-600:]}")
    try:
        os.rename(tmp, dest)  # atomic: a concurrent run that won keeps its own copy
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, f"npm ci {time.time() - t0:.1f} s"


def js_lifecycle():
    label = "aws-sdk-js"
    ns = f"aws-js-{RUN}"
    try:
        lock_engines_allow_node18()
        dest, how = js_modules()
        print(f"# {label}: modules in {dest} ({how}); node {subprocess.run([NODE, '--version'], capture_output=True, text=True).stdout.strip()}", flush=True)
        shutil.copy(os.path.join(JS_DIR, "lifecycle.mjs"), dest)  # so its imports resolve to dest/node_modules
        key, secret = new_key(ns)
        zips = tempfile.mkdtemp(prefix="aws-js-zips-")
        for m in ("v1", "v2", "v3", "orders-extra-a", "orders-extra-b", "dup"):
            with open(os.path.join(zips, m + ".zip"), "wb") as f:
                f.write(code(m))
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION=REGION,
                   AWS_CONFIG_FILE=os.path.join(zips, "none"), AWS_SHARED_CREDENTIALS_FILE=os.path.join(zips, "none"),
                   ML_ENDPOINT=GW, ML_ZIPS=zips, ML_RUNTIME=RUNTIME, ML_ROLE=ROLE, ML_SPLIT_N=str(SPLIT_N),
                   ML_SPLIT_W=str(SPLIT_W), ML_SPLIT_TOL=str(SPLIT_TOL))
        p = subprocess.Popen([NODE, os.path.join(dest, "lifecycle.mjs")], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            line = line.rstrip("\n")
            if line.startswith("not ok - "):
                S.failures += 1
            print(line, flush=True)
        rc = p.wait(600)
        shutil.rmtree(zips, ignore_errors=True)
        S.check(f"{label}: lifecycle.mjs exits 0", rc == 0, rc)
    except Stop as e:
        S.check(f"{label}: life cycle completed", False, f"stopped at: {e}")
    except Exception as e:  # noqa: BLE001
        S.check(f"{label}: life cycle completed", False, f"{type(e).__name__}: {e}")


def main():
    t0 = time.time()
    only = set(filter(None, os.environ.get("ML_AWS_CLIENTS", "boto3,cli,js").split(",")))
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        if "boto3" in only:
            lifecycle(Boto3, "boto3")
        if "cli" in only:
            lifecycle(Cli, "aws-cli")
        if "js" in only:
            js_lifecycle()
    finally:
        S.stop_all()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
