"""Writes the four Grafana dashboards (observability/grafana/dashboards/*.json) from the panel
lists below: the JSON files are what Grafana provisions; this file is their source.

    /usr/bin/python3 observability/grafana/dashboards.py          rewrite the JSON files
    /usr/bin/python3 observability/grafana/dashboards.py --check  exit 1 if they are stale

Grafana 10 dashboard JSON (schemaVersion 38): datasources referenced by uid ("prometheus",
"loki", provisioned by provisioning/datasources/datasources.yml), id null, a fixed uid per
dashboard. Template variables: $service (the daemons), $function, $level and $search for the
log panels. tests/integration/observability_e2e.py runs every query here against a real
Prometheus fed by the real daemons.
"""
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dashboards")
PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
DAEMONS = "gateway|lambda-executor|build-master|build-worker"
NOT_PROBES = 'route!~"/health|/metrics"'
RI = "$__rate_interval"
ACCESS_LOG = '{service="gateway", type="access"}'


# ---------------------------------------------------------------- panels

class Layout:
    """Places panels left to right on a 24-column grid, wrapping to the next line."""

    def __init__(self):
        self.x = self.y = self.line_h = 0
        self.next_id = 1
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.line_h = 0, self.y + self.line_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.line_h = max(self.line_h, h)
        self.panels.append(panel)

    def row(self, title):
        if self.x:
            self.x, self.y, self.line_h = 0, self.y + self.line_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.line_h = 0, self.y + 1, 0


def target(ref, expr, legend="", instant=False):
    t = {"refId": ref, "datasource": PROM, "editorMode": "code", "expr": expr,
         "legendFormat": legend or "__auto", "range": not instant}
    if instant:
        t["instant"] = True  # one frame per series: a stat panel shows one value per series
    return t


def targets(queries, instant=False):
    """queries: [(expr, legend)] -> Grafana targets A, B, C..."""
    return [target(chr(ord("A") + i), e, l, instant) for i, (e, l) in enumerate(queries)]


def timeseries(title, desc, queries, unit="short", stack=False, minimum=None):
    defaults = {"unit": unit, "color": {"mode": "palette-classic"},
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                           "spanNulls": False, "axisSoftMin": 0 if minimum is None else minimum,
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
    return {"type": "timeseries", "title": title, "description": desc, "datasource": PROM,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": targets(queries)}


def stat(title, desc, queries, unit="short", mappings=None, thresholds=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {"type": "stat", "title": title, "description": desc, "datasource": PROM,
            "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                         "color": {"mode": "thresholds"},
                                         "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                        "justifyMode": "auto", "orientation": "auto"},
            "targets": targets(queries, instant=True)}


UP_MAPPINGS = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                             "1": {"text": "UP", "color": "green", "index": 1}}}]
RED_ABOVE_0 = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def logs(title, desc, expr):
    return {"type": "logs", "title": title, "description": desc, "datasource": LOKI,
            "options": {"showTime": True, "showLabels": False, "showCommonLabels": False,
                        "wrapLogMessage": True, "prettifyLogMessage": False, "enableLogDetails": True,
                        "dedupStrategy": "none", "sortOrder": "Descending"},
            "targets": [{"refId": "A", "datasource": LOKI, "editorMode": "code", "expr": expr,
                         "queryType": "range"}]}


def quantiles(metric, by, selector, qs=(0.5, 0.95, 0.99)):
    """histogram_quantile for each q, grouped by `by` (a label list, may be empty)."""
    group = f"{by}, le" if by else "le"
    legend = " ".join("{{%s}}" % b.strip() for b in by.split(",")) if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RI}])))",
             f"{legend} p{int(q * 100)}".strip()) for q in qs]


def ratio(metric, bad, by, selector=""):
    """bad / all per group, 0 (not absent) while nothing is bad."""
    sel = f"{selector}, {bad}" if selector else bad
    total = f"sum by ({by}) (rate({metric}{{{selector}}}[{RI}]))"
    return f"(sum by ({by}) (rate({metric}{{{sel}}}[{RI}])) or {total} * 0) / {total}"


# ---------------------------------------------------------------- variables

