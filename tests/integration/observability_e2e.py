"""Observability end to end (issue 7): the four daemons on the test stack, Prometheus started by
infrastructure/dev/observe.sh with its generated configuration (1 s scrapes), a little traffic
(builds good and bad, sync and async invocations, a 429, a 401, a handler error, a timeout, an
out-of-memory kill, an over-large response, a dead-lettered event), then every PromQL
expression of every dashboard panel and template variable, and every alert rule without its
threshold, must return series from that Prometheus — and every metric they name must exist.

Also: promtool check config/rules/metrics, the dashboards' JSON (Grafana-loadable, in sync with
observability/grafana/dashboards.py), and the log panels' stream selectors against the labels
promtail.yml sets (Loki and promtail are not packaged in Debian: LogQL is not run here).
Prints "ok - ..." / "not ok - ..." per check, "# ..." for notes."""
import base64, concurrent.futures, http.server, json, os, re, shutil, subprocess, sys, threading, time
import urllib.parse, uuid

import yaml  # python3-yaml: a dependency of docker-compose, installed by deps.sh

from mlstack import BIN, ROOT, Suite, call, make_zip

PORTS = {"gateway": 31780, "lambda-executor": 31781, "build-master": 31782, "build-worker": 31792}
PROM_PORT, RECEIVER_PORT, CLOSED_PORT = 31790, 31793, 31799
PROM = f"http://127.0.0.1:{PROM_PORT}"
OBS = os.path.join(ROOT, "observability")
DASH_DIR = os.path.join(OBS, "grafana", "dashboards")
DAEMONS = ("gateway", "lambda-executor", "build-master", "build-worker")
JWT_SECRET = base64.b64encode(os.urandom(24)).decode()
S = Suite("test-observability", PORTS, {
    "MINILAMBDA_JWT_SECRET": JWT_SECRET,
    "MINILAMBDA_BUILD_MASTER_URLS": f"http://127.0.0.1:{PORTS['build-master']}",
    "MINILAMBDA_EXECUTOR_URLS": f"http://127.0.0.1:{PORTS['lambda-executor']}",
    "MINILAMBDA_GATEWAY_FN_CACHE_TTL_MS": "500",
    # a response over this is the gateway's too_large proxy error (a panel and an alert)
    "MINILAMBDA_GATEWAY_MAX_RESPONSE_BYTES": "65536"})
# Grafana's variables, as the test substitutes them: regex variables match everything, the
# log search text box is empty.
BUILTINS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "5m"}
TEXT_VARS = {"search"}
# names a query may use that no target exposes: Prometheus' own series
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan"}

APP = """
import time
def handler(event, context):
    action = event.get("action")
    if action == "raise":
        raise ValueError("observability test failure")
    if action == "sleep":
        time.sleep(event["s"])
    if action == "oom":
        blocks = []
        while True:
            blocks.append(bytearray(16 << 20))
    if action == "big":
        return "x" * 100000
    return {"ok": True}
"""


class Receiver(http.server.BaseHTTPRequestHandler):
    """Webhook and destination receiver: counts POSTs per path."""
    hits = {}

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.hits[self.path] = Receiver.hits.get(self.path, 0) + 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


# ---------------------------------------------------------------- Prometheus helpers

def prom(path, **params):
    st, _, body = call("GET", f"{PROM}{path}?{urllib.parse.urlencode(params, doseq=True)}", timeout=10)
    doc = json.loads(body) if body else {}
    return doc.get("data") if st == 200 and doc.get("status") == "success" else None, doc.get("error", st)


def query(expr):
    data, err = prom("/api/v1/query", query=expr)
    return (data["result"], None) if data is not None else (None, err)


def substitute(expr):
    for k, v in BUILTINS.items():
        expr = expr.replace(k, v)
    # ${var}, ${var:format} and $var: multi-value variables set to All
    return re.sub(r"\$\{(\w+)(:\w+)?\}|\$(\w+)",
                  lambda m: "" if (m.group(1) or m.group(3)) in TEXT_VARS else ".*", expr)


