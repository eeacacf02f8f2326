#!/usr/bin/env node
// A loopback receiver for docs/migrating.md: it checks each request as the
// receivers of one source product do (--provider setgreet | form |
// freshpaint | selwise | standard, the modules of this directory), with
// the receiver code of the guide (doc.js).
//
//   node serve.js --provider P --doc docs/migrating.md --log FILE --config FILE
//                 [--port 0] [--fail-first N] [--fail-always] [--slow-first MS] [--on REGEX]
//
// --config is a JSON object read at each request: request path -> what the
// receiver of that path holds (its secret, the credentials it expects).  A
// path it does not list is answered 404.  Each request is appended to
// --log as one JSON line before it is answered:
//   {"t", "method", "path", "headers", "body", "ok", "why", "info", "status"}
// ok/why are the provider's verdict (refused requests are answered 401),
// info what it read from the request.  The test controls how verified
// requests are answered, for the paths matching --on (all by default):
// --fail-first N answers 503 to the first N requests of each webhook-id
// (per path), --fail-always to every request, --slow-first MS answers the
// first request of each webhook-id after MS milliseconds.  Otherwise: 200, or 204 for the
// standard provider.  Writes the port to FILE.port once listening.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { performance } = require('perf_hooks');
const { loader } = require('./doc');

const args = { port: '0', 'fail-first': '0', 'slow-first': '0', on: '' };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'fail-always') args[k] = true;
  else args[k] = process.argv[++i];
}
for (const k of ['provider', 'doc', 'log', 'config']) {
  if (!args[k]) { console.error(`serve.js: --${k} is required`); process.exit(2); }
}
const check = require(path.join(__dirname, `${args.provider}.js`))(loader(args.doc));
const on = new RegExp(args.on);
const logFd = fs.openSync(args.log, 'a');
const seen = new Map();   // webhook-id and path -> requests so far

function config() {
  try { return JSON.parse(fs.readFileSync(args.config, 'utf8')); } catch (e) { return {}; }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://receiver');
    const ep = config()[url.pathname];
    let verdict;
    if (!ep) verdict = { ok: false, why: 'unknown path', status: 404 };
    else {
      try { verdict = check(req, raw, ep); } catch (e) { verdict = { ok: false, why: `receiver error: ${e.message}` }; }
    }
    const key = `${req.headers['webhook-id'] || ''} ${url.pathname}`;   // one event goes to several paths
    const n = (seen.get(key) || 0) + 1;
    seen.set(key, n);
    let status = args.provider === 'standard' ? 204 : 200;
    let delay = 0;
    if (!verdict.ok) status = verdict.status || 401;
    else if (on.test(url.pathname)) {
      if (args['fail-always'] || n <= Number(args['fail-first'])) status = 503;
      else if (n === 1) delay = Number(args['slow-first']);
    }
    fs.writeSync(logFd, JSON.stringify({
      t: performance.timeOrigin + performance.now(), method: req.method, path: url.pathname,
      headers: req.headers, body: raw.toString('utf8'), ok: verdict.ok, why: verdict.why || null,
      info: verdict.info || null, status,
    }) + '\n');
    const answer = () => {
      if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain' }).end(verdict.ok ? 'ok' : 'refused');
    };
    if (delay > 0) setTimeout(answer, delay); else answer();
  });
});
server.listen(Number(args.port), '127.0.0.1', () => {
  fs.writeFileSync(`${args.log}.port.tmp`, String(server.address().port));
  fs.renameSync(`${args.log}.port.tmp`, `${args.log}.port`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
