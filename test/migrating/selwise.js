// A receiver of Selwise's webhooks (https://docs.selwise.com/integrations/webhooks),
// each destination protected by its authType: bearer (Authorization:
// Bearer <token>), basic (Authorization: Basic <base64 of user:password>),
// api_key (the key in a header of its own) or hmac (the hex HMAC-SHA256 of
// the raw body in X-Webhook-Signature), checked as an HTTP server checks
// them.  The config of a path: {auth: {type, ...}}, what the receiver
// expects.  The body is read as JSON.
'use strict';

const { refuse, isObject, jsonBody } = require('./checks');

module.exports = (doc) => {
  const { selwiseAuthorized } = doc('selwise', ['selwiseAuthorized']);
  return (req, raw, ep) => {
    if (req.method !== 'POST') return refuse(`method ${req.method}`);
    if (!selwiseAuthorized(ep.auth, req.headers, raw)) return refuse(`${ep.auth.type} credentials missing or wrong`);
    const body = jsonBody(req, raw);
    if (!isObject(body)) return refuse('the body is not a JSON object sent as application/json');
    return { ok: true, info: { auth: ep.auth.type, type: body.type } };
  };
};