def metric_names(expr):
    """The metric names a PromQL expression selects (heuristic: strings, matchers, ranges and
    grouping clauses removed; identifiers not followed by "(" and not keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", e):
        if not m.group(2) and m.group(1) not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def strip_threshold(q):
    """An alert expression without its final comparison (absent(X): X)."""
    q = q.strip()
    m = re.fullmatch(r"absent\((.*)\)", q, re.S)
    if m:
        return m.group(1)
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$", "", q)


# ---------------------------------------------------------------- static checks

def load_dashboards():
    out = {}
    for name in sorted(os.listdir(DASH_DIR)):
        if name.endswith(".json"):
            with open(os.path.join(DASH_DIR, name)) as f:
                try:
                    out[name] = json.load(f)
                except ValueError as e:
                    S.check(f"{name} is valid JSON", False, e)
    return out


def panels_of(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def static_checks(dashboards):
    for args in (["config", os.path.join(OBS, "prometheus/prometheus.yml")],
                 ["rules", os.path.join(OBS, "prometheus/alerts.yml")]):
        r = subprocess.run(["promtool", "check", *args], capture_output=True, text=True)
        S.check(f"promtool check {args[0]} {os.path.relpath(args[1], ROOT)}", r.returncode == 0,
                r.stdout + r.stderr)
    r = subprocess.run(["/usr/bin/python3", os.path.join(OBS, "grafana/dashboards.py"), "--check"],
                       capture_output=True, text=True)
    S.check("dashboard JSON is what observability/grafana/dashboards.py writes", r.returncode == 0, r.stdout)
    want = {"system-overview.json", "request-traffic.json", "builds.json", "functions.json"}
    S.check("the four dashboards exist", want <= set(dashboards), sorted(dashboards))
    with open(os.path.join(OBS, "grafana/provisioning/datasources/datasources.yml")) as f:
        uids = {d["uid"]: d["type"] for d in yaml.safe_load(f)["datasources"]}
    S.check("datasources provisioned: prometheus and loki by uid",
            uids == {"prometheus": "prometheus", "loki": "loki"}, uids)
    uids_seen = set()
    for name, d in dashboards.items():
        problems = []
        if d.get("id") is not None or not d.get("uid") or d["uid"] in uids_seen:
            problems.append("id must be null and uid set and unique")
        uids_seen.add(d.get("uid"))
        if not 36 <= d.get("schemaVersion", 0) <= 39:
            problems.append(f"schemaVersion {d.get('schemaVersion')}")
        ids, cells = set(), set()
        for p in panels_of(d):
            g = p.get("gridPos", {})
            if p.get("id") in ids or not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
                problems.append(f"panel {p.get('title')}: id/gridPos")
            ids.add(p.get("id"))
            for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
                for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                    if (x, y) in cells:
                        problems.append(f"panel {p.get('title')} overlaps another")
                    cells.add((x, y))
            for t in [p] + p.get("targets", []):
                ds = t.get("datasource")
                if ds and uids.get(ds.get("uid")) != ds.get("type"):
                    problems.append(f"panel {p.get('title')}: datasource {ds}")
            if p["type"] != "row" and not p.get("targets"):
                problems.append(f"panel {p.get('title')} has no query")
        if not any(p["type"] == "logs" for p in panels_of(d)):
            problems.append("no logs panel")
        S.check(f"{name}: loadable by Grafana (id null, uid, schemaVersion, gridPos, datasources by uid, "
                f"a logs panel)", not problems, sorted(set(problems))[:5])


def promtail_labels():
    """The stream labels promtail.yml gives lines: relabel targets and labels stages."""
    with open(os.path.join(OBS, "promtail/promtail.yml")) as f:
        cfg = yaml.safe_load(f)
    labels, json_keys = set(), set()

    def walk(stages):
        for st in stages:
            for kind, body in st.items():
                if kind == "labels":
                    labels.update(body)
                elif kind == "json":
                    json_keys.update(body["expressions"].values())
                elif kind == "match":
                    walk(body.get("stages", []))
    for sc in cfg["scrape_configs"]:
        labels.update(r["target_label"] for r in sc.get("relabel_configs", []) if "target_label" in r)
        walk(sc.get("pipeline_stages", []))
    return labels, json_keys


# Streams that do not pass through promtail: the executor pushes function logs to Loki itself
# with these labels (docs/logs.md §1).
PUSHED_LABELS = {"function", "namespace", "level"}


def check_log_panels(dashboards):
    labels, json_keys = promtail_labels()
    S.check("promtail: service, level, type, auth, status_class are labels; request_id, function_id, client, "
            "subject are not",
            {"service", "level", "type", "auth", "status_class"} <= labels
            and not {"request_id", "function_id", "client", "subject"} & labels, labels)
    labels = labels | PUSHED_LABELS
    log_c = open(os.path.join(ROOT, "shared/log.c")).read()
    services_src = " ".join(open(os.path.join(dp, f)).read() for dp, _, fs in os.walk(os.path.join(ROOT, "services"))
                            for f in fs if f.endswith(".c"))
    missing = [k for k in json_keys if not any(f'{q}{k}{q}' in src for q in ('"', '\\"') for src in (log_c, services_src))]
    S.check("promtail's json stage reads keys the daemons print (shared/log.c, services/)", not missing, missing)
    levels = set(re.search(r"level_names\[\] = \{([^}]*)\}", log_c).group(1).replace('"', "").replace(" ", "")
                 .split(","))
    values = {"service": set(DAEMONS) | {"function"}, "level": levels, "type": {"access"},
              "auth": {"allowed", "refused", "none"}}
    for name, d in dashboards.items():
        for p in panels_of(d):
            if p["type"] != "logs":
                continue
            for t in p["targets"]:
                expr = t["expr"].replace("$service", "|".join(DAEMONS)).replace("$level", "|".join(sorted(levels)))
                sel = re.match(r"\s*\{([^}]*)\}", expr)
                bad = []
                matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', sel.group(1)) if sel else []
                for label, op, val in matchers:
                    if label not in labels:
                        bad.append(f"label {label} is not set by promtail")
                    elif label in values and op in ("=", "=~"):
                        bad += [f"{label} value {v}" for v in val.split("|") if v not in values[label]]
                S.check(f"{name} / {p['title']}: LogQL selector uses promtail's labels and real values "
                        f"({t['expr']})", sel and matchers and not bad, bad or "no stream selector")


# ---------------------------------------------------------------- traffic

def gw(method, path, doc=None, headers=None, auth=True):
    """A call through the gateway, with the test's JWT unless auth is False."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if auth:
        h["Authorization"] = "Bearer " + S.token
    body = json.dumps(doc).encode() if doc is not None else None
    try:
        return call(method, S.url("gateway") + path, body, h, timeout=20)
    except OSError as e:  # a hung or dropped request is a failed check, not a traceback
        return 0, {}, f"{method} {path}: {e}".encode()


