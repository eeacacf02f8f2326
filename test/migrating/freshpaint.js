// A receiver of Freshpaint's webhooks destination, as Freshpaint documents
// it (https://documentation.freshpaint.io/integrations/destinations/apps/webhooks):
// a POST whose body is the event itself (type track, identify, page or
// group, a messageId, a timestamp; a track event has its name in "event"
// and its "properties"), carrying the headers configured for this
// destination, unsigned; the receiver answers within 5 seconds.  The
// config of a path: {headers: {name: value or {"value": value}}}, the
// headers this destination was given.
'use strict';

const { refuse, isObject, isIsoTime, jsonBody } = require('./checks');

module.exports = (doc) => {
  const { fromFreshpaint } = doc('freshpaint', ['fromFreshpaint']);
  return (req, raw, ep) => {
    if (req.method !== 'POST') return refuse(`method ${req.method}`);
    for (const [name, v] of Object.entries(ep.headers)) {
      if (!fromFreshpaint(req.headers, name, isObject(v) ? v.value : v)) return refuse(`header ${name} is missing or wrong`);
    }
    const event = jsonBody(req, raw);
    if (!isObject(event)) return refuse('the body is not a JSON object sent as application/json');
    if (!['track', 'identify', 'page', 'group'].includes(event.type)) return refuse('type is not track, identify, page or group');
    if (typeof event.messageId !== 'string' || !isIsoTime(event.timestamp)) return refuse('no messageId or timestamp');
    if (event.type === 'track' && (typeof event.event !== 'string' || !isObject(event.properties))) {
      return refuse('a track event without its name or properties');
    }
    return { ok: true, info: { type: event.type, event: event.event, messageId: event.messageId } };
  };
};
