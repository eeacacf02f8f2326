// Small checks shared by the provider receivers of this directory.
'use strict';

const refuse = (why) => ({ ok: false, why });

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// An ISO 8601 UTC time such as 2026-06-15T14:32:10.123Z.
const isIsoTime = (v) => typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(v)
  && !Number.isNaN(Date.parse(v));

// The body parsed as JSON, or undefined; receivers of these products read JSON.
function jsonBody(req, raw) {
  if (!/^application\/json\b/.test(String(req.headers['content-type'] || ''))) return undefined;
  try { return JSON.parse(raw.toString('utf8')); } catch (e) { return undefined; }
}

module.exports = { refuse, isObject, isIsoTime, jsonBody };