def deploy(name, files, handler="app.handler", **config):
    doc = {"name": name, "runtime": "python3", "handler": handler,
           "code_base64": base64.b64encode(make_zip(files)).decode(), **config}
    st, _, body = gw("POST", "/functions", doc)
    if st != 202:
        return {"name": name, "error": f"{st} {body[:200]}"}
    return S.wait_state(name) or {"name": name, "error": "no final state"}


def traffic(run):
    hook = f"http://127.0.0.1:{RECEIVER_PORT}"
    ok, rl, nohandler, evil = (f"obs-{run}", f"obsrl-{run}", f"obsbad-{run}", f"obsevil-{run}")
    # filling memory at 64 MB's CPU share (0.072 vCPU, docs/sandbox.md) takes seconds: its own timeout
    hog = f"obshog-{run}"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(deploy, ok, {"app.py": APP}, timeout_s=1, memory_mb=64, webhook_url=hook + "/build"),
                pool.submit(deploy, rl, {"app.py": APP}, rate_limit={"rps": 0.1, "burst": 2}),
                # the handler module is missing: a failed build; its webhook_url refuses connections
                pool.submit(deploy, nohandler, {"app.py": APP}, handler="nope.handler",
                            webhook_url=f"http://127.0.0.1:{CLOSED_PORT}/hook"),
                # a path traversal: the extractor rejects the package
                pool.submit(deploy, evil, {"../evil.py": APP}),
                pool.submit(deploy, hog, {"app.py": APP}, timeout_s=60, memory_mb=64)]
        states = [j.result() for j in jobs]
    S.check("builds: a good function active, a missing handler and a traversal ZIP failed",
            [s.get("state") for s in states] == ["active", "active", "failed", "failed", "active"], states)
    st, _, body = gw("PATCH", f"/functions/{ok}", {"on_success_url": hook + "/ok", "on_failure_url": hook + "/fail",
                                                   "max_retries": 1})
    S.check("PATCH destinations and max_retries through the gateway", st == 200, (st, body[:200]))
    codes = {}
    for label, event in (("ok", {}), ("ok", {}), ("ok", {}), ("raise", {"action": "raise"}),
                         ("timeout", {"action": "sleep", "s": 3}), ("oom", {"action": "oom"}),
                         ("big", {"action": "big"})):
        st, _, _ = gw("POST", f"/functions/{hog if label == 'oom' else ok}/invoke", event)
        codes.setdefault(label, []).append(st)
    st, _, _ = gw("POST", f"/2015-03-31/functions/{ok}/invocations", {})
    codes["aws"] = [st]
    st, _, _ = gw("POST", f"/functions/{ok}/invoke", auth=False)
    codes["no token"] = [st]
    codes["rate limited"] = [gw("POST", f"/functions/{rl}/invoke", {})[0] for _ in range(4)]
    S.check("sync invokes: 200s, a handler error 502, a timeout 504, an OOM 502, a too-large response 502, "
            "AWS API 200, no token 401, a 429",
            codes["ok"] == [200] * 3 and codes["raise"] == [502] and codes["timeout"] == [504]
            and codes["oom"] == [502] and codes["big"] == [502] and codes["aws"] == [200]
            and codes["no token"] == [401] and 429 in codes["rate limited"], codes)
    events = [gw("POST", f"/functions/{ok}/invoke", ev, {"X-Invocation-Type": "Event"}) for ev in ({}, {"action": "raise"})]
    ids = [json.loads(b).get("invocation_id") if st == 202 else None for st, _, b in events]
    S.check("async invokes accepted (202)", all(ids), [e[0] for e in events])
    final, end = {}, time.time() + 30
    while time.time() < end and len(final) < 2:
        for i in ids:
            st, _, body = gw("GET", f"/invocations/{i}")
            if st == 200 and json.loads(body)["status"] in ("succeeded", "dead_lettered"):
                final[i] = json.loads(body)["status"]
        time.sleep(0.2)
    S.check("async: one succeeded, the failing one dead-lettered after its retry",
            [final.get(i) for i in ids] == ["succeeded", "dead_lettered"], final)
    end = time.time() + 15
    while time.time() < end and not all(Receiver.hits.get(p) for p in ("/build", "/ok", "/fail")):
        time.sleep(0.2)
    S.check("webhooks and destinations delivered (build, on_success, on_failure)",
            all(Receiver.hits.get(p) for p in ("/build", "/ok", "/fail")), Receiver.hits)
    # the refused user webhook runs out of retries (200, 200, 500, 1000 ms)
    end = time.time() + 15
    while time.time() < end:
        _, _, body = call("GET", S.url("build-worker") + "/metrics")
        if re.search(rb'minilambda_webhook_deliveries_total\{target="user",result="failed"\}', body):
            break
        time.sleep(0.3)


