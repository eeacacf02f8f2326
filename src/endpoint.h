/*-------------------------------------------------------------------------
 * endpoint.h
 *	  The endpoint model (endpoint.c): its settings as the worker and
 *	  webhook_test read them, and the body and headers of a request to it.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_ENDPOINT_H
#define WEBHOOK_ENDPOINT_H

#include "http.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/*
 * An endpoint's state, with one text mapping (the names the table uses);
 * switches over it have no default, so that a new value is named everywhere
 * it matters.
 */
typedef enum EndpointState
{
	EP_ACTIVE,
	EP_DISABLED,
	EP_PAUSED,
	EP_CIRCUIT_OPEN
} EndpointState;

extern const char *endpoint_state_name(EndpointState state);
extern EndpointState endpoint_state_of(const char *name);

typedef enum PayloadFormat
{
	FORMAT_STANDARD,
	FORMAT_BATCH,
	FORMAT_RAW
} PayloadFormat;

/* How many signing keys an endpoint may have: the current and 10 old ones. */
#define MAX_SIGN_KEYS 11

/* Endpoint settings needed to send, cached per endpoint id (worker) or read once (webhook_test). */
typedef struct Endpoint
{
	int64		id;				/* hash key */
	char	   *url;
	int			signing;		/* SignScheme */
	SignKey		keys[MAX_SIGN_KEYS];	/* newest first */
	int			nkeys;			/* 0: unusable secret */
	char	   *sig_header;		/* hex schemes: "Name: " to prefix the value */
	char	   *sig_prefix;		/* hmac-sha256-hex: before each signature, or NULL */
	char	  **headers;		/* "Name: value", auth included */
	int			nheaders;
	long		timeout_ms;
	int64	   *schedule_ms;
	int			nschedule;
	PayloadFormat format;
	bool		batch_data;		/* batch items are the events' data, not envelopes */
	bool		text_body;		/* raw, with a Content-Type that is not JSON */
	double		retry_jitter;	/* fraction; < 0: webhook.retry_jitter */
	char	   *source;			/* batch envelope's "source" */
	int			rate_limit;		/* requests per second, 0: unlimited */
	bool		ordered;
	char	   *url_error;		/* why the URL breaks the rules, or NULL */
	EndpointState state;
	/* health, as stored; updated by the worker from the outcomes */
	int			consecutive_failures;
	TimestampTz failing_since;	/* 0: the last request succeeded */
	int			circuit_cooldown;	/* seconds; 0: never opened since a success */
	bool		dirty;			/* counters changed, not yet written */
} Endpoint;

/*
 * The SELECT list endpoint_read() expects, FROM the endpoints as e; %1$s is
 * the quoted extension schema.  Header lines join the endpoint's headers
 * (a value is a string or {"value", "secret"}) and its auth; secrets are
 * the current one and the previous ones still valid, newest first.
 */
#define ENDPOINT_SELECT \
	"SELECT e.id, e.url, e.signing," \
	"       ARRAY[e.secret] || ARRAY(SELECT p ->> 'secret' FROM pg_catalog.jsonb_array_elements(e.previous_secrets)" \
	"                                  WITH ORDINALITY AS a(p, o)" \
	"                                 WHERE (p ->> 'expires_at')::timestamptz > pg_catalog.now() ORDER BY o)," \
	"       ARRAY[NULL::timestamptz] || ARRAY(SELECT (p ->> 'expires_at')::timestamptz" \
	"                                  FROM pg_catalog.jsonb_array_elements(e.previous_secrets) WITH ORDINALITY AS a(p, o)" \
	"                                 WHERE (p ->> 'expires_at')::timestamptz > pg_catalog.now() ORDER BY o)," \
	"       coalesce(e.signature_header, 'X-Webhook-Signature'), e.signature_prefix," \
	"       ARRAY(SELECT h.key || ': ' || CASE WHEN pg_catalog.jsonb_typeof(h.value) = 'object'" \
	"                                        THEN h.value ->> 'value' ELSE h.value #>> '{}' END" \
	"               FROM pg_catalog.jsonb_each(e.headers) h" \
	"             UNION ALL" \
	"             SELECT CASE e.auth ->> 'type'" \
	"                    WHEN 'bearer' THEN 'Authorization: Bearer ' || (e.auth ->> 'token')" \
	"                    WHEN 'basic' THEN 'Authorization: Basic ' || pg_catalog.translate(pg_catalog.encode(" \
	"                         pg_catalog.convert_to((e.auth ->> 'username') || ':' || (e.auth ->> 'password'), 'UTF8')," \
	"                         'base64'), E'\\n', '')" \
	"                    ELSE (e.auth ->> 'header') || ': ' || (e.auth ->> 'key') END" \
	"              WHERE e.auth IS NOT NULL)," \
	"       (extract(epoch FROM e.timeout) * 1000)::int8," \
	"       coalesce((SELECT pg_catalog.array_agg((extract(epoch FROM x) * 1000)::int8 ORDER BY o)" \
	"                   FROM pg_catalog.unnest(e.retry_schedule) WITH ORDINALITY AS s(x, o)), '{}')," \
	"       e.format, coalesce(e.rate_limit, 0), e.ordered," \
	"       e.state, e.consecutive_failures, e.failing_since, e.circuit_cooldown," \
	"       coalesce(e.source, pg_catalog.current_database())," \
	"       e.batch_items = 'data', coalesce(e.retry_jitter, -1)," \
	"       e.format = 'raw' AND EXISTS (" \
	"         SELECT FROM pg_catalog.jsonb_each(e.headers) h" \
	"          WHERE pg_catalog.lower(h.key) = 'content-type'" \
	"            AND pg_catalog.lower(CASE WHEN pg_catalog.jsonb_typeof(h.value) = 'object'" \
	"                                      THEN h.value ->> 'value' ELSE h.value #>> '{}' END)" \
	"                !~ '^[^/]+/([^;]*[+])?json[[:space:]]*(;|$)')" \
	"  FROM %1$s.webhook_endpoints e"

extern void endpoint_read(Endpoint *ep, HeapTuple tup, TupleDesc desc);
extern PayloadFormat format_of(const char *name);

/*
 * endpoint.c: the body of one request, in its endpoint's format: an event
 * envelope {"type","timestamp","data"}, the data alone (raw), or a batch
 * {"events":[...],"deliveredAt","source"} whose items are envelopes with
 * an "id" or, with batch_items = 'data', the events' data as published.
 * Raw data whose endpoint sets a Content-Type other than JSON (form fields,
 * plain text) is sent as the text of a JSON string, unquoted.
 * One builder for the worker and webhook_test.
 */
typedef struct BodyShape
{
	PayloadFormat format;
	bool		batch_data;
	bool		text_body;		/* raw: a JSON string is sent as its text */
	const char *source;			/* batch envelope's "source" */
} BodyShape;

extern void message_begin(StringInfo buf, const BodyShape *shape);
extern void message_append_event(StringInfo buf, const BodyShape *shape, bool first,
								 const char *msg_id, const char *type, const char *ts,
								 const char *data);
extern void message_end(StringInfo buf, const BodyShape *shape, const char *delivered_at);
extern bool endpoint_headers(Endpoint *ep, const char *msg_id, int64 ts, const char *body,
							 size_t bodylen, struct curl_slist **list);

#endif							/* WEBHOOK_ENDPOINT_H */
