"""Per-function network with an egress policy (issue 16 item 3, docs/network.md).

Every target is a server this test places itself, in network namespaces it creates:
  GW   the NAT's upstream (MINILAMBDA_NETWORK_UPSTREAM_NETNS): slirp4netns sends from here.
       Its only link is a veth to NET and its default route points there; its loopback holds
       stand-ins on the platform's ports (what slirp's "host loopback" 10.0.2.2 would reach).
  NET  the "internet": 203.0.113.10 (public HTTP), 203.0.113.53 (DNS answering public.test),
       10.1.2.3 and 10.1.2.4 (internal services), 172.16.0.5, 192.168.1.1, 100.64.0.1 and
       169.254.169.254 (metadata), each answering on TCP.
Neither namespace has any other interface, so no packet of this test can leave the machine
even if the policy were broken. The executor runs on the host with the stack's real services
on 127.0.0.1 (the functions try those ports too). Checks: a network function reaches the
public stand-in and resolves through the DNS stand-in; it is refused everywhere else unless
the allow-list (10.1.2.3:8080) names it, exactly; it cannot change the policy; a function
without network has no route at all; network:true is refused while the platform switch is
off; no slirp4netns outlives an executor killed with SIGKILL. Prints "ok - ..." / "not ok - ..." per check, or "# skip: ..." when it cannot run."""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.parse, uuid

from mlstack import Suite, call

TAG = uuid.uuid4().hex[:6]
GW, NET = f"mlgw{TAG}", f"mlnet{TAG}"
BASE = int(os.environ.get("ML_PORT_BASE", "30000")) + 1800  # clear of the stack's own ports
PUBLIC, DNS = "203.0.113.10", "203.0.113.53"
PRIVATE = ["10.1.2.3", "10.1.2.4", "172.16.0.5", "192.168.1.1", "100.64.0.1", "169.254.169.254"]
ALLOW = "10.1.2.3:8080"
S = Suite("test-network", {"build-master": BASE + 2, "build-worker": BASE + 3, "lambda-executor": BASE + 1,
                           "executor-off": BASE + 4},
          {"MINILAMBDA_NETWORK_UPSTREAM_NETNS": f"/run/netns/{GW}",
           "MINILAMBDA_NETWORK_DNS": DNS, "MINILAMBDA_NETWORK_ALLOW": ALLOW, "MINILAMBDA_NETWORK_POOL": "2"})
EXEC = S.url("lambda-executor")

# Stand-in servers: "hello ADDR:PORT" on every TCP (addr, port) given; a DNS server on DNS:53
# answering A public.test -> PUBLIC and NXDOMAIN for anything else.
SERVER = r'''
import socket, struct, sys, threading
def tcp(a, p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((a, p)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(f"hello {a}:{p}\n".encode()); c.close()
def dns(a, answer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((a, 53))
    while True:
        q, peer = s.recvfrom(512)
        i = 12; labels = []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
        qd = q[12:i + 5]; name = ".".join(labels).lower(); qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        if name == "public.test" and qtype == 1:
            r = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0) + qd
            r += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(answer)
        else:
            rc = 3 if name != "public.test" else 0
            r = q[:2] + bytes([0x81, 0x80 | rc]) + struct.pack(">HHHH", 1, 0, 0, 0) + qd
        s.sendto(r, peer)
args = sys.argv[1:]
if args[0] == "dns":
    threading.Thread(target=dns, args=(args[1], args[2]), daemon=True).start(); args = args[3:]
for t in args:
    a, p = t.rsplit(":", 1); threading.Thread(target=tcp, args=(a, int(p)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''

# The function: connects to each target (2 s), returns what it read or the error; resolves a
# name; tries to change the policy; lists its routes.
APP = r'''
import errno, os, socket, subprocess
def probe(h, p):
    try:
        with socket.create_connection((h, p), timeout=2) as s:
            return "ok:" + s.recv(100).decode().strip()
    except OSError as e:
        return "err:" + (errno.errorcode.get(e.errno, "") if e.errno else type(e).__name__)
def handler(event, context):
    out = {"probe": {f"{h}:{p}": probe(h, p) for h, p in event.get("targets", [])}}
    if event.get("resolve"):
        try:
            ip = socket.gethostbyname(event["resolve"]); out["resolved"] = ip; out["via_name"] = probe(ip, 80)
        except OSError as e:
            out["resolved"] = "err:" + str(e)
    if event.get("tamper"):
        for cmd in (["/usr/sbin/nft", "flush", "ruleset"], ["/usr/sbin/ip", "link", "set", "tap0", "down"]):
            try:
                out.setdefault("tamper", []).append(subprocess.run(cmd, capture_output=True).returncode)
            except OSError as e:
                out.setdefault("tamper", []).append("err:" + str(e))
    with open("/proc/net/route") as f:
        out["routes"] = len(f.read().splitlines()) - 1
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())
    return out
