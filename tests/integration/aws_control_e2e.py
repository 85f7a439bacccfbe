"""The AWS Lambda control plane end to end (issue 17 item 1; docs/aws-compat.md): boto3
(Debian's python3-boto3) against the gateway on the real daemons, with per-namespace SigV4
keys. The whole life cycle — create, wait active, get (by name, partial ARN, full ARN), list
with MaxItems/Marker, invoke, update code, wait updated, update configuration, publish
versions, an alias with weights, invoke by version/alias/ARN, rollback, concurrency, tags,
account settings, delete — and each error as the exception class boto3 raises for it, and
that another namespace's key sees none of it. Prints ok/not ok."""
import base64, collections, hashlib, hmac, io, json, os, sys, time, uuid, zipfile

import boto3
import botocore.config
import botocore.exceptions

from mlstack import Suite, call

BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 960  # past the stack's own ports
PORTS = {"gateway": BASE, "lambda-executor": BASE + 1, "build-master": BASE + 2, "build-worker": BASE + 3}
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
REGION = "eu-central-1"
RUN = uuid.uuid4().hex[:6]
NS_A, NS_B = f"aws-a-{RUN}", f"aws-b-{RUN}"
S = Suite("test-aws-control", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET, "MINILAMBDA_AWS_REGION": REGION,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}"})
GW = S.url("gateway")
RW = "functions:read functions:write functions:invoke functions:secrets"  # secrets: env values shown
CODE = """import os
def handler(event, context):
    return {"rev": %d, "env": os.environ.get("COLOR"), "version": context.function_version}
"""


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims):
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(dict({"sub": "aws-e2e", "exp": int(time.time()) + 3600}, **claims)).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {head}.{body}.{b64u(sig)}", "Content-Type": "application/json"}


def zipped(rev):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", CODE % rev)
    return buf.getvalue()


def account(ns):
    return "000000000000" if ns == "default" else "%012d" % (int.from_bytes(hashlib.sha256(ns.encode()).digest()[:5], "big") % 10**12)


def key(admin, ns, scopes=RW):
    st, _, body = call("POST", GW + "/admin/keys", json.dumps({"namespace": ns, "scopes": scopes}).encode(), admin)
    doc = json.loads(body)
    if st != 201:
        raise RuntimeError(f"key for {ns}: {st} {doc}")
    return doc["access_key_id"], doc["secret_access_key"]


def client(k):
    cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=90)
    return boto3.client("lambda", endpoint_url=GW, region_name=REGION, aws_access_key_id=k[0],
                        aws_secret_access_key=k[1], config=cfg)


def strip(d):
    """A response without its metadata, for a failure's detail."""
    return {k: v for k, v in d.items() if k != "ResponseMetadata"} if isinstance(d, dict) else d


def raises(name, fn, exc, status=None):
    """Checks that fn() raises the boto3 exception class exc (and the HTTP status)."""
    try:
        r = fn()
        S.check(name, False, f"no error: {str(r)[:200]}")
    except botocore.exceptions.ClientError as e:
        st = e.response["ResponseMetadata"]["HTTPStatusCode"]
        S.check(name, isinstance(e, exc) and (status is None or st == status),
                (type(e).__name__, st, e.response.get("Error")))


def waiter(c, name, fn_name, **kw):
    c.get_waiter(name).wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 90}, **kw)


def invoke(c, fn, qualifier=None):
    kw = {"Qualifier": qualifier} if qualifier else {}
    r = c.invoke(FunctionName=fn, Payload=b"{}", **kw)
    return r["StatusCode"], r.get("ExecutedVersion"), json.loads(r["Payload"].read() or b"null")


