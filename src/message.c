/*-------------------------------------------------------------------------
 * message.c
 *	  The headers of one request to an endpoint: webhook-id, timestamp,
 *	  the signature of its scheme (with every still-valid old secret), and
 *	  the endpoint's own headers and auth.  Shared by the worker and
 *	  webhook_test, so a test request is signed exactly as a delivery.
 *
 * Runs outside libcurl callbacks and outside transactions; allocates in
 * the current memory context; ERRORs only on out-of-memory.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "queue.h"
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
