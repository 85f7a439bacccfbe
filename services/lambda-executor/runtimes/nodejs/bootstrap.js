'use strict';
// minilambda nodejs runtime: loads the handler (CommonJS, or an ES module) once, then serves
// invocations.
//
// Started by the executor as `node bootstrap.js` inside the sandbox. It speaks the framed
// protocol of runtimes/provided/README.md on fd 3; fds 1 and 2 are the function's log
// (console.log goes there, synchronously for pipes on Linux), never the result.
// Between invocations the event loop is blocked on the next frame, like a frozen Lambda.

const fs = require('fs');
const path = require('path');
const Module = require('module');

// Debian's node keeps the modules it was built against (acorn, cjs-module-lexer, undici ...)
// in /usr/share/nodejs and loads them by absolute path, so the sandbox cannot mask that dir
// (docs/sandbox.md); a function's bare require() must still not find host packages there.
const HOST_MODULE_DIRS = ['/usr/share/nodejs', '/usr/lib/nodejs', '/usr/local/lib/node',
  '/usr/lib/node', '/usr/lib/node_modules', '/usr/local/lib/node_modules'];
const isHostDir = (d) => HOST_MODULE_DIRS.some((h) => d === h || d.startsWith(h + '/')) ||
  /^\/usr\/lib\/[^/]+-linux-gnu\/nodejs(\/|$)/.test(d);
const resolveLookupPaths = Module._resolveLookupPaths;
Module._resolveLookupPaths = function (request, parent) {
  const paths = resolveLookupPaths.call(this, request, parent);
  return Array.isArray(paths) ? paths.filter((d) => !isHostDir(d)) : paths;
};

const FD = 3;
let TASK_ROOT = process.env.LAMBDA_TASK_ROOT || '/var/task';

function readExact(n) {
  const buf = Buffer.allocUnsafe(n);
  let off = 0;
  while (off < n) {
    let got;
    try {
      got = fs.readSync(FD, buf, off, n - off, null);
    } catch (e) {
      if (e.code === 'EINTR' || e.code === 'EAGAIN') continue;
      throw e;
    }
    if (got === 0) process.exit(0); // the executor closed the channel: retiring
    off += got;
  }
  return buf;
}

function readFrame() {
  return readExact(readExact(4).readUInt32BE(0));
}

function send(header, body) {
  const h = Buffer.from(header);
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body || '');
  const lens = Buffer.alloc(8);
  lens.writeUInt32BE(h.length, 0);
  lens.writeUInt32BE(b.length, 4);
  const data = Buffer.concat([lens.subarray(0, 4), h, lens.subarray(4), b]);
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(FD, data, off, data.length - off);
    } catch (e) {
      if (e.code !== 'EINTR' && e.code !== 'EAGAIN') throw e;
    }
  }
}

function errorBody(err, type) {
  const isError = err instanceof Error;
  const body = {
    errorType: type || (isError ? err.name || 'Error' : typeof err),
    errorMessage: isError ? String(err.message) : String(err),
    stackTrace: isError && typeof err.stack === 'string'
      ? err.stack.split('\n').slice(1).map((l) => l.trim()).filter((l) => !l.includes(__filename))
      : [],
  };
  console.error(`[ERROR] ${body.errorType}: ${body.errorMessage}`);
  if (isError && err.stack) console.error(err.stack);
  return body;
}

class InitError extends Error {
  constructor(type, message) {
    super(message);
    this.errorType = type;
  }
}

// A path for messages: relative to the task root when inside it (what the user wrote).
function shown(p) {
  const f = String(p).startsWith('file://') ? require('url').fileURLToPath(p) : String(p);
  return f.startsWith(TASK_ROOT + '/') ? f.slice(TASK_ROOT.length + 1) : f;
}

// Node's "Cannot find module 'x'\nRequire stack:\n- …" lists every requirer, the handler file
// always among them, so only its first line names what is missing; the stack says who asked.
// ESM says "Cannot find package 'x' imported from /var/task/index.mjs".
function missingModuleMessage(e) {
  const first = String(e.message).split('\n')[0];
  const esm = /^Cannot find (package|module) '(.*)' imported from (.*)$/.exec(first);
  if (esm) return `Error: Cannot find ${esm[1]} '${shown(esm[2])}' imported from ${shown(esm[3])}`;
  const m = /^Cannot find module '(.*)'/.exec(first);
  const stack = (Array.isArray(e.requireStack) ? e.requireStack : [])
    .filter((f) => f !== __filename).map(shown);
  const by = stack.length ? ` required by ${stack.join(' <- ')}` : '';
  return `Error: Cannot find module '${m ? m[1] : first}'${by}`;
}