def create_and_get(c, fn, arn):
    zip1 = zipped(1)
    made = c.create_function(FunctionName=fn, Runtime="python3", Role="arn:aws:iam::1:role/x",
                             Handler="app.handler", Code={"ZipFile": zip1}, Timeout=15, MemorySize=128,
                             Environment={"Variables": {"COLOR": "red"}}, Description="first",
                             Tags={"team": "a"})
    S.check("CreateFunction -> 201 Pending with the AWS shape",
            made["ResponseMetadata"]["HTTPStatusCode"] == 201 and made["State"] == "Pending" and
            made["FunctionArn"] == arn and made["Version"] == "$LATEST" and made["PackageType"] == "Zip" and
            made["Architectures"] == ["x86_64"] and made["Timeout"] == 15 and made["Role"].startswith("arn:aws:iam::"),
            strip(made))
    waiter(c, "function_exists", fn)
    waiter(c, "function_active_v2", fn)
    S.check("waiters function_exists and function_active_v2 return", True)
    g = c.get_function(FunctionName=fn)
    cfg = g["Configuration"]
    S.check("GetFunction: Configuration Active, Successful, env, Code.RepositoryType",
            cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful" and
            cfg["Environment"]["Variables"] == {"COLOR": "red"} and cfg["MemorySize"] == 128 and
            g["Code"]["RepositoryType"] == "S3" and cfg["Handler"] == "app.handler", strip(g))
    S.check("GetFunction: CodeSha256/CodeSize are the uploaded ZIP's (AWS), LastModified AWS format",
            cfg["CodeSha256"] == base64.b64encode(hashlib.sha256(zip1).digest()).decode() and
            cfg["CodeSize"] == len(zip1) and
            cfg["LastModified"].endswith("+0000") and len(cfg["LastModified"]) == 28, cfg)
    loc = g["Code"]["Location"]
    st, hdrs, body = call("GET", loc, headers={"X-Minilambda-Internal": None})
    S.check("Code.Location downloads the ZIP without credentials", st == 200 and body == zip1, (loc, st, body[:100]))
    st, _, _ = call("GET", loc.replace("signature=", "signature=0"), headers={"X-Minilambda-Internal": None})
    st2, _, _ = call("GET", loc.split("?")[0], headers={"X-Minilambda-Internal": None})
    S.check("Code.Location with a changed or no signature -> 403", st == 403 and st2 == 403, (st, st2))
    S.check("GetFunction: Description and Tags from CreateFunction",
            cfg.get("Description") == "first" and g.get("Tags") == {"team": "a"}, g)
    return cfg


def name_forms(c, fn, arn, acct):
    for form in (fn, arn, f"{acct}:function:{fn}"):
        r = c.get_function_configuration(FunctionName=form)
        S.check(f"GetFunctionConfiguration by {form[:40]}", r["FunctionName"] == fn and r["FunctionArn"] == arn, r)
    st, ver, out = invoke(c, arn)
    S.check("Invoke by full ARN -> 200, X-Amz-Executed-Version $LATEST", st == 200 and ver == "$LATEST" and out["rev"] == 1,
            (st, ver, out))


def timing(c, fn):
    """Not a check: what a control-plane read costs through the gateway (boto3, SigV4 and the
    executor's GET included), printed for docs/aws-compat.md."""
    for op, call_ in (("GetFunctionConfiguration", lambda: c.get_function_configuration(FunctionName=fn)),
                      ("ListFunctions", lambda: c.list_functions(MaxItems=10))):
        ts = []
        for _ in range(100):
            t = time.perf_counter()
            call_()
            ts.append((time.perf_counter() - t) * 1000)
        ts.sort()
        print(f"# {op} x100 via boto3: p50 {ts[49]:.1f} ms, p99 {ts[98]:.1f} ms", flush=True)


def pagination(c, names):
    seen, marker, pages = [], None, 0
    while True:
        kw = {"MaxItems": 1}
        if marker:
            kw["Marker"] = marker
        r = c.list_functions(**kw)
        pages += 1
        seen += [f["FunctionName"] for f in r["Functions"]]
        S.check(f"ListFunctions page {pages}: at most MaxItems", len(r["Functions"]) <= 1, r["Functions"])
        marker = r.get("NextMarker")
        if not marker or pages > 20:
            break
    S.check("ListFunctions with MaxItems=1 walks every function once", sorted(seen) == sorted(names), seen)
    allf = [f["FunctionName"] for p in c.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}) for f in p["Functions"]]
    S.check("boto3's list_functions paginator sees them all", sorted(allf) == sorted(names), allf)


def updates(c, fn):
    r = c.update_function_code(FunctionName=fn, ZipFile=zipped(2))
    S.check("UpdateFunctionCode -> 200 LastUpdateStatus InProgress", r["LastUpdateStatus"] == "InProgress", r)
    waiter(c, "function_updated_v2", fn)
    st, ver, out = invoke(c, fn)
    S.check("after function_updated_v2 the new code runs", st == 200 and out["rev"] == 2, out)
    r = c.update_function_configuration(FunctionName=fn, MemorySize=256, Timeout=20, Description="second",
                                        Environment={"Variables": {"COLOR": "blue"}})
    S.check("UpdateFunctionConfiguration -> the new MemorySize/Timeout/Description/env",
            r["MemorySize"] == 256 and r["Timeout"] == 20 and r["Description"] == "second" and
            r["Environment"]["Variables"] == {"COLOR": "blue"}, strip(r))
    waiter(c, "function_updated_v2", fn)
    st, ver, out = invoke(c, fn)
    S.check("the new environment applies", out.get("env") == "blue", out)


