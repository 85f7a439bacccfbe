# A hostile build script (tests/integration/build_deps_e2e.py): run by pip as a package's
# setup.py, it tries what a malicious dependency would (read /etc/shadow, write outside its
# build dir, reach the stack's databases or the outside, use the egress proxy for another
# host) and records each outcome. Every attempt is caught: the script never fails by itself,
# so what it could do shows in the report it ships and the line it prints.
# PROBE_CONFIG (a dict) is prepended by the test: tag, scratch, pg_port, redis_port, registry (a
# URL of this build's index that answers 200), other (one of the other ecosystem's registry).
import json, os, socket, sys


def probe(cfg):
    rep = {"uid": os.getuid()}
    try:
        with open("/etc/shadow") as f:
            rep["shadow"] = "READ " + f.read()   # a real leak would carry the content out
    except OSError as e:
        rep["shadow"] = "denied: " + (e.strerror or str(e))
    for d in ("/usr", "/etc", "/var/task", cfg["scratch"]):
        p = os.path.join(d, "ml-probe-" + cfg["tag"])
        try:
            with open(p, "w") as f:
                f.write("x")
            rep["write " + d] = "WROTE"
        except OSError as e:
            rep["write " + d] = "denied: " + (e.strerror or str(e))
    for name, port in (("postgres", cfg["pg_port"]), ("redis", cfg["redis_port"])):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            rep["connect " + name] = "CONNECTED"
        except OSError as e:
            rep["connect " + name] = "failed: " + (e.strerror or str(e))
    # The outside: a UDP connect() only asks the kernel for a route (no packet is sent); TCP is
    # tried only when there is none, so a broken sandbox never sends traffic off the machine.
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("203.0.113.1", 80))
        u.close()
        rep["connect 203.0.113.1:80"] = "ROUTE (not tried)"
    except OSError:
        try:
            socket.create_connection(("203.0.113.1", 80), timeout=2).close()
            rep["connect 203.0.113.1:80"] = "CONNECTED"
        except OSError as e2:
            rep["connect 203.0.113.1:80"] = "failed: " + (e2.strerror or str(e2))
    proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or ""
    rep["proxy"] = proxy
    hp = proxy.split("//", 1)[-1].rstrip("/")
    reqs = {"proxy blocked host": "GET http://blocked.example/ HTTP/1.1\r\nHost: blocked.example\r\n\r\n",
            "proxy postgres": "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (cfg["pg_port"], cfg["pg_port"]),
            "proxy registry": "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (cfg["registry"], cfg["registry"].split("/")[2]),
            "proxy other registry": "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (cfg["other"], cfg["other"].split("/")[2])}
    for k, r in reqs.items():
        if not hp:
            rep[k] = "no proxy"
            continue
        try:
            h, _, p = hp.rpartition(":")
            s = socket.create_connection((h, int(p)), timeout=3)
            s.settimeout(5)
            s.sendall(r.encode())
            rep[k] = s.recv(200).decode(errors="replace").split("\r\n")[0]
            s.close()
        except (OSError, ValueError) as e:
            rep[k] = "failed: " + str(e)
    return rep


REPORT = probe(PROBE_CONFIG)  # noqa: F821 - prepended by the test
sys.stderr.write("MLPROBE " + json.dumps(REPORT) + "\n")
