/*-------------------------------------------------------------------------
 * api.c
 *	  SQL-callable C functions: validation helpers, webhook_sign,
 *	  webhook_generate_secret and the synchronous webhook_test.
 *
 * webhook_test runs in the calling backend, inside its transaction; it
 * honours the endpoint's signing, headers, timeout and destination rules,
 * can be cancelled, and records its request in webhook_attempts.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <openssl/rand.h>
#include <time.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "http.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(webhook_valid_event_type);
PG_FUNCTION_INFO_V1(webhook_valid_secret);
PG_FUNCTION_INFO_V1(webhook_check_url);
PG_FUNCTION_INFO_V1(webhook_generate_secret);
PG_FUNCTION_INFO_V1(webhook_sign);
PG_FUNCTION_INFO_V1(webhook_test);

/*
 * Is s an event type: dot-separated non-empty segments of [A-Za-z0-9_-],
 * at most 255 bytes?  With pattern, "*" and "<type>.*" are accepted too.
 */
static bool
valid_event_type(const char *s, bool pattern)
{
	size_t		len = strlen(s);
	bool		seg_empty = true;

	if (len == 0 || len > 255)
		return false;
	if (pattern)
	{
		if (strcmp(s, "*") == 0)
			return true;
		if (len > 2 && strcmp(s + len - 2, ".*") == 0)
			len -= 2;
	}
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '.')
		{
			if (seg_empty)
				return false;
			seg_empty = true;
		}
		else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				 (c >= '0' && c <= '9') || c == '_' || c == '-')
			seg_empty = false;
		else
			return false;
	}
	return !seg_empty;
}

Datum
webhook_valid_event_type(PG_FUNCTION_ARGS)
{
	char	   *s = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(valid_event_type(s, PG_GETARG_BOOL(1)));
}

Datum
webhook_valid_secret(PG_FUNCTION_ARGS)
{
	unsigned char key[WEBHOOK_MAX_KEY_LEN];

	PG_RETURN_BOOL(sign_decode_secret(text_to_cstring(PG_GETARG_TEXT_PP(0)), key) > 0);
}

/* Raises the error matching a failed destination check. */
static void
report_destination(DestCheck rc, const char *detail)
{
	switch (rc)
	{
		case DEST_OK:
			return;
		case DEST_BAD_URL:
		case DEST_BAD_SCHEME:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid endpoint URL"),
					 errdetail("%s", detail)));
			break;
		case DEST_HTTP_NOT_ALLOWED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("endpoint URL must use https"),
					 errdetail("%s", detail),
					 errhint("A superuser can set webhook.allow_http = on for development.")));
			break;
		case DEST_CREDENTIALS:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("endpoint URL must not contain credentials"),
					 errdetail("%s", detail)));
			break;
		case DEST_BLOCKED_ADDRESS:
		case DEST_BLOCKED_NAME:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("endpoint destination is not allowed"),
					 errdetail("%s", detail),
					 errhint("A superuser can list trusted networks in webhook.allowed_networks.")));
			break;
	}
}

Datum
webhook_check_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *detail;
	DestCheck	rc;

	if (strlen(url) > 2048)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint URL is longer than 2048 characters")));
	for (const char *p = url; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid endpoint URL"),
					 errdetail("The URL contains whitespace or control characters.")));
	rc = destination_check_url(url, &detail);
	report_destination(rc, detail);
	PG_RETURN_VOID();
}

Datum
webhook_generate_secret(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(sign_generate_secret()));
}

Datum
webhook_sign(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	unsigned char key[WEBHOOK_MAX_KEY_LEN];
	int			keylen = sign_decode_secret(secret, key);
	char		sig[SIGN_STANDARD_LEN];

	if (keylen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid secret"),
				 errdetail("A secret is \"whsec_\" followed by the base64 encoding of 24 to 64 bytes.")));
	if (strlen(msg_id) > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message id is longer than 100 characters")));
	sign_standard(key, keylen, msg_id, ts, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), sig);
	PG_RETURN_TEXT_P(cstring_to_text(sig));
}

/* ISO 8601 UTC with microseconds, as the worker writes event timestamps. */
static char *
iso_now(void)
{
	return text_to_cstring(DatumGetTextPP(DirectFunctionCall2(timestamptz_to_char,
															  TimestampTzGetDatum(GetCurrentTimestamp()),
															  CStringGetTextDatum("YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\""))));
}