def query_var(name, label, query, all_value=None):
    return {"name": name, "label": label, "type": "query", "datasource": PROM, "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": all_value, "sort": 1,
            "regex": "", "hide": 0, "options": [],
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


SERVICE_VAR = query_var("service", "Service", f'label_values(up{{job=~"{DAEMONS}"}}, job)')
LEVEL_VAR = {"name": "level", "label": "Log level", "type": "custom", "query": "debug,info,warn,error",
             "includeAll": True, "multi": True, "allValue": None, "hide": 0,
             "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
             "options": [{"selected": v == "All", "text": v, "value": "$__all" if v == "All" else v}
                         for v in ("All", "debug", "info", "warn", "error")]}
SEARCH_VAR = {"name": "search", "label": "Log search (e.g. a request_id)", "type": "textbox", "query": "",
              "hide": 0, "current": {"selected": False, "text": "", "value": ""}, "options": []}


def dashboard(uid, title, desc, layout, variables):
    return {"id": None, "uid": uid, "title": title, "description": desc, "tags": ["minilambda"],
            "timezone": "browser", "editable": True, "graphTooltip": 1, "schemaVersion": 38,
            "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
            "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
            "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                      "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                      "name": "Annotations & Alerts", "type": "dashboard"}]},
            "links": [{"title": "minilambda", "type": "dashboards", "tags": ["minilambda"], "asDropdown": True,
                       "includeVars": False, "keepTime": True, "icon": "external link", "targetBlank": False,
                       "tooltip": "", "url": ""}],
            "templating": {"list": variables}, "panels": layout.panels}


# ---------------------------------------------------------------- the dashboards

