/*-------------------------------------------------------------------------
 * endpoint.c
 *	  The endpoint model: its settings read from a row of ENDPOINT_SELECT
 *	  (for the worker's cache and for webhook_test alike), its state, and
 *	  one request to it: the body in its format and its headers (webhook-id,
 *	  timestamp, the signature of its scheme with every still-valid old
 *	  secret, and its own headers and auth).  The worker and webhook_test
 *	  build and sign requests through here, so a test request is exactly a
 *	  delivery.
 *
 * endpoint_read runs in a transaction with SPI connected; the rest runs
 * anywhere outside libcurl callbacks.  Everything allocates in the current
 * memory context and ERRORs only on out-of-memory (and endpoint_state_of
 * on a state no CHECK constraint allows).
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "endpoint.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

/*
 * Builds the request headers for a message to ep into *list (a libcurl
 * list the caller frees).  Returns false, with *list NULL, if the endpoint
 * has no usable secret, or signing or libcurl failed.
 */
bool
endpoint_headers(Endpoint *ep, const char *msg_id, int64 ts, const char *body,
				 size_t bodylen, struct curl_slist **list)
{
	SignKey		keys[MAX_SIGN_KEYS];
	int			nkeys = 0;
	TimestampTz now = GetCurrentTimestamp();
	StringInfoData sig;
	bool		ok = true;

	/* old secrets sign only until they expire */
	for (int i = 0; i < ep->nkeys; i++)
		if (ep->keys[i].expires == 0 || ep->keys[i].expires > now)
			keys[nkeys++] = ep->keys[i];

	initStringInfo(&sig);
	if (ep->signing == SIGN_STANDARD || ep->signing == SIGN_ED25519)
		appendStringInfoString(&sig, "webhook-signature: ");
	else if (ep->signing == SIGN_HEX || ep->signing == SIGN_TIMESTAMPED)
		appendStringInfoString(&sig, ep->sig_header);
	if (ep->signing == SIGN_NONE)
		resetStringInfo(&sig);
	else					/* no usable secret: send nothing rather than unsigned */
		ok = nkeys > 0 && sign_message(ep->signing, keys, nkeys, ep->sig_prefix, msg_id, ts,
									   body, bodylen, &sig);
	*list = ok ? http_build_headers(msg_id, ts, sig.len > 0 ? sig.data : NULL,
									ep->headers, ep->nheaders) : NULL;
	pfree(sig.data);
	return *list != NULL;
}

/*
 * The text of json when it is a JSON string ("a=1&b=2" gives a=1&b=2),
 * else NULL.  In a transaction; json is valid JSON (it was stored as json).
 */
static char *
json_string_text(const char *json)
{
	const char *p = json;
	Jsonb	   *jb;
	JsonbValue	v;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '"')
		return NULL;			/* an object, an array, a number ... */
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	if (!JB_ROOT_IS_SCALAR(jb) || !JsonbExtractScalar(&jb->root, &v) || v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* Starts a body: the batch envelope's head, or nothing. */
void
message_begin(StringInfo buf, const BodyShape *shape)
{
	if (shape->format == FORMAT_BATCH)
		appendStringInfoString(buf, "{\"events\":[");
}

/*
 * Appends one event: msg_id is its webhook-id (a batch item's "id"), ts its
 * occurred_at in ISO 8601, data its JSON text as stored (sent byte for
 * byte); first says whether it is the first item of a batch.
 */
void
message_append_event(StringInfo buf, const BodyShape *shape, bool first, const char *msg_id,
					 const char *type, const char *ts, const char *data)
{
	switch (shape->format)
	{
		case FORMAT_RAW:
			{
				char	   *text = shape->text_body ? json_string_text(data) : NULL;

				appendStringInfoString(buf, text ? text : data);
				return;
			}
		case FORMAT_BATCH:
			if (!first)
				appendStringInfoChar(buf, ',');
			if (shape->batch_data)
			{
				appendStringInfoString(buf, data);
				return;
			}
			appendStringInfo(buf, "{\"id\":\"%s\",", msg_id);
			break;
		case FORMAT_STANDARD:
			appendStringInfoChar(buf, '{');
			break;
	}
	appendStringInfoString(buf, "\"type\":");
	escape_json(buf, type);
	appendStringInfo(buf, ",\"timestamp\":\"%s\",\"data\":%s}", ts, data);
}

/* Ends a body: the batch envelope's tail, with when it is sent and its source. */
void
message_end(StringInfo buf, const BodyShape *shape, const char *delivered_at)
{
	if (shape->format != FORMAT_BATCH)
		return;
	appendStringInfo(buf, "],\"deliveredAt\":\"%s\",\"source\":", delivered_at);
	escape_json(buf, shape->source);
	appendStringInfoChar(buf, '}');
}

/* The name the table uses for an EndpointState. */
const char *
endpoint_state_name(EndpointState state)
{
	switch (state)
	{
		case EP_ACTIVE:
			return "active";
		case EP_DISABLED:
			return "disabled";
		case EP_PAUSED:
			return "paused";
		case EP_CIRCUIT_OPEN:
			return "circuit_open";
	}
	elog(ERROR, "webhook: unknown endpoint state %d", (int) state);
	return NULL;				/* keep compiler quiet */
}

/* The state called name (a CHECK constraint keeps it one of these). */
EndpointState
endpoint_state_of(const char *name)
{
	for (int s = EP_ACTIVE; s <= EP_CIRCUIT_OPEN; s++)
		if (strcmp(name, endpoint_state_name((EndpointState) s)) == 0)
			return (EndpointState) s;
	elog(ERROR, "webhook: unknown endpoint state \"%s\"", name);
	return EP_ACTIVE;			/* keep compiler quiet */
}

/* The format called name (a CHECK constraint keeps it one of these). */
PayloadFormat
format_of(const char *name)
{
	return strcmp(name, "batch") == 0 ? FORMAT_BATCH :
		strcmp(name, "raw") == 0 ? FORMAT_RAW : FORMAT_STANDARD;
}

/* Reads an int8[] or text[] column into a palloc'd C array. */
static int
get_array(HeapTuple tup, TupleDesc desc, int col, Oid elemtype, Datum **elems)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (isnull)
		return 0;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(DatumGetArrayTypeP(d), elemtype, typlen, typbyval, typalign,
					  elems, &nulls, &n);
	return n;
}

