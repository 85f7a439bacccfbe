"""Load clients shared by the executor benchmark and the end-to-end tests that reuse its
workload: raw HTTP/1.1 keep-alive POSTs over asyncio streams (no client library in the
measured path), an open loop (fixed arrival rate, latency from the scheduled time, so a
stall is not hidden by the client slowing down) and a closed loop (N connections, each
sending as soon as its previous answer arrived)."""
import asyncio, time

from mlstack import INTERNAL_HEADER, INTERNAL_TOKEN  # direct calls carry the internal token


async def open_conn(port):
    return await asyncio.open_connection("127.0.0.1", port)


async def request(conn, path, body):
    r, w = conn
    w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{INTERNAL_HEADER}: {INTERNAL_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    head = await r.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    await r.readexactly(length)
    return int(head.split(b" ")[1])


async def open_loop(port, path, rate, total, conns=64):
    """Sends at a fixed rate; latency is measured from the scheduled time."""
    pool = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await open_conn(port))
    lat, errors, t0 = [], 0, time.monotonic()

    async def one(i):
        nonlocal errors
        due = t0 + i / rate
        c = await pool.get()
        try:
            st = await request(c, path, b'{"n": 1}')
            errors += st != 200
        finally:
            pool.put_nowait(c)
        lat.append((time.monotonic() - due) * 1000)
    tasks = []
    for i in range(total):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return lat, errors


async def closed_loop(port, path, total, conns=32):
    done, errors = 0, 0

    async def worker():
        nonlocal done, errors
        c = await open_conn(port)
        while done < total:
            done += 1
            errors += await request(c, path, b'{"n": 1}') != 200
        c[1].close()  # idle keep-alive connections would hold server memory until they time out
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return total / (time.monotonic() - t0), errors


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
