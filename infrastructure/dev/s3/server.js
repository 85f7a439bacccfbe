'use strict'
// Local S3-compatible server for the minilambda dev stack.
//
// @20minutes/s3rver verifies SigV4 signatures (a wrong secret gets 403
// SignatureDoesNotMatch), so signing bugs in our C client show up locally.
// It has no CLI, hence this script.
//
// Settings come from the environment, or from argv as
//   node server.js [PORT [DIR [BUCKET]]]
// S3_PORT (default 4569), S3_DIR (default ./data), S3_BUCKET (default minilambda),
// S3_ACCESS_KEY (default minilambda), S3_SECRET_KEY (default minilambda-dev-secret),
// S3_ADDRESS (default 127.0.0.1), S3_SILENT=1 to stop logging one line per request.

// Node 18 (stock Debian 12) lacks Array.prototype.toReversed, which s3rver's
// router uses on every request: without it every request answers 500.
// Must be defined before s3rver is required.
if (!Array.prototype.toReversed) {
  Object.defineProperty(Array.prototype, 'toReversed', {
    value: function toReversed() {
      return Array.prototype.slice.call(this).reverse()
    },
    writable: true,
    configurable: true,
  })
}

const path = require('path')
const S3rver = require('@20minutes/s3rver')
const { DUMMY_ACCOUNT } = require('@20minutes/s3rver/lib/models/account')

// argIndex: position among the positional arguments, or null for env-only settings.
function setting(envName, argIndex, fallback) {
  const fromArgv = argIndex === null ? undefined : process.argv[2 + argIndex]
  if (fromArgv !== undefined && fromArgv !== '') return fromArgv
  const fromEnv = process.env[envName]
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  return fallback
}

function fail(msg) {
  console.error(`s3-server: ${msg}`)
  process.exit(1)
}

const port = Number(setting('S3_PORT', 0, '4569'))
const directory = path.resolve(setting('S3_DIR', 1, path.join(__dirname, 'data')))
const bucket = setting('S3_BUCKET', 2, 'minilambda')
const accessKey = setting('S3_ACCESS_KEY', null, 'minilambda')
const secretKey = setting('S3_SECRET_KEY', null, 'minilambda-dev-secret')
const address = setting('S3_ADDRESS', null, '127.0.0.1')
const silent = process.env.S3_SILENT === '1'

if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`invalid port '${port}'`)
if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) fail(`invalid bucket name '${bucket}'`)

// Replace the built-in S3RVER/S3RVER pair: only our key may sign requests.
DUMMY_ACCOUNT.createKeyPair(accessKey, secretKey)
if (accessKey !== 'S3RVER') DUMMY_ACCOUNT.revokeAccessKey('S3RVER')

const server = new S3rver({
  address,
  port,
  directory,
  // s3rver's own request log is colourised and truncates each line: replaced below.
  silent: true,
  // Path-style only: our clients address http://host:port/bucket/key.
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
})

// One plain line per request, first in the middleware chain so that it sees every answer,
// errors included (S3 errors are thrown with their HTTP status, e.g. 403 SignatureDoesNotMatch).
if (!silent) {
  server.middleware.unshift(async (ctx, next) => {
    const started = Date.now()
    let status = 500
    let code = ''
    try {
      await next()
      status = ctx.status
    } catch (err) {
      status = err.status || 500
      code = err.code ? ` ${err.code}` : ''
      throw err
    } finally {
      console.log(
        `${new Date().toISOString()} ${ctx.method} ${ctx.originalUrl} ${status}${code} ${Date.now() - started}ms`
      )
    }
  })
}

server.run().then(
  (addr) => {
    console.log(
      `s3-server: listening on http://${addr.address}:${addr.port} ` +
        `bucket=${bucket} dir=${directory} node=${process.version} pid=${process.pid}`
    )
  },
  (err) => fail(`cannot start: ${err.message}`)
)

function shutdown(signal) {
  console.log(`s3-server: ${signal}, closing`)
  server.close().then(
    () => process.exit(0),
    () => process.exit(0)
  )
  // Keep-alive connections may hold close() open: do not wait forever.
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