/*
 * Fills ep from a row of ENDPOINT_SELECT, allocating in the current memory
 * context (signing keys are freed with it).  A secret that cannot be used
 * leaves nkeys 0; the URL is checked against the current rules.
 */
void
endpoint_read(Endpoint *ep, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum	   *elems;
	Datum	   *expiries;
	int			n;

	ep->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	ep->url = SPI_getvalue(tup, desc, 2);
	/* the rules may have changed since it was stored (or bypassed) */
	if (destination_check_url(ep->url, &ep->url_error) == DEST_OK)
		ep->url_error = NULL;
	ep->signing = sign_scheme(SPI_getvalue(tup, desc, 3));
	n = get_array(tup, desc, 4, TEXTOID, &elems);
	(void) get_array(tup, desc, 5, TIMESTAMPTZOID, &expiries);
	ep->nkeys = 0;
	for (int k = 0; k < n && k < MAX_SIGN_KEYS && ep->signing >= 0; k++)
	{
		SignKey    *key = &ep->keys[ep->nkeys];

		if (!sign_prepare_key(ep->signing, TextDatumGetCString(elems[k]), key))
		{
			if (k == 0)
				break;			/* the current secret is unusable: send nothing */
			continue;
		}
		key->expires = k == 0 ? 0 : DatumGetTimestampTz(expiries[k]);
		ep->nkeys++;
	}
	ep->sig_header = psprintf("%s: ", SPI_getvalue(tup, desc, 6));
	ep->sig_prefix = SPI_getvalue(tup, desc, 7);
	n = get_array(tup, desc, 8, TEXTOID, &elems);
	ep->headers = palloc(sizeof(char *) * (n + 1));
	for (int k = 0; k < n; k++)
		ep->headers[k] = TextDatumGetCString(elems[k]);
	ep->nheaders = n;
	ep->timeout_ms = (long) DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	n = get_array(tup, desc, 10, INT8OID, &elems);
	ep->schedule_ms = palloc(sizeof(int64) * (n + 1));
	for (int k = 0; k < n; k++)
		ep->schedule_ms[k] = DatumGetInt64(elems[k]);
	ep->nschedule = n;
	ep->format = format_of(SPI_getvalue(tup, desc, 11));
	ep->rate_limit = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull));
	ep->ordered = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
	ep->state = endpoint_state_of(SPI_getvalue(tup, desc, 14));
	ep->consecutive_failures = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
	ep->failing_since = DatumGetTimestampTz(SPI_getbinval(tup, desc, 16, &isnull));
	if (isnull)
		ep->failing_since = 0;
	ep->circuit_cooldown = DatumGetInt32(SPI_getbinval(tup, desc, 17, &isnull));
	ep->source = SPI_getvalue(tup, desc, 18);
	ep->batch_data = DatumGetBool(SPI_getbinval(tup, desc, 19, &isnull));
	ep->retry_jitter = DatumGetFloat8(SPI_getbinval(tup, desc, 20, &isnull));
	ep->text_body = DatumGetBool(SPI_getbinval(tup, desc, 21, &isnull));
	ep->dirty = false;
}