def system_overview():
    L = Layout()
    d = f'job=~"$service"'
    L.row("Services")
    L.add(stat("Daemons", "1 when Prometheus' last scrape of the daemon succeeded.",
               [(f"up{{{d}}}", "{{job}} {{instance}}")], mappings=UP_MAPPINGS,
               thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]), 10, 5)
    L.add(stat("Backing services", "RabbitMQ (its prometheus plugin), Redis and Postgres (exporters), "
               "and Prometheus itself.",
               [('up{job=~"rabbitmq|redis|postgres|prometheus"}', "{{job}}")], mappings=UP_MAPPINGS,
               thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]), 6, 5)
    L.add(stat("Alerts firing", "Alerts from observability/prometheus/alerts.yml firing now.",
               [('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")], thresholds=RED_ABOVE_0), 4, 5)
    L.add(stat("Uptime", "Time since each daemon process started.",
               [(f"time() - process_start_time_seconds{{{d}}}", "{{job}}")], unit="s"), 4, 5)
    L.row("Resources per daemon")
    L.add(timeseries("CPU", "CPU seconds per second (1 = one core busy).",
                     [(f"rate(process_cpu_seconds_total{{{d}}}[{RI}])", "{{job}} {{instance}}")],
                     unit="percentunit"), 12, 8)
    L.add(timeseries("Resident memory", "RSS of each daemon process.",
                     [(f"process_resident_memory_bytes{{{d}}}", "{{job}} {{instance}}")], unit="bytes"), 12, 8)
    L.add(timeseries("Open file descriptors", "Sockets, files and pipes held.",
                     [(f"process_open_fds{{{d}}}", "{{job}} {{instance}}")]), 8, 8)
    L.add(timeseries("File descriptor usage", "Open fds over the limit (alert at 80%).",
                     [(f"process_open_fds{{{d}}} / process_max_fds{{{d}}}", "{{job}} {{instance}}")],
                     unit="percentunit"), 8, 8)
    L.add(timeseries("Threads", "OS threads: HTTP loop and workers, consumers, dispatchers.",
                     [(f"process_threads{{{d}}}", "{{job}} {{instance}}")]), 8, 8)
    L.add(timeseries("Virtual memory", "Address space (malloc arenas and thread stacks show here first).",
                     [(f"process_virtual_memory_bytes{{{d}}}", "{{job}} {{instance}}")], unit="bytes"), 8, 8)
    L.add(timeseries("HTTP requests in flight", "Requests being processed by each daemon's HTTP server.",
                     [('sum by (service) (minilambda_http_requests_in_flight{service=~"$service"})',
                       "{{service}}")]), 8, 8)
    L.add(timeseries("Restarts", "Process starts seen in the last hour (a crash loop shows here).",
                     [(f"changes(process_start_time_seconds{{{d}}}[1h])", "{{job}} {{instance}}")]), 8, 8)
    L.row("Broker")
    L.add(timeseries("RabbitMQ connections and channels", "AMQP connections and channels open on the broker.",
                     [("sum(rabbitmq_connections)", "connections"), ("sum(rabbitmq_channels)", "channels")]), 8, 8)
    L.add(timeseries("RabbitMQ messages", "Ready and unacknowledged messages over all queues.",
                     [("sum(rabbitmq_queue_messages_ready)", "ready"),
                      ("sum(rabbitmq_queue_messages_unacked)", "unacked")]), 8, 8)
    L.add(timeseries("RabbitMQ memory", "Broker RSS against its high watermark.",
                     [("sum(rabbitmq_process_resident_memory_bytes)", "resident"),
                      ("sum(rabbitmq_resident_memory_limit_bytes)", "watermark")], unit="bytes"), 8, 8)
    L.row("Logs")
    L.add(logs("Logs", "JSON lines of the selected daemons, shipped by promtail.",
               '{service=~"$service", level=~"$level"} |= "$search"'), 24, 10)
    return dashboard("minilambda-system", "minilambda / System overview",
                     "Is every daemon up, and what does it use.", L, [SERVICE_VAR, LEVEL_VAR, SEARCH_VAR])


def request_traffic():
    L = Layout()
    s = f'service=~"$service", route=~"$route", {NOT_PROBES}'
    http = "minilambda_http_requests_total"
    L.row("HTTP, every daemon")
    L.add(timeseries("Requests per second", "Per daemon, without /health and /metrics.",
                     [(f"sum by (service) (rate({http}{{{s}}}[{RI}]))", "{{service}}")], unit="reqps"), 8, 8)
    L.add(timeseries("Responses by status", "Per daemon and status code.",
                     [(f"sum by (service, code) (rate({http}{{{s}}}[{RI}]))", "{{service}} {{code}}")],
                     unit="reqps", stack=True), 8, 8)
    L.add(timeseries("Error ratio", "5xx and 4xx responses over all responses. Invoke routes include "
                     "function errors (502) and timeouts (504).",
                     [(ratio(http, 'code=~"5.."', "service", s), "{{service}} 5xx"),
                      (ratio(http, 'code=~"4.."', "service", s), "{{service}} 4xx")], unit="percentunit"), 8, 8)
    L.add(timeseries("Latency per daemon", "p50, p95, p99 from first byte to response queued.",
                     quantiles("minilambda_http_request_duration_seconds", "service", s), unit="s"), 12, 9)
    L.add(timeseries("p99 latency per route", "Invoke routes include the function's run time.",
                     quantiles("minilambda_http_request_duration_seconds", "service, route", s, (0.99,)),
                     unit="s"), 12, 9)
    L.add(timeseries("Requests per route", "Per daemon, method and route template.",
                     [(f"sum by (service, method, route) (rate({http}{{{s}}}[{RI}]))",
                       "{{service}} {{method}} {{route}}")], unit="reqps"), 12, 8)
    L.add(timeseries("In flight", "Requests being processed.",
                     [('sum by (service) (minilambda_http_requests_in_flight{service=~"$service"})',
                       "{{service}}")]), 12, 8)
    L.row("Gateway")
    rl = "minilambda_gateway_ratelimit_decisions_total"
    L.add(timeseries("Rate-limit rejections", "429s by function (limit=function) and build submissions "
                     "(limit=build, per token subject).",
                     [(f'sum by (limit, function) (rate({rl}{{decision="throttled"}}[{RI}]))',
                       "{{limit}} {{function}}")], unit="reqps"), 8, 8)
    L.add(timeseries("Rate-limit decisions", "Allowed and throttled, per limit kind.",
                     [(f"sum by (limit, decision) (rate({rl}[{RI}]))", "{{limit}} {{decision}}")],
                     unit="reqps", stack=True), 8, 8)
    L.add(timeseries("Authentication failures", "401/403 by reason (missing, malformed, expired, scope...).",
                     [(f"sum by (reason) (rate(minilambda_gateway_auth_failures_total[{RI}]))", "{{reason}}")],
                     unit="reqps"), 8, 8)
    L.add(timeseries("Upstream latency", "Gateway to build-master / lambda-executor, per upstream service.",
                     quantiles("minilambda_gateway_upstream_duration_seconds", "service", "", (0.5, 0.99)),
                     unit="s"), 8, 8)
    L.add(timeseries("Proxy errors", "Upstream exchanges that failed: connect, timeout, too_large, transport, "
                     "no_upstream.",
                     [(f"sum by (service, kind) (rate(minilambda_gateway_proxy_errors_total[{RI}]))",
                       "{{service}} {{kind}}")], unit="reqps"), 8, 8)
    L.add(timeseries("Function config lookups", "Where the gateway found a function's timeout and rate "
                     "limit (cached, fetched, stale, default).",
                     [(f"sum by (source) (rate(minilambda_gateway_function_lookups_total[{RI}]))", "{{source}}")],
                     unit="reqps", stack=True), 8, 8)
    L.add(stat("Upstream instances healthy", "Active health checks (GET /health) per upstream instance.",
               [("minilambda_gateway_upstream_healthy", "{{service}} {{exported_instance}}")],
               mappings=UP_MAPPINGS, thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]),
          10, 5)
    L.add(stat("Circuit breakers", "0 closed, 1 half-open, 2 open.",
               [("minilambda_gateway_upstream_breaker_state", "{{service}} {{exported_instance}}")],
               mappings=[{"type": "value", "options": {"0": {"text": "closed", "index": 0},
                                                      "1": {"text": "half-open", "index": 1},
                                                      "2": {"text": "open", "index": 2}}}],
               thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1},
                           {"color": "red", "value": 2}]), 10, 5)
    L.add(stat("Rate limits in memory", "1 while Redis is unreachable and limits are per gateway instance.",
               [("max(minilambda_gateway_ratelimit_fallback)", "fallback")], thresholds=RED_ABOVE_0), 4, 5)
    L.add(timeseries("Access log", "Lines written per second, and lines dropped (the writer fell behind or "
                     "the output failed; docs/logs.md §2).",
                     [(f"sum(rate(minilambda_access_log_lines_total[{RI}]))", "written"),
                      (f"sum(rate(minilambda_access_log_dropped_total[{RI}]))", "dropped")], unit="reqps"), 8, 8)
    L.add(logs("Refused requests (access log)", "Every 401/403 with its auth_error, subject and client.",
               '{service="gateway", type="access", auth="refused"} | json'), 16, 8)
    L.row("Logs")
    L.add(logs("Logs", "Paste a request_id (every error body carries one) into 'Log search' to follow a request "
               "across daemons.", '{service=~"$service", level=~"$level"} |= "$search"'), 24, 10)
    route_var = query_var("route", "Route", 'label_values(minilambda_http_requests_total{service=~"$service"}, route)')
    return dashboard("minilambda-requests", "minilambda / Request traffic",
                     "Rates, errors and latency per daemon and route; the gateway's limits and upstreams.",
                     L, [SERVICE_VAR, route_var, LEVEL_VAR, SEARCH_VAR])


def builds():
    L = Layout()
    bw = 'job="build-worker"'
    L.row("Queue")
    # queue gauges are broker-wide, the same from every replica: max, not sum
    L.add(timeseries("Build queue depth", "Ready messages in the build queue and its dead-letter queue.",
                     [('max by (queue) (minilambda_queue_messages{job="build-master"})', "{{queue}}")]), 8, 8)
    L.add(timeseries("Build queue consumers", "build-worker consumers attached to the queues.",
                     [('max by (queue) (minilambda_queue_consumers{job="build-master"})', "{{queue}}")]), 8, 8)
    L.add(stat("build-workers up", "Replicas answering scrapes.",
               [('count(up{job="build-worker"} == 1) or vector(0)', "up")],
               thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]), 8, 8)
    L.row("Builds")
    L.add(timeseries("Submissions per minute", "POST /functions and PUT code at build-master, by result "
                     "(accepted, conflict, *_unavailable).",
                     [(f"sum by (result) (rate(minilambda_builds_submitted_total[{RI}])) * 60", "{{result}}")],
                     unit="short"), 8, 8)
    L.add(timeseries("Builds per minute by status", "Finished builds: completed or failed.",
                     [(f"sum by (status) (rate(minilambda_builds_total[{RI}])) * 60", "{{status}}")],
                     stack=True), 8, 8)
    L.add(timeseries("Build duration", "Claim to completed/failed.",
                     quantiles("minilambda_build_duration_seconds", "", 'result="done"'), unit="s"), 8, 8)
    L.add(timeseries("Packages rejected", "Builds failed because of the package, by reason.",
                     [(f"sum by (reason) (increase(minilambda_build_rejections_total[{RI}]))", "{{reason}}")]),
          12, 8)
    L.add(timeseries("Hostile or invalid ZIPs", "The extractor's refusals by reason.",
                     [(f"sum by (reason) (increase(minilambda_extract_rejections_total[{RI}]))", "{{reason}}")]),
          12, 8)
    L.row("Build-status webhooks")
    L.add(timeseries("Deliveries by outcome", "Attempts by target (lambda: the executor; user: the function's "
                     "webhook_url) and result (delivered, retry, failed, blocked).",
                     [(f"sum by (target, result) (rate(minilambda_webhook_deliveries_total{{{bw}}}[{RI}]))",
                       "{{target}} {{result}}")], unit="reqps"), 8, 8)
    L.add(timeseries("Deliveries pending", "Outbox rows not yet delivered or given up.",
                     [(f"sum by (target) (minilambda_webhook_outbox_pending{{{bw}}})", "{{target}}")]), 8, 8)
    L.add(timeseries("Attempt duration p95", "HTTP time of one delivery attempt.",
                     quantiles("minilambda_webhook_attempt_duration_seconds", "target", bw, (0.95,)), unit="s"),
          8, 8)
    L.add(timeseries("Received by the executor", "Build-status webhooks at lambda-executor, by build status and "
                     "result (applied, duplicate, stale, rejected...).",
                     [(f"sum by (status, result) (rate(minilambda_build_webhooks_received_total[{RI}]))",
                       "{{status}} {{result}}")], unit="reqps"), 24, 8)
    L.row("Logs")
    L.add(logs("Logs", "build-master and build-worker.",
               '{service=~"build-master|build-worker", level=~"$level"} |= "$search"'), 24, 10)
    return dashboard("minilambda-builds", "minilambda / Builds",
                     "Build queue, throughput, duration, rejections and build-status webhooks.", L,
                     [LEVEL_VAR, SEARCH_VAR])