# ---------------------------------------------------------------- against Prometheus

def wait_scrapes(after, n=3):
    """Waits until every target was scraped n times after `after` (1 s interval): rate() then
    has two samples of a series that first appeared in the last scrape of the traffic."""
    end = time.time() + 20
    while time.time() < end:
        data, _ = prom("/api/v1/targets")
        active = data["activeTargets"] if data else []
        last = [t.get("lastScrape", "") for t in active]
        if active and all(ts and parse_ts(ts) > after + n for ts in last):
            return active
        time.sleep(0.3)
    return prom("/api/v1/targets")[0]["activeTargets"]


def parse_ts(ts):
    # RFC 3339 with nanoseconds and a zone: keep seconds precision (enough here)
    from datetime import datetime
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", ts.replace("Z", "+00:00"))).timestamp()


def check_targets(active):
    jobs = {t["labels"]["job"]: t["health"] for t in active}
    want = {j: "up" for j in (*DAEMONS, "rabbitmq", "prometheus")}
    S.check("observe.sh's config scrapes the four daemons, RabbitMQ and itself, all up", jobs == want, jobs)


class MetricCatalog:
    def __init__(self):
        meta, _ = prom("/api/v1/metadata")
        self.families = set(meta or {})
        self.cache = {}

    def known(self, name):
        if name in SYNTHETIC or name in self.families:
            return True
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        return base != name and base in self.families

    def has_series(self, name):
        if name not in self.cache:
            res, _ = query(f'count({{__name__="{name}"}})')
            self.cache[name] = bool(res)
        return self.cache[name]


def check_expr(label, expr, catalog):
    """ok when the expression returns series and names only metrics that exist and have series."""
    names = metric_names(expr)
    unknown = sorted(n for n in names if not catalog.known(n))
    empty = sorted(n for n in names if n not in SYNTHETIC and catalog.known(n) and not catalog.has_series(n))
    res, err = query(expr)
    detail = {"expr": expr, "error": err, "unknown metrics": unknown, "metrics without series": empty}
    return S.check(f"{label}: {len(res or [])} series", res and not unknown and not empty and names,
                   {k: v for k, v in detail.items() if v})