'''


def sh(*cmd, check=True):
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check)


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "slirp4netns", "nft", "unshare"):
        if not shutil.which(tool):
            return f"{tool} is not installed (infrastructure/dev/deps.sh)"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return "cannot create a network namespace here" if r.returncode else None


def topology():
    """GW <-veth-> NET, every stand-in address local to NET, GW's default route via NET."""
    for ns in (GW, NET):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", f"vg{TAG}", "netns", GW, "type", "veth", "peer", "name", f"vn{TAG}", "netns", NET)
    sh("ip", "-n", GW, "addr", "add", "10.99.0.1/30", "dev", f"vg{TAG}")
    sh("ip", "-n", NET, "addr", "add", "10.99.0.2/30", "dev", f"vn{TAG}")
    sh("ip", "-n", GW, "link", "set", f"vg{TAG}", "up")
    sh("ip", "-n", NET, "link", "set", f"vn{TAG}", "up")
    sh("ip", "-n", GW, "route", "add", "default", "via", "10.99.0.2")
    for a in [PUBLIC, DNS] + PRIVATE:   # local addresses of NET (on lo: no dummy module needed)
        sh("ip", "-n", NET, "addr", "add", a + "/32", "dev", "lo")


def teardown():
    for ns in (GW, NET):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_server(ns, args, path):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", path] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"stand-in server in {ns}: {line}")
    return p


def platform_ports():
    """The stack's real ports on 127.0.0.1: executor (this suite's and the stack's), Redis,
    Postgres, RabbitMQ (AMQP), S3."""
    ports = {"executor": BASE + 1}
    for k, v in (("redis", "MINILAMBDA_REDIS_URL"), ("postgres", "MINILAMBDA_LAMBDA_DB_URL"),
                 ("rabbitmq", "MINILAMBDA_AMQP_URL"), ("s3", "MINILAMBDA_S3_ENDPOINT")):
        if os.environ.get(v):
            ports[k] = urllib.parse.urlsplit(os.environ[v]).port
    return ports


def invoke(fn, event):
    st, _, body = call("POST", f"{EXEC}/functions/{fn}/invoke", json.dumps(event).encode(),
                       {"Content-Type": "application/json"}, timeout=120)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, {"raw": body[:300]}


def refused(r):
    return r.startswith("err:") and r != "err:"


def checks(ports):
    name_on, name_off = f"net-on-{TAG}", f"net-off-{TAG}"
    for n in (name_on, name_off):
        S.check(f"deploy {n}", (S.deploy(n, {"app.py": APP}) or {}).get("state") == "active")
    st, _, body = call("PATCH", f"{EXEC}/functions/{name_on}", json.dumps({"network": True}).encode(),
                       {"Content-Type": "application/json"})
    S.check("PATCH network:true -> 200, GET shows network true", st == 200 and json.loads(body).get("network") is True,
            body[:200])
    st, _, body = call("GET", f"{EXEC}/functions/{name_off}")
    S.check("network defaults to false", st == 200 and json.loads(body).get("network") is False, body[:200])

    denied = [(a, 80) for a in PRIVATE[1:]] + [("10.1.2.3", 8081)]
    denied += [("127.0.0.1", p) for p in ports.values()] + [("10.0.2.2", p) for p in ports.values()]
    denied += [("10.0.2.2", 80), ("10.99.0.1", 80), ("10.99.0.2", 80), ("10.0.2.3", 80)]
    allowed = [(PUBLIC, 80), ("10.1.2.3", 8080)]
    st, r = invoke(name_on, {"targets": allowed + denied, "resolve": "public.test", "tamper": True})
    pr = r.get("probe", {})
    S.check("network function invoked", st == 200 and pr, r)
    S.check(f"reaches the public stand-in {PUBLIC}:80", pr.get(f"{PUBLIC}:80") == f"ok:hello {PUBLIC}:80", pr)
    S.check("resolves public.test through the DNS stand-in and connects by name",
            r.get("resolved") == PUBLIC and r.get("via_name") == f"ok:hello {PUBLIC}:80", r)
    S.check("the allow-list opens 10.1.2.3:8080", pr.get("10.1.2.3:8080") == "ok:hello 10.1.2.3:8080", pr)
    for h, p in denied:
        S.check(f"refused: {h}:{p}", refused(pr.get(f"{h}:{p}", "")), pr.get(f"{h}:{p}"))
    S.check("the function cannot change the policy (nft, ip exit non-zero)",
            all(x != 0 for x in r.get("tamper", [0])), r.get("tamper"))
    st, r2 = invoke(name_on, {"targets": [("172.16.0.5", 80), (PUBLIC, 80)]})
    p2 = r2.get("probe", {})
    S.check("after the attempt the policy still holds (172.16.0.5 refused, public reachable)",
            refused(p2.get("172.16.0.5:80", "")) and p2.get(f"{PUBLIC}:80", "").startswith("ok:"), p2)
    S.check("the network function sees lo and tap0 only", r.get("ifaces") == ["lo", "tap0"], r.get("ifaces"))

    st, r = invoke(name_off, {"targets": [(PUBLIC, 80), ("10.1.2.3", 8080), ("127.0.0.1", BASE + 1)]})
    pr = r.get("probe", {})
    S.check("a function without network has no route at all (no routes, only lo)",
            st == 200 and r.get("routes") == 0 and r.get("ifaces") == ["lo"], r)
    # two layers: its namespace has no route, and its seccomp filter refuses IP sockets (EACCES)
    S.check("... and cannot reach the public stand-in or the allow-listed service (EACCES)",
            pr.get(f"{PUBLIC}:80") == "err:EACCES" and pr.get("10.1.2.3:8080") == "err:EACCES", pr)
    S.check("... nor the executor on 127.0.0.1", refused(pr.get(f"127.0.0.1:{BASE + 1}", "")), pr)


def check_switch_off():
    """An executor with the platform switch off (the default)."""
    S.start("executor-off", "lambda-executor")   # MINILAMBDA_FUNCTION_NETWORK: default off
    port = S.ports["executor-off"]
    st, _, body = call("PATCH", f"http://127.0.0.1:{port}/functions/any-{TAG}",
                       json.dumps({"network": True}).encode(), {"Content-Type": "application/json"})
    S.check("platform switch off: PATCH network:true -> 400 naming MINILAMBDA_FUNCTION_NETWORK",
            st == 400 and b"MINILAMBDA_FUNCTION_NETWORK" in body, (st, body[:200]))
    st, _, body = call("PATCH", f"http://127.0.0.1:{port}/functions/any-{TAG}",
                       json.dumps({"network": "yes"}).encode(), {"Content-Type": "application/json"})
    S.check("network must be a boolean (400)", st == 400 and b"network must be true or false" in body, body[:200])
    S.procs["executor-off"].terminate()
    S.procs["executor-off"].wait(60)


def main():
    why = skip_reason()
    if why:
        print(f"# skip: {why}")
        return 0
    tmp = tempfile.mkdtemp(prefix="ml-net-")
    path = os.path.join(tmp, "server.py")
    with open(path, "w") as f:
        f.write(SERVER)
    ports, servers, slirps = platform_ports(), [], []
    try:
        topology()
        targets = [f"{a}:80" for a in [PUBLIC] + PRIVATE] + ["10.1.2.3:8080", "10.1.2.3:8081",
                                                             "10.99.0.2:80"]
        servers.append(start_server(NET, ["dns", DNS, PUBLIC] + targets, path))
        servers.append(start_server(GW, [f"127.0.0.1:{p}" for p in set(ports.values()) | {80}] +
                                    ["10.99.0.1:80"], path))
        check_switch_off()
        S.start("build-master")
        S.start("build-worker")
        S.start("lambda-executor", MINILAMBDA_FUNCTION_NETWORK="true")
        checks(ports)
        slirps = subprocess.run(["pgrep", "-x", "-P", str(S.procs["lambda-executor"].pid), "slirp4netns"],
                                capture_output=True, text=True).stdout.split()
        S.check(f"the executor runs slirp4netns for its pool and instances ({len(slirps)})", slirps)
        S.procs["lambda-executor"].kill()   # kill -9: nothing of it may stay behind
        S.procs["lambda-executor"].wait()
        deadline = time.time() + 3
        while time.time() < deadline and any(os.path.exists(f"/proc/{p}") for p in slirps):
            time.sleep(0.1)
        left = [p for p in slirps if os.path.exists(f"/proc/{p}")]
        S.check("no slirp4netns outlives an executor killed with SIGKILL (3 s)", not left, left)
    finally:
        S.stop_all()
        for p in servers:
            p.kill()
            p.wait()
        teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if S.failures else 0


if __name__ == "__main__":
    sys.exit(main())
