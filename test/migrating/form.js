// A receiver of a form widget's callbacks, as Embeddable documents them
// (https://embeddable.co/en/docs/integrations/webhook): a POST with
// Content-Type application/json whose body is the submitted fields
// themselves, one JSON object, signed in X-Signature as "sha256=" and the
// hex HMAC-SHA256 of the raw body, keyed with the signing secret.  The
// config of a path: {secret}.
'use strict';

const { refuse, isObject, jsonBody } = require('./checks');

module.exports = (doc) => {
  const { verifyFormSignature } = doc('form', ['verifyFormSignature']);
  return (req, raw, ep) => {
    if (req.method !== 'POST') return refuse(`method ${req.method}`);
    if (!verifyFormSignature(ep.secret, raw, req.headers)) return refuse('X-Signature does not match');
    const fields = jsonBody(req, raw);
    if (!isObject(fields)) return refuse('the body is not a JSON object sent as application/json');
    if (Object.values(fields).some((v) => typeof v !== 'string')) return refuse('a field is not a string');
    return { ok: true, info: { fields: Object.keys(fields) } };   // in the order they came
  };
};