def versions(c, fn, arn):
    cfg = c.get_function_configuration(FunctionName=fn)
    v1 = c.publish_version(FunctionName=fn, Description="v1", CodeSha256=cfg["CodeSha256"])
    S.check("PublishVersion -> 201 Version 1, qualified ARN",
            v1["ResponseMetadata"]["HTTPStatusCode"] == 201 and v1["Version"] == "1" and v1["FunctionArn"] == arn + ":1", v1)
    raises("PublishVersion with another CodeSha256 -> PreconditionFailedException",
           lambda: c.publish_version(FunctionName=fn, CodeSha256=base64.b64encode(b"x" * 32).decode()),
           c.exceptions.PreconditionFailedException, 412)
    c.update_function_code(FunctionName=fn, ZipFile=zipped(3))
    waiter(c, "function_updated_v2", fn)
    v2 = c.publish_version(FunctionName=fn)
    S.check("PublishVersion after new code -> Version 2", v2["Version"] == "2", v2)
    vs = c.list_versions_by_function(FunctionName=fn)
    S.check("ListVersionsByFunction: $LATEST, 1, 2", [v["Version"] for v in vs["Versions"]] == ["$LATEST", "1", "2"], vs)
    page = c.list_versions_by_function(FunctionName=fn, MaxItems=2)
    S.check("ListVersionsByFunction MaxItems=2 -> NextMarker", len(page["Versions"]) == 2 and page.get("NextMarker"), page)
    g = c.get_function(FunctionName=fn, Qualifier="1")
    S.check("GetFunction Qualifier=1: Version 1, qualified ARN, its own Description",
            g["Configuration"]["Version"] == "1" and g["Configuration"]["FunctionArn"] == arn + ":1", g["Configuration"])
    for q, rev in (("1", 2), ("2", 3), ("$LATEST", 3)):
        st, ver, out = invoke(c, fn, q)
        S.check(f"Invoke Qualifier={q} runs that code, X-Amz-Executed-Version {q}", st == 200 and ver == q and out["rev"] == rev,
                (st, ver, out))
    st, ver, out = invoke(c, f"{fn}:1")
    S.check("Invoke name:1 runs version 1", ver == "1" and out["rev"] == 2, (ver, out))
    st, ver, out = invoke(c, arn + ":2")
    S.check("Invoke ARN:2 runs version 2", ver == "2" and out["rev"] == 3, (ver, out))
    raises("Invoke an unknown qualifier -> ResourceNotFoundException",
           lambda: c.invoke(FunctionName=fn, Qualifier="99"), c.exceptions.ResourceNotFoundException, 404)
    raises("GetFunction of an unknown version -> ResourceNotFoundException",
           lambda: c.get_function(FunctionName=fn, Qualifier="99"), c.exceptions.ResourceNotFoundException, 404)


