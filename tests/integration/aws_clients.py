"""Adapters that make boto3 (Debian's python3-boto3) and the AWS CLI v2 (Debian's /usr/bin/aws)
look alike to the life cycle in aws_clients_e2e.py: `call(op, **params)` with boto3's operation
and parameter names, `error(code, op, **params)` asserting the client's own error class,
`wait(waiter, **params)` with the clients' own waiters, `invoke(...)`. Each adapter is the
client used the way its users use it: boto3 methods and client.exceptions classes; CLI
commands with flags (JSON for structures, fileb:// for blobs), exit status 254 and the error
code in stderr."""
import json, os, re, shutil, subprocess, tempfile

REGION = "us-east-1"
AWS = "/usr/bin/aws"  # Debian's CLI v2; a version manager's `aws` on PATH may be v1


class Boto3:
    label = "boto3"

    def __init__(self, endpoint, key, secret):
        import boto3, botocore.config  # Debian's, as /usr/bin/python3 runs this test
        cfg = botocore.config.Config(retries={"max_attempts": 0}, connect_timeout=10, read_timeout=60,
                                     max_pool_connections=4)
        self.c = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                       region_name=REGION).client("lambda", endpoint_url=endpoint, config=cfg)
        self.version = f"boto3 {boto3.__version__} ({os.path.dirname(boto3.__file__)})"

    def call(self, op, **params):
        r = getattr(self.c, op)(**params)
        r.pop("ResponseMetadata", None)
        return r

    def error(self, code, op, **params):
        """None when op raises client.exceptions.<code>; else what happened instead."""
        cls = getattr(self.c.exceptions, code)
        try:
            r = self.call(op, **params)
            return f"no error: {r}"
        except cls:
            return None
        except Exception as e:  # noqa: BLE001 - anything else is the failure being reported
            return f"{type(e).__name__}: {e}"

    def wait(self, waiter, **params):
        """None when the waiter succeeds; else its error."""
        try:
            self.c.get_waiter(waiter).wait(WaiterConfig={"Delay": 1, "MaxAttempts": 120}, **params)
            return None
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {e}"

    def invoke(self, fn, qualifier=None, payload=b"{}"):
        """(ExecutedVersion, the decoded payload, FunctionError or None)."""
        params = {"FunctionName": fn, "Payload": payload}
        if qualifier is not None:
            params["Qualifier"] = qualifier
        r = self.c.invoke(**params)
        body = r["Payload"].read()
        return r.get("ExecutedVersion"), json.loads(body) if body else None, r.get("FunctionError")

    def list_names(self):
        """ListFunctions one item a page by hand (Marker/NextMarker), then with boto3's
        paginator: (names by hand, page sizes by hand, the page size asked, names from the
        paginator)."""
        names, sizes, marker = [], [], None
        for _ in range(50):
            r = self.c.list_functions(MaxItems=1, **({"Marker": marker} if marker else {}))
            names += [f["FunctionName"] for f in r["Functions"]]
            sizes.append(len(r["Functions"]))
            marker = r.get("NextMarker")
            if not marker:
                break
        pages = self.c.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
        return names, sizes, 1, [f["FunctionName"] for p in pages for f in p["Functions"]]


class CliError(Exception):
    def __init__(self, rc, stderr):
        super().__init__(f"exit {rc}: {stderr.strip()[-400:]}")
        self.rc, self.stderr = rc, stderr


def kebab(name):
    """FunctionName -> function-name, create_function -> create-function."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower().replace("_", "-")


class Cli:
    label = "aws-cli"

    def __init__(self, endpoint, key, secret):
        self.home = tempfile.mkdtemp(prefix="aws-cli-e2e-")
        for f in ("config", "credentials"):
            open(os.path.join(self.home, f), "w").close()
        # never the user's ~/.aws: empty config and credentials files, keys in the environment
        self.env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8",
                    "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                    "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.path.join(self.home, "config"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.home, "credentials"),
                    "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}
        self.endpoint = endpoint
        self.version = self.run(["--version"]).strip()
        self.blobs = 0

    def close(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, args):
        p = subprocess.run([AWS] + args, capture_output=True, text=True, env=self.env, timeout=300)
        if p.returncode != 0:
            raise CliError(p.returncode, p.stderr)
        return p.stdout

    def flags(self, params):
        """boto3-style parameters as the CLI's flags: --kebab-name, JSON for structures,
        fileb:// for blobs, --flag/--no-flag for booleans."""
        out = []
        if isinstance(params.get("Code"), dict) and set(params["Code"]) == {"ZipFile"}:
            params = dict(params, ZipFile=params["Code"]["ZipFile"])  # the CLI's --zip-file fileb://
            del params["Code"]
        for k, v in params.items():
            name = kebab(k)
            if isinstance(v, bool):
                out.append(f"--{name}" if v else f"--no-{name}")
                continue
            if isinstance(v, bytes):
                self.blobs += 1
                path = os.path.join(self.home, f"blob{self.blobs}.zip")
                with open(path, "wb") as f:
                    f.write(v)
                v = "fileb://" + path
            elif isinstance(v, (dict, list)):
                v = json.dumps(v)
            out += [f"--{name}", str(v)]
        return out

    def lambda_cmd(self, command, params, extra=()):
        return ["lambda", command, "--endpoint-url", self.endpoint, "--output", "json"] + \
            self.flags(params) + list(extra)

    def call(self, op, **params):
        # invoke takes its answer's file as a positional argument and JSON payloads raw
        extra = ["--cli-binary-format", "raw-in-base64-out", os.path.join(self.home, "out.json")] \
            if op == "invoke" else []
        out = self.run(self.lambda_cmd(kebab(op), params, extra))
        return json.loads(out) if out.strip() else {}

    def error(self, code, op, **params):
        """None when the CLI exits 254 (the service answered an error) naming (<code>)."""
        try:
            r = self.call(op, **params)
            return f"no error: {r}"
        except CliError as e:
            if e.rc == 254 and f"({code})" in e.stderr:
                return None
            return str(e)

    def wait(self, waiter, **params):
        try:
            self.run(["lambda", "wait", kebab(waiter).replace("-v-2", "-v2"), "--endpoint-url", self.endpoint]
                     + self.flags(params))
            return None
        except CliError as e:
            return str(e)

    def invoke(self, fn, qualifier=None, payload=b"{}"):
        fd, out = tempfile.mkstemp(dir=self.home, suffix=".json")  # one per call: runs may overlap
        os.close(fd)
        params = {"FunctionName": fn, "Payload": payload.decode()}
        if qualifier is not None:
            params["Qualifier"] = qualifier
        meta = json.loads(self.run(self.lambda_cmd("invoke", params, ["--cli-binary-format", "raw-in-base64-out", out])))
        with open(out, "rb") as f:
            body = f.read()
        os.unlink(out)
        return meta.get("ExecutedVersion"), json.loads(body) if body else None, meta.get("FunctionError")

    def list_names(self):
        """--max-items 2 with --starting-token (the CLI's NextToken wraps the API's NextMarker),
        then --page-size 1 (the CLI follows NextMarker itself, one function a request): (names of
        the --max-items walk, its page sizes, 2, all names at page size 1)."""
        names = [f["FunctionName"] for f in self.call("list_functions", PageSize=1)["Functions"]]
        walk, sizes, token = [], [], None
        for _ in range(20):
            r = self.call("list_functions", MaxItems=2, **({"StartingToken": token} if token else {}))
            walk += [f["FunctionName"] for f in r["Functions"]]
            sizes.append(len(r["Functions"]))
            token = r.get("NextToken")
            if not token:
                break
        return walk, sizes, 2, names