Datum
webhook_test(PG_FUNCTION_ARGS)
{
	int64		endpoint_id;
	const char *event_type;
	char	   *data;
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	const char *schema = quote_identifier(get_namespace_name(nsp));
	TupleDesc	rdesc;
	char	   *url;
	char	   *secret;
	char	  **headers;
	int			nheaders;
	long		timeout_ms;
	unsigned char key[WEBHOOK_MAX_KEY_LEN];
	int			keylen;
	char		msg_id[40];
	unsigned char rnd[8];
	char		sig[SIGN_STANDARD_LEN];
	int64		ts = (int64) time(NULL);
	StringInfoData body;
	HttpRequest req;
	HttpResult	res;
	TimestampTz started;
	char	   *detail;
	DestCheck	dc;
	char	   *response = NULL;
	Datum		values[5];
	bool		nulls[5] = {0};
	int			rc;
	MemoryContext callercxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("endpoint_id must not be NULL")));
	endpoint_id = PG_GETARG_INT64(0);
	event_type = PG_ARGISNULL(1) ? "webhook.test" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!valid_event_type(event_type, false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event type \"%s\"", event_type)));
	data = PG_ARGISNULL(2) ? psprintf("{\"test\":true,\"endpoint_id\":" INT64_FORMAT "}", endpoint_id)
		: DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "webhook_test: return type must be a row type");

	/* Read the endpoint. */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_test: SPI_connect failed");
	rc = SPI_execute_with_args(psprintf("SELECT e.url, e.secret,"
										" coalesce((SELECT array_agg(h.key || ': ' || h.value)"
										"             FROM pg_catalog.jsonb_each_text(e.headers) h), '{}'),"
										" (extract(epoch FROM e.timeout) * 1000)::int8"
										" FROM %s.webhook_endpoints e WHERE e.id = $1", schema),
							   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(endpoint_id)},
							   NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "webhook_test: reading the endpoint failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("endpoint " INT64_FORMAT " does not exist", endpoint_id)));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *elems;
		bool	   *enulls;

		url = SPI_getvalue(tup, desc, 1);
		secret = SPI_getvalue(tup, desc, 2);
		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &nheaders);
		headers = palloc(sizeof(char *) * (nheaders + 1));
		for (int i = 0; i < nheaders; i++)
			headers[i] = TextDatumGetCString(elems[i]);
		timeout_ms = (long) DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	}

	/* Build and sign the message. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		elog(ERROR, "webhook_test: no random bytes");
	snprintf(msg_id, sizeof(msg_id), "msg_test_%02x%02x%02x%02x%02x%02x%02x%02x",
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"type\":");
	escape_json(&body, event_type);
	appendStringInfo(&body, ",\"timestamp\":\"%s\",\"data\":%s}", iso_now(), data);
	keylen = sign_decode_secret(secret, key);
	if (keylen > 0)
		sign_standard(key, keylen, msg_id, ts, body.data, body.len, sig);
	else
		sig[0] = '\0';

	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	started = GetCurrentTimestamp();
	dc = destination_check_url(url, &detail);
	if (dc != DEST_OK)
	{
		res.ok = false;
		res.error = detail;
	}
	else
	{
		struct curl_slist *hl;

		http_global_init();
		hl = http_build_headers(msg_id, ts, sig, headers, nheaders);
		if (hl == NULL)
			elog(ERROR, "out of memory");
		PG_TRY();
		{
			CURLcode	code;

			http_request_setup(&req, url, body.data, body.len, hl, timeout_ms,
							   palloc(webhook_response_limit + 1), webhook_response_limit);
			code = http_perform_sync(&req);
			http_request_result(&req, code, &res);
		}
		PG_FINALLY();
		{
			curl_slist_free_all(hl);
			if (req.easy)
				curl_easy_cleanup(req.easy);
		}
		PG_END_TRY();
		response = http_response_text(&req);
	}

	rc = SPI_execute_with_args(psprintf("INSERT INTO %s.webhook_attempts"
										" (endpoint_id, delivery_id, attempt, started_at, duration_ms,"
										"  status_code, ok, error, response_body)"
										" VALUES ($1, NULL, 1, $2, $3, nullif($4, 0), $5, $6, $7)", schema),
							   7,
							   (Oid[]) {INT8OID, TIMESTAMPTZOID, FLOAT8OID, INT4OID, BOOLOID, TEXTOID, TEXTOID},
							   (Datum[]) {Int64GetDatum(endpoint_id), TimestampTzGetDatum(started),
								   Float8GetDatum(res.duration_ms), Int32GetDatum(res.status),
								   BoolGetDatum(res.ok),
								   res.error ? CStringGetTextDatum(res.error) : (Datum) 0,
							   response ? CStringGetTextDatum(response) : (Datum) 0},
							   (const char[]) {' ', ' ', ' ', ' ', ' ', res.error ? ' ' : 'n', response ? ' ' : 'n'},
							   false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "webhook_test: recording the attempt failed");
	if (response)
		response = MemoryContextStrdup(callercxt, response);
	if (res.error)
		res.error = MemoryContextStrdup(callercxt, res.error);
	SPI_finish();

	values[0] = BoolGetDatum(res.ok);
	values[1] = Int32GetDatum(res.status);
	nulls[1] = res.status == 0;
	values[2] = Float8GetDatum(res.duration_ms);
	if (response)
		values[3] = CStringGetTextDatum(response);
	else
		nulls[3] = true;
	if (res.error)
		values[4] = CStringGetTextDatum(res.error);
	else
		nulls[4] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), values, nulls)));
}