def aliases(c, fn, arn):
    a = c.create_alias(FunctionName=fn, Name="live", FunctionVersion="1", Description="prod",
                       RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    S.check("CreateAlias -> 201 AliasArn, weights",
            a["ResponseMetadata"]["HTTPStatusCode"] == 201 and a["AliasArn"] == arn + ":live" and
            a["FunctionVersion"] == "1" and a["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}, a)
    raises("CreateAlias again -> ResourceConflictException",
           lambda: c.create_alias(FunctionName=fn, Name="live", FunctionVersion="1"), c.exceptions.ResourceConflictException, 409)
    g = c.get_alias(FunctionName=fn, Name="live")
    S.check("GetAlias", g["Name"] == "live" and g["Description"] == "prod", g)
    c.create_alias(FunctionName=fn, Name="beta", FunctionVersion="2")
    la = c.list_aliases(FunctionName=fn)
    S.check("ListAliases: beta, live", sorted(x["Name"] for x in la["Aliases"]) == ["beta", "live"], la)
    la = c.list_aliases(FunctionName=fn, FunctionVersion="2")
    S.check("ListAliases FunctionVersion=2: beta", [x["Name"] for x in la["Aliases"]] == ["beta"], la)
    seen = collections.Counter(invoke(c, fn, "live")[1] for _ in range(40))
    S.check("Invoke the weighted alias runs both versions", set(seen) == {"1", "2"}, seen)
    raises("DeleteFunction Qualifier=2 while an alias routes to it -> ResourceConflictException",
           lambda: c.delete_function(FunctionName=fn, Qualifier="2"), c.exceptions.ResourceConflictException, 409)
    u = c.update_alias(FunctionName=fn, Name="live", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {}})
    S.check("UpdateAlias (rollback): version 1, no weights", u["FunctionVersion"] == "1" and not u.get("RoutingConfig", {}).get("AdditionalVersionWeights"), u)
    seen = collections.Counter(invoke(c, fn, "live")[1] for _ in range(10))
    S.check("after the rollback the alias runs version 1 only", set(seen) == {"1"}, seen)
    st, ver, out = invoke(c, arn + ":live")
    S.check("Invoke ARN:alias", st == 200 and ver == "1", (st, ver))
    c.delete_alias(FunctionName=fn, Name="beta")
    raises("GetAlias after DeleteAlias -> ResourceNotFoundException",
           lambda: c.get_alias(FunctionName=fn, Name="beta"), c.exceptions.ResourceNotFoundException, 404)


def extras(c, fn, arn):
    r = c.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=5)
    S.check("PutFunctionConcurrency -> 5", r["ReservedConcurrentExecutions"] == 5, r)
    r = c.get_function_concurrency(FunctionName=fn)
    S.check("GetFunctionConcurrency -> 5", r.get("ReservedConcurrentExecutions") == 5, r)
    S.check("GetFunction: Concurrency", c.get_function(FunctionName=fn).get("Concurrency") == {"ReservedConcurrentExecutions": 5})
    c.delete_function_concurrency(FunctionName=fn)
    S.check("DeleteFunctionConcurrency -> 204", True)
    c.tag_resource(Resource=arn, Tags={"env": "prod", "owner": "me"})
    t = c.list_tags(Resource=arn)["Tags"]
    S.check("TagResource + ListTags", t == {"team": "a", "env": "prod", "owner": "me"}, t)
    c.untag_resource(Resource=arn, TagKeys=["team", "owner"])
    t = c.list_tags(Resource=arn)["Tags"]
    S.check("UntagResource with two keys", t == {"env": "prod"}, t)
    s = c.get_account_settings()
    S.check("GetAccountSettings: limits and usage of the namespace",
            s["AccountUsage"]["FunctionCount"] >= 1 and s["AccountLimit"]["CodeSizeZipped"] == 52428800 and
            s["AccountLimit"]["ConcurrentExecutions"] > 0, s)


def errors(c, fn, ro, admin):
    raises("GetFunction of a missing function -> ResourceNotFoundException",
           lambda: c.get_function(FunctionName="nope-" + RUN), c.exceptions.ResourceNotFoundException, 404)
    st, _, body = call("GET", f"{GW}/2015-03-31/functions/{fn}/versions?MaxItems=0", headers=jwt({"scope": RW, "ns": NS_A}))
    S.check("ListVersionsByFunction MaxItems=0 -> 400 InvalidParameterValueException (and the gateway lives on)",
            st == 400 and json.loads(body).get("Type") == "User", (st, body))
    raises("CreateFunction of an existing name -> ResourceConflictException",
           lambda: c.create_function(FunctionName=fn, Runtime="python3", Role="r", Handler="app.handler",
                                     Code={"ZipFile": zipped(1)}), c.exceptions.ResourceConflictException, 409)
    raises("CreateFunction with S3Bucket -> InvalidParameterValueException",
           lambda: c.create_function(FunctionName="s3-" + RUN, Runtime="python3", Role="r", Handler="app.handler",
                                     Code={"S3Bucket": "bucket", "S3Key": "k"}), c.exceptions.InvalidParameterValueException, 400)
    raises("UpdateFunctionConfiguration MemorySize=8192 (above the platform's) -> InvalidParameterValueException",
           lambda: c.update_function_configuration(FunctionName=fn, MemorySize=8192), c.exceptions.InvalidParameterValueException, 400)
    raises("an ARN of another account -> ResourceNotFoundException",
           lambda: c.get_function(FunctionName=f"arn:aws:lambda:{REGION}:123456789012:function:{fn}"),
           c.exceptions.ResourceNotFoundException, 404)
    raises("a key without functions:write -> AccessDeniedException",
           lambda: ro.delete_function(FunctionName=fn), ro.exceptions.ClientError, 403)
    try:
        c.get_policy(FunctionName=fn)
        S.check("an unsupported operation -> 400 UnknownOperationException", False, "no error")
    except botocore.exceptions.ClientError as e:
        S.check("an unsupported operation -> 400 UnknownOperationException",
                e.response["Error"]["Code"] == "UnknownOperationException" and
                e.response["ResponseMetadata"]["HTTPStatusCode"] == 400 and "aws-compat" in e.response["Error"]["Message"],
                e.response)
    st, _, _ = call("PATCH", f"{GW}/admin/namespaces/{NS_A}", json.dumps({"quotas": {"builds_per_minute": 1}}).encode(), admin)
    time.sleep(6)  # the gateway's quota cache

    def two_updates():
        c.update_function_code(FunctionName=fn, ZipFile=zipped(3))
        return c.update_function_code(FunctionName=fn, ZipFile=zipped(3))
    raises(f"UpdateFunctionCode past the namespace's builds_per_minute -> TooManyRequestsException (quota set: {st})",
           two_updates, c.exceptions.TooManyRequestsException, 429)
    call("PATCH", f"{GW}/admin/namespaces/{NS_A}", json.dumps({"quotas": {"builds_per_minute": None}}).encode(), admin)
    time.sleep(6)
    waiter(c, "function_updated_v2", fn)


def isolation(c, other, fn, arn):
    raises("another namespace's key: GetFunction by name -> ResourceNotFoundException",
           lambda: other.get_function(FunctionName=fn), other.exceptions.ResourceNotFoundException, 404)
    raises("another namespace's key: the full ARN -> ResourceNotFoundException",
           lambda: other.get_function_configuration(FunctionName=arn), other.exceptions.ResourceNotFoundException, 404)
    raises("another namespace's key: Invoke -> ResourceNotFoundException",
           lambda: other.invoke(FunctionName=fn), other.exceptions.ResourceNotFoundException, 404)
    raises("another namespace's key: DeleteFunction -> ResourceNotFoundException",
           lambda: other.delete_function(FunctionName=fn), other.exceptions.ResourceNotFoundException, 404)
    names = [f["FunctionName"] for f in other.list_functions()["Functions"]]
    S.check("another namespace's key lists none of them", fn not in names, names)
    S.check("still there for its own namespace", c.get_function(FunctionName=fn)["Configuration"]["State"] == "Active")


def delete(c, fn):
    c.delete_function(FunctionName=fn, Qualifier="2")
    vs = [v["Version"] for v in c.list_versions_by_function(FunctionName=fn)["Versions"]]
    S.check("DeleteFunction Qualifier=2 removes that version only", vs == ["$LATEST", "1"], vs)
    r = c.delete_function(FunctionName=fn)
    S.check("DeleteFunction -> 204", r["ResponseMetadata"]["HTTPStatusCode"] in (200, 204), r)
    raises("GetFunction after DeleteFunction -> ResourceNotFoundException",
           lambda: c.get_function(FunctionName=fn), c.exceptions.ResourceNotFoundException, 404)


def main():
    t0 = time.time()
    try:
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        admin = jwt({"scope": "admin"})
        for ns in (NS_A, NS_B):
            call("POST", GW + "/admin/namespaces", json.dumps({"name": ns}).encode(), admin)
        c, other = client(key(admin, NS_A)), client(key(admin, NS_B))
        ro = client(key(admin, NS_A, "functions:read functions:invoke"))
        acct = account(NS_A)
        fn = "life-" + RUN
        arn = f"arn:aws:lambda:{REGION}:{acct}:function:{fn}"
        create_and_get(c, fn, arn)
        name_forms(c, fn, arn, acct)
        more = [f"page-{i}-{RUN}" for i in range(3)]
        for m in more:
            c.create_function(FunctionName=m, Runtime="python3", Role="r", Handler="app.handler", Code={"ZipFile": zipped(9)})
        pagination(c, [fn] + more)
        timing(c, fn)
        updates(c, fn)
        versions(c, fn, arn)
        aliases(c, fn, arn)
        extras(c, fn, arn)
        errors(c, fn, ro, admin)
        isolation(c, other, fn, arn)
        delete(c, fn)
    except Exception as e:  # a failure outside a check is a failure too, with its reason
        import traceback
        traceback.print_exc()
        S.check("the run completes", False, repr(e))
    finally:
        S.stop_all()
    print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
