/*-------------------------------------------------------------------------
 * message.c
 *	  One request to an endpoint: its body in the endpoint's format, and its
 *	  headers (webhook-id, timestamp, the signature of its scheme with every
 *	  still-valid old secret, and the endpoint's own headers and auth).
 *	  Shared by the worker and webhook_test, so a test request is built and
 *	  signed exactly as a delivery.
 *
 * Runs outside libcurl callbacks and outside transactions; allocates in
 * the current memory context; ERRORs only on out-of-memory.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "queue.h"
#include "utils/json.h"
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
			appendStringInfoString(buf, data);
			return;
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