// CommonJS by require(); an ES module (package.json "type": "module") by import() where this
// node's require() cannot load one (before 20.19) or the module awaits at top level.
async function loadModule(resolved) {
  try {
    return require(resolved);
  } catch (e) {
    if (!e || (e.code !== 'ERR_REQUIRE_ESM' && e.code !== 'ERR_REQUIRE_ASYNC_MODULE')) throw e;
    return import(require('url').pathToFileURL(resolved).href);
  }
}

async function loadHandler(spec) {
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw new InitError('Runtime.MalformedHandlerName', `Bad handler '${spec}': expected file.export`);
  }
  const file = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  let resolved;
  try {
    resolved = require.resolve(path.join(TASK_ROOT, file));
  } catch (e) {
    if (!e || e.code !== 'MODULE_NOT_FOUND') {
      throw new InitError('Runtime.InitError', `${e && e.name}: ${e && e.message}`);
    }
    // The handler file itself: resolved first, so a missing dependency is never blamed on it.
    throw new InitError('Runtime.ImportModuleError',
      `Error: Cannot find module '${file}': the handler file ${file}.js is not in the function's code`);
  }
  let mod;
  try {
    mod = await loadModule(resolved);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw new InitError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new InitError('Runtime.ImportModuleError', missingModuleMessage(e));
    }
    throw new InitError('Runtime.InitError', `${e && e.name}: ${e && e.message}`);
  }
  const fn = mod && mod[name];
  if (typeof fn !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${file}.${name} is undefined or not exported`);
  }
  return fn;
}

function makeContext(h) {
  const deadline = Number(h.deadline_ms) || 0;
  const remaining = () => Math.max(0, Math.floor(deadline - Date.now()));
  return {
    functionName: h.function_name,
    functionVersion: h.function_version,
    invocationId: h.invocation_id,
    awsRequestId: h.invocation_id,
    memoryLimitInMB: String(h.memory_limit_in_mb),
    function_name: h.function_name,
    function_version: h.function_version,
    invocation_id: h.invocation_id,
    memory_limit_in_mb: h.memory_limit_in_mb,
    getRemainingTimeInMillis: remaining,
    get_remaining_time_in_millis: remaining,
  };
}

// Response streaming, AWS's shape: awslambda.streamifyResponse(async (event, responseStream,
// context) => ...) marks a handler; responseStream is a Writable whose every write goes out
// to the executor at once as a "chunk" message (runtimes/provided/README.md "Streaming").
const STREAMING = Symbol.for('minilambda.streaming');
const { Writable } = require('stream');

class ResponseStream extends Writable {
  constructor() {
    super({ decodeStrings: true });
    this.contentType = null;
    this.http = null;
    this.started = false;
    this.on('error', () => {}); // a write after end(): AWS ignores it too, it must not crash us
  }

  setContentType(ct) {
    this.contentType = String(ct);
  }

  start() {
    if (this.started) return;
    this.started = true;
    const meta = { type: 'stream', content_type: this.contentType || 'application/octet-stream' };
    if (this.http) meta.http = this.http;
    send(JSON.stringify(meta), '');
  }

  _write(chunk, encoding, cb) {
    this.start();
    if (chunk.length) send('{"type":"chunk"}', chunk);
    cb();
  }

  _final(cb) {
    this.start();
    cb();
  }
}

const HttpResponseStream = {
  // AWS: from(responseStream, {statusCode, headers, cookies}) before the first write.
  from(stream, prelude) {
    const p = prelude || {};
    const http = {};
    if (p.statusCode !== undefined) http.statusCode = Number(p.statusCode);
    if (p.headers) {
      http.headers = {};
      for (const [k, v] of Object.entries(p.headers)) {
        http.headers[k] = String(v);
        if (k.toLowerCase() === 'content-type' && !stream.contentType) stream.contentType = String(v);
      }
    }
    if (Array.isArray(p.cookies)) http.cookies = p.cookies.map(String);
    stream.http = http;
    return stream;
  },
};

globalThis.awslambda = {
  streamifyResponse(handler) {
    const wrapped = (event, responseStream, context) => handler(event, responseStream, context);
    wrapped[STREAMING] = true;
    return wrapped;
  },
  HttpResponseStream,
};

// Runs a streamified handler; its result is the stream, so the answer's body is empty.
async function callStreaming(fn, event, context) {
  const rs = new ResponseStream();
  const finished = new Promise((resolve) => rs.once('finish', resolve));
  await fn(event, rs, context); // an error before the first write is an ordinary one
  if (!rs.writableEnded) rs.end(); // returned without end(): the response is complete
  await finished;
}

// async handlers, plain returns and callback-style (event, context, callback) handlers.
function call(fn, event, context) {
  if (fn.length >= 3) {
    return new Promise((resolve, reject) => {
      const r = fn(event, context, (err, res) => (err ? reject(err) : resolve(res)));
      if (r && typeof r.then === 'function') r.then(resolve, reject);
    });
  }
  return Promise.resolve().then(() => fn(event, context));
}

async function invoke(fn, header, body) {
  let event;
  try {
    event = body.length ? JSON.parse(body.toString('utf8')) : null;
  } catch (e) {
    return ['{"type":"error"}', JSON.stringify(errorBody(e, 'Runtime.UnmarshalError'))];
  }
  if (fn[STREAMING]) {
    try {
      await callStreaming(fn, event, makeContext(header));
    } catch (e) {
      return ['{"type":"error"}', JSON.stringify(errorBody(e))];
    }
    return ['{"type":"result"}', ''];
  }
  let result;
  try {
    result = await call(fn, event, makeContext(header));
  } catch (e) {
    return ['{"type":"error"}', JSON.stringify(errorBody(e))];
  }
  try {
    const out = JSON.stringify(result);
    return ['{"type":"result"}', out === undefined ? 'null' : out];
  } catch (e) {
    const b = errorBody(e, 'Runtime.MarshalError');
    b.errorMessage = `Unable to stringify response body: ${b.errorMessage}`;
    return ['{"type":"error"}', JSON.stringify(b)];
  }
}

// A stem cell (`bootstrap.js --stem`, docs/sandbox.md "Stem cells"): started ahead with no
// code and a generic environment; waits for "specialise", then takes the function's
// environment (replacing, not merging: nothing of the stem's stays in process.env). The
// executor has mounted the code at /var/task by then.
// V8 compiles functions on their first call: a throwaway handler in /tmp (deleted again, and
// dropped from require's cache) is loaded and invoked once, so the function's own load and
// first invocation find the loader and invoke paths compiled.
async function stemWarm() {
  const dir = fs.mkdtempSync('/tmp/.stem-');
  const file = path.join(dir, 'warm.js');
  const root = TASK_ROOT;
  try {
    fs.writeFileSync(file, 'exports.handler = async (event, context) => ({ ok: true, event });\n');
    TASK_ROOT = dir;
    const fn = await loadHandler('warm.handler');
    await invoke(fn, { function_name: '', invocation_id: '', deadline_ms: 0 }, Buffer.from('{"a":[1]}'));
  } finally {
    TASK_ROOT = root;
    delete require.cache[file];
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function stemWait() {
  require('url'); // what loading an ES module handler needs, loaded ahead
  await stemWarm();
  send('{"type":"stem_ready"}', '');
  let env;
  for (;;) {
    const header = JSON.parse(readFrame().toString('utf8'));
    const body = readFrame();
    if (header.type === 'specialise') {
      env = JSON.parse(body.toString('utf8'));
      break;
    }
  }
  // Replaced, with only the keys that differ touched: assigning TZ (even the same value)
  // makes node reload ICU's time-zone data, ~70 ms on a busy host.
  const next = new Map(env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  for (const key of Object.keys(process.env)) if (!next.has(key)) delete process.env[key];
  for (const [key, value] of next) if (process.env[key] !== value) process.env[key] = value;
  TASK_ROOT = process.env.LAMBDA_TASK_ROOT || '/var/task';
  process.chdir(TASK_ROOT); // the mount, not the empty directory the stem started in
}

async function main() {
  if (process.argv[2] === '--stem') await stemWait();
  let fn;
  try {
    fn = await loadHandler(process.env._HANDLER || '');
  } catch (e) {
    send('{"type":"init_error"}', JSON.stringify(errorBody(e, e.errorType || 'Runtime.InitError')));
    process.exit(1);
  }
  send('{"type":"ready"}', '');
  for (;;) {
    const header = JSON.parse(readFrame().toString('utf8'));
    const body = readFrame();
    if (header.type !== 'invoke') continue;
    const [reply, payload] = await invoke(fn, header, body);
    send(reply, payload);
  }
}

main().catch((e) => {
  console.error('[ERROR] bootstrap:', e);
  process.exit(1);
});