def check_dashboards(dashboards, catalog):
    for name, d in dashboards.items():
        for v in d["templating"]["list"]:
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            data, err = prom(f"/api/v1/label/{m.group(2)}/values", **{"match[]": substitute(m.group(1))}) if m else (None, q)
            S.check(f"{name} variable ${v['name']}: {len(data or [])} values", data, err)
        for p in panels_of(d):
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "prometheus":
                    continue
                check_expr(f"{name} / {p['title']} [{t['refId']}]", substitute(t["expr"]), catalog)


def note_unused(dashboards, catalog):
    """Notes the daemons' metric families no dashboard or alert uses (not a failure)."""
    used = set()
    for d in dashboards.values():
        for p in panels_of(d):
            for t in p.get("targets", []):
                used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in metric_names(t["expr"])}
    data, _ = prom("/api/v1/rules")
    for g in (data or {}).get("groups", []):
        for r in g["rules"]:
            used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in metric_names(r["query"])}
    unused = sorted(f for f in catalog.families if f.startswith("minilambda_") and f not in used)
    print(f"# minilambda metrics on no dashboard and in no alert: {', '.join(unused) or 'none'}", flush=True)


def check_rules(catalog):
    data, err = prom("/api/v1/rules")
    rules = [r for g in (data or {}).get("groups", []) for r in g["rules"]]
    with open(os.path.join(OBS, "prometheus/alerts.yml")) as f:
        declared = sum(len(g["rules"]) for g in yaml.safe_load(f)["groups"])
    S.check(f"Prometheus loaded all {declared} rules of alerts.yml", len(rules) == declared, (len(rules), err))
    for r in rules:
        bare = strip_threshold(r["query"])
        S.check(f"alert {r['name']}: evaluates without error", r.get("health") == "ok" and not r.get("lastError"),
                r.get("lastError"))
        if S.check(f"alert {r['name']}: ends in a threshold comparison (or is absent())", bare != r["query"].strip(),
                   r["query"]):
            check_expr(f"alert {r['name']} without its threshold", bare, catalog)


def check_endpoints():
    for d in DAEMONS:
        _, _, body = call("GET", S.url(d) + "/metrics")
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        S.check(f"promtool check metrics: {d} /metrics", r.returncode == 0 and body, r.stdout + r.stderr)


# ---------------------------------------------------------------- main

def observe(cmd):
    env = dict(os.environ, ML_PLATFORM_DIR=S.logs, ML_PROMETHEUS_PORT=str(PROM_PORT), ML_SCRAPE_INTERVAL="1s",
               **{var: str(PORTS[d]) for d, var in (("gateway", "MINILAMBDA_GATEWAY_PORT"),
                                                    ("lambda-executor", "MINILAMBDA_EXECUTOR_PORT"),
                                                    ("build-master", "MINILAMBDA_BUILD_MASTER_PORT"),
                                                    ("build-worker", "MINILAMBDA_BUILD_WORKER_PORT"))})
    return subprocess.run(["bash", os.path.join(ROOT, "infrastructure/dev/observe.sh"), cmd], env=env,
                          capture_output=True, text=True)


def main():
    t0 = time.time()
    run = uuid.uuid4().hex[:8]
    dashboards = load_dashboards()
    static_checks(dashboards)
    check_log_panels(dashboards)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    S.token = subprocess.run([os.path.join(BIN, "gateway"), "token", "--sub", "obs"], capture_output=True,
                             text=True, env=dict(os.environ, MINILAMBDA_JWT_SECRET=JWT_SECRET)).stdout.strip()
    try:
        # Prometheus first: its first scrape lands ~5 s after it starts, meanwhile the daemons start
        shutil.rmtree(os.path.join(S.logs, "prometheus"), ignore_errors=True)  # no series from earlier runs
        r = observe("start")
        if not S.check("observe.sh start: Prometheus ready, URL printed", r.returncode == 0 and PROM in r.stdout,
                       r.stdout + r.stderr):
            return
        for name in ("lambda-executor", "build-master", "build-worker", "gateway"):
            S.start(name)
        traffic(run)
        print(f"# traffic done after {time.time() - t0:.1f} s", flush=True)
        check_targets(wait_scrapes(time.time()))
        check_endpoints()
        catalog = MetricCatalog()
        check_dashboards(dashboards, catalog)
        check_rules(catalog)
        note_unused(dashboards, catalog)
    finally:
        r = observe("stop")
        S.check("observe.sh stop", r.returncode == 0 and not os.path.exists(
            os.path.join(S.logs, "prometheus", "prometheus.pid")), r.stdout + r.stderr)
        S.stop_all()
        srv.shutdown()
        print(f"# took {time.time() - t0:.1f} s", flush=True)
    sys.exit(1 if S.failures else 0)


if __name__ == "__main__":
    main()