def functions():
    L = Layout()
    f = 'function=~"$function"'
    inv = "minilambda_invocations_total"
    L.row("Invocations")
    L.add(timeseries("Invocations by function and status", "succeeded, failed, timed_out.",
                     [(f"sum by (function, status) (rate({inv}{{{f}}}[{RI}]))", "{{function}} {{status}}")],
                     unit="reqps", stack=True), 12, 8)
    L.add(timeseries("Invocations by trigger", "http_sync, http_async, cron, dlq_replay.",
                     [(f"sum by (trigger) (rate({inv}{{{f}}}[{RI}]))", "{{trigger}}")], unit="reqps", stack=True),
          12, 8)
    L.add(timeseries("Error ratio", "Failed and timed-out invocations over all.",
                     [(ratio(inv, 'status!="succeeded"', "function", f), "{{function}}")], unit="percentunit"),
          8, 8)
    L.add(timeseries("Duration", "Handler run time per invocation.",
                     quantiles("minilambda_invocation_duration_seconds", "function", f), unit="s"), 16, 8)
    L.row("Sandboxes")
    starts = "minilambda_invocation_starts_total"
    L.add(timeseries("Cold-start ratio", "Invocations that started a new sandbox.",
                     [(ratio(starts, 'kind="cold"', "function", f), "{{function}}")], unit="percentunit"), 8, 8)
    L.add(timeseries("Cold-start duration", "Sandbox start and handler load, per runtime.",
                     quantiles("minilambda_cold_start_duration_seconds", "runtime", "", (0.5, 0.95)), unit="s"),
          8, 8)
    L.add(timeseries("Pool size", "Sandbox instances by state (idle instances are reused warm).",
                     [(f"sum by (function, state) (minilambda_pool_instances{{{f}}})", "{{function}} {{state}}")],
                     stack=True), 8, 8)
    L.add(timeseries("Timeouts and OOM kills", "Sandboxes killed, by reason (timeout, memory, pids, crash).",
                     [(f"sum by (function, reason) (increase(minilambda_sandbox_kills_total{{{f}}}[{RI}]))",
                       "{{function}} {{reason}}")]), 12, 8)
    L.add(timeseries("Function lookups", "Where the executor found a function (local, redis, postgres, stale...).",
                     [(f"sum by (source) (rate(minilambda_registry_lookups_total[{RI}]))", "{{source}}")],
                     unit="reqps", stack=True), 12, 8)
    L.row("Async, DLQ and schedules")
    L.add(timeseries("Async queues", "Ready messages: invocations, retry (delay) queues, dead letters.",
                     [('max by (queue) (minilambda_queue_messages{job="lambda-executor"})', "{{queue}}")]), 8, 8)
    L.add(timeseries("Async consumers", "Consumers attached to each queue.",
                     [('max by (queue) (minilambda_queue_consumers{job="lambda-executor"})', "{{queue}}")]), 8, 8)
    L.add(stat("Dead-letter queue", "Entries not yet replayed or deleted (GET /dlq).",
               [("max(minilambda_dlq_messages)", "DLQ")], thresholds=RED_ABOVE_0), 8, 8)
    L.add(timeseries("Destinations", "on_success / on_failure deliveries by result.",
                     [(f'sum by (target, result) (rate(minilambda_webhook_deliveries_total{{job="lambda-executor"}}'
                       f"[{RI}]))", "{{target}} {{result}}"),
                      ('sum by (target) (minilambda_webhook_outbox_pending{job="lambda-executor"})',
                       "{{target}} pending")]), 8, 8)
    L.add(timeseries("Schedule fires", "Due cron fires: fired, skipped (function not active), failed.",
                     [(f"sum by (result) (increase(minilambda_schedule_fires_total[{RI}]))", "{{result}}")]), 8, 8)
    L.add(timeseries("Audit", "Rows written per second, rows not yet in Postgres, spill file size.",
                     [(f"sum(rate(minilambda_audit_rows_written_total[{RI}]))", "written/s"),
                      ("sum(minilambda_audit_backlog)", "backlog"),
                      ("sum(minilambda_audit_spill_bytes)", "spill bytes")]), 8, 8)
    L.row("Logs")
    L.add(logs("Function logs", "What the functions wrote (stdout, stderr) and the START/END/REPORT lines, "
               "pushed to Loki by the executor; an invocation's request_id in 'Log search'. Without Loki: "
               "GET /functions/{fn}/logs.", '{service="function", function=~"$function"} |= "$search"'), 24, 10)
    L.add(logs("Gateway access log", "One line per request to these functions: who, allowed or refused (and "
               "why), status, bytes, duration, rate-limit decision.",
               ACCESS_LOG + ' |= "$search" | json | function=~"$function"'), 24, 8)
    L.add(logs("Logs", "lambda-executor; a function's id or name, or an invocation's request_id, in 'Log search'.",
               '{service="lambda-executor", level=~"$level"} |= "$search"'), 24, 10)
    fn_var = query_var("function", "Function", "label_values(minilambda_invocations_total, function)")
    return dashboard("minilambda-functions", "minilambda / Functions",
                     "Invocations, duration, cold starts, sandboxes, async queues and the DLQ.", L,
                     [fn_var, LEVEL_VAR, SEARCH_VAR])


DASHBOARDS = {"system-overview": system_overview, "request-traffic": request_traffic, "builds": builds,
              "functions": functions}


def render(fn):
    return json.dumps(fn(), indent=2) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    os.makedirs(OUT, exist_ok=True)
    for name, fn in DASHBOARDS.items():
        path = os.path.join(OUT, name + ".json")
        text = render(fn)
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not check:
                with open(path, "w") as f:
                    f.write(text)
    if check and stale:
        print("stale (run /usr/bin/python3 observability/grafana/dashboards.py): " + " ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
