// A receiver of a Svix-powered product's webhooks, verified with the
// Standard Webhooks reference library (npm standardwebhooks) as Svix and
// https://www.standardwebhooks.com/ tell receivers to, handling each
// webhook-id once.  The config of a path: {secret} (whsec_...).
'use strict';

const { Webhook } = require('./doc').requireFromReceiver('standardwebhooks');

module.exports = (doc) => {
  const { receiveStandard } = doc('standard', ['receiveStandard']);
  const verifiers = new Map();   // secret -> Webhook
  const seen = new Set();        // webhook-ids handled
  return (req, raw, ep) => {
    if (!verifiers.has(ep.secret)) verifiers.set(ep.secret, new Webhook(ep.secret));
    let message;
    try {
      message = receiveStandard(verifiers.get(ep.secret), seen, raw, req.headers);
    } catch (e) {
      return { ok: false, why: String(e.message || e) };
    }
    if (message === null) return { ok: true, info: { duplicate: true } };
    return { ok: true, info: { duplicate: false, type: message.type, data: message.data } };
  };
};
