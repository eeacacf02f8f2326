// A receiver of Setgreet's webhooks, as Setgreet documents them
// (https://www.setgreet.com/docs/integrations/webhooks): a POST whose JSON
// body is a delivery envelope, {"events": [{"event", "timestamp", "userId",
// "properties", "context"}, ...], "deliveredAt", "source": "setgreet"},
// signed in X-Setgreet-Signature with the hex HMAC-SHA256 of the raw body,
// keyed with the secret set in Setgreet.  The config of a path: {secret}.
'use strict';

const { refuse, isObject, isIsoTime, jsonBody } = require('./checks');

module.exports = (doc) => {
  const { verifySetgreet } = doc('setgreet', ['verifySetgreet']);
  return (req, raw, ep) => {
    if (req.method !== 'POST') return refuse(`method ${req.method}`);
    if (!verifySetgreet(ep.secret, raw, req.headers)) return refuse('X-Setgreet-Signature does not match');
    const body = jsonBody(req, raw);
    if (!isObject(body)) return refuse('the body is not a JSON object sent as application/json');
    if (!Array.isArray(body.events) || body.events.length === 0) return refuse('no events');
    for (const e of body.events) {
      if (!isObject(e) || typeof e.event !== 'string' || !isIsoTime(e.timestamp) || typeof e.userId !== 'string'
          || !isObject(e.properties) || !isObject(e.context)) {
        return refuse('an event is not {event, timestamp, userId, properties, context}');
      }
    }
    if (!isIsoTime(body.deliveredAt)) return refuse('deliveredAt is not an ISO 8601 time');
    if (body.source !== 'setgreet') return refuse('source is not "setgreet"');
    return { ok: true, info: { events: body.events.map((e) => e.event) } };
  };
};
