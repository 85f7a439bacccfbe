// A hostile npm lifecycle script (tests/integration/build_deps_e2e.py): `node probe.js <phase>`
// from preinstall/postinstall tries what a malicious dependency would (read /etc/shadow, write
// outside its build dir, reach the stack's databases or the outside, use the egress proxy for
// another host; probe-config.json: registry answers 200, other is the other ecosystem's) and records each outcome in report-<phase>.json in its own package dir (shipped
// with the function) and on stdout. Every attempt is caught: the script never fails by itself.
'use strict';
const fs = require('fs');
const net = require('net');
const dgram = require('dgram');
const path = require('path');
const cfg = require('./probe-config.json');
const phase = process.argv[2] || 'run';

function tcp(host, port, payload) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let data = '';
    const t = setTimeout(() => { s.destroy(); resolve(payload ? 'failed: timeout ' + data : 'failed: timeout'); }, 3000);
    s.on('connect', () => { if (payload) s.write(payload); else { clearTimeout(t); s.destroy(); resolve('CONNECTED'); } });
    s.on('data', (d) => { data += d; if (data.includes('\r\n')) { clearTimeout(t); s.destroy(); resolve(data.split('\r\n')[0]); } });
    s.on('error', (e) => { clearTimeout(t); resolve('failed: ' + e.code); });
  });
}

function route(host, port) {
  // connect() on UDP only asks the kernel for a route; no packet is sent.
  return new Promise((resolve) => {
    const u = dgram.createSocket('udp4');
    u.on('error', (e) => { u.close(); resolve('failed: ' + e.code); });
    u.connect(port, host, (e) => { try { u.close(); } catch (_) { /* closed */ } resolve(e ? 'failed: ' + e.code : 'ROUTE'); });
  });
}

async function main() {
  const rep = { uid: process.getuid(), phase };
  try { rep.shadow = 'READ ' + fs.readFileSync('/etc/shadow', 'utf8'); } catch (e) { rep.shadow = 'denied: ' + e.code; }
  for (const d of ['/usr', '/etc', '/var/task', cfg.scratch]) {
    try { fs.writeFileSync(path.join(d, 'ml-probe-' + cfg.tag), 'x'); rep['write ' + d] = 'WROTE'; } catch (e) { rep['write ' + d] = 'denied: ' + e.code; }
  }
  rep['connect postgres'] = await tcp('127.0.0.1', cfg.pg_port);
  rep['connect redis'] = await tcp('127.0.0.1', cfg.redis_port);
  const r = await route('203.0.113.1', 80);
  // TCP only when there is no route: a broken sandbox never sends traffic off the machine.
  rep['connect 203.0.113.1:80'] = r === 'ROUTE' ? 'ROUTE (not tried)' : await tcp('203.0.113.1', 80);
  const proxy = process.env.HTTP_PROXY || process.env.http_proxy || process.env.npm_config_proxy || '';
  rep.proxy = proxy;
  const hp = proxy.replace(/^[a-z]+:\/\//, '').replace(/\/$/, '');
  const i = hp.lastIndexOf(':');
  const reqs = {
    'proxy blocked host': 'GET http://blocked.example/ HTTP/1.1\r\nHost: blocked.example\r\n\r\n',
    'proxy postgres': `CONNECT 127.0.0.1:${cfg.pg_port} HTTP/1.1\r\nHost: 127.0.0.1:${cfg.pg_port}\r\n\r\n`,
    'proxy registry': `GET ${cfg.registry} HTTP/1.1\r\nHost: ${cfg.registry.split('/')[2]}\r\nConnection: close\r\n\r\n`,
    'proxy other registry': `GET ${cfg.other} HTTP/1.1\r\nHost: ${cfg.other.split('/')[2]}\r\nConnection: close\r\n\r\n`,
  };
  for (const [k, req] of Object.entries(reqs)) {
    rep[k] = i > 0 ? await tcp(hp.slice(0, i), Number(hp.slice(i + 1)), req) : 'no proxy';
  }
  try { fs.writeFileSync(path.join(__dirname, `report-${phase}.json`), JSON.stringify(rep)); } catch (e) { rep.report = 'unwritable: ' + e.code; }
  console.log('MLPROBE ' + JSON.stringify(rep));
}

main().catch((e) => console.log('MLPROBE ' + JSON.stringify({ phase, crashed: String(e) })));
