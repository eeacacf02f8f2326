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
#include "queue.h"
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
PG_FUNCTION_INFO_V1(webhook_verify);
PG_FUNCTION_INFO_V1(webhook_derive_public_key);

Datum
webhook_valid_event_type(PG_FUNCTION_ARGS)
{
	char	   *s = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(valid_event_type(s, PG_GETARG_BOOL(1)));
}

/* The scheme named by a signing argument; ERRORs on an unknown one. */
static int
scheme_arg(text *name)
{
	char	   *s = text_to_cstring(name);
	int			scheme = sign_scheme(s);

	if (scheme < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid signing scheme \"%s\"", s),
				 errdetail("Schemes are standard, hmac-sha256-hex, timestamped-hex, standard-ed25519 and none.")));
	return scheme;
}

Datum
webhook_valid_secret(PG_FUNCTION_ARGS)
{
	int			scheme = sign_scheme(text_to_cstring(PG_GETARG_TEXT_PP(1)));

	PG_RETURN_BOOL(scheme >= 0 && sign_valid_secret(text_to_cstring(PG_GETARG_TEXT_PP(0)), scheme));
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
	PG_RETURN_TEXT_P(cstring_to_text(sign_generate_secret(scheme_arg(PG_GETARG_TEXT_PP(0)))));
}

Datum
webhook_sign(PG_FUNCTION_ARGS)
{
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	int			scheme = strncmp(secret, "whsk_", 5) == 0 ? SIGN_ED25519 : SIGN_STANDARD;
	SignKey		key;
	StringInfoData sig;

	if (strlen(msg_id) > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message id is longer than 100 characters")));
	if (!sign_prepare_key(scheme, secret, &key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid secret"),
				 errdetail("A secret is \"whsec_\" followed by the base64 encoding of 24 to 64 bytes, or \"whsk_\" followed by an ed25519 key.")));
	initStringInfo(&sig);
	if (!sign_message(scheme, &key, 1, NULL, msg_id, ts, VARDATA_ANY(body),
					  VARSIZE_ANY_EXHDR(body), &sig))
		elog(ERROR, "webhook_sign: signing failed");
	PG_RETURN_TEXT_P(cstring_to_text(sig.data));
}

/*
 * webhook_verify: a Standard Webhooks signature check for a database that
 * receives webhooks.  Any NULL argument, a stale or future timestamp, or
 * no matching signature gives false (never NULL, so that NOT ... rejects).
 */
Datum
webhook_verify(PG_FUNCTION_ARGS)
{
	text	   *body;
	Interval   *tolerance;
	int64		ts;
	double		tol_s;
	double		age_s;

	for (int i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_BOOL(false);
	ts = PG_GETARG_INT64(2);
	body = PG_GETARG_TEXT_PP(3);
	tolerance = PG_GETARG_INTERVAL_P(5);
	tol_s = tolerance->time / (double) USECS_PER_SEC +
		(double) tolerance->day * SECS_PER_DAY + (double) tolerance->month * DAYS_PER_MONTH * SECS_PER_DAY;
	if (tol_s < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tolerance must not be negative")));
	/* the timestamp is whole seconds; compare with the exact current time */
	age_s = GetCurrentTimestamp() / (double) USECS_PER_SEC +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * (double) SECS_PER_DAY - (double) ts;
	if (age_s > tol_s || -age_s > tol_s)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(sign_verify(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							   text_to_cstring(PG_GETARG_TEXT_PP(1)), ts,
							   VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body),
							   text_to_cstring(PG_GETARG_TEXT_PP(4))));
}

Datum
webhook_derive_public_key(PG_FUNCTION_ARGS)
{
	char	   *pub = sign_public_key(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (pub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid ed25519 secret"),
				 errdetail("An ed25519 secret is \"whsk_\" followed by the base64 encoding of a 32-byte seed or a 64-byte key.")));
	PG_RETURN_TEXT_P(cstring_to_text(pub));
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
	char	   *data = NULL;
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	const char *schema = quote_identifier(get_namespace_name(nsp));
	TupleDesc	rdesc;
	Endpoint	ep;
	char		msg_id[40];
	unsigned char rnd[8];
	int64		ts = (int64) time(NULL);
	StringInfoData body;
	HttpRequest req;
	HttpResult	res;
	TimestampTz started;
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
	if (!PG_ARGISNULL(2))
		data = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2)));
	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "webhook_test: return type must be a row type");

	/* Read the endpoint as the worker does. */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_test: SPI_connect failed");
	rc = SPI_execute_with_args(psprintf(ENDPOINT_SELECT " WHERE e.id = $1", schema),
							   1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(endpoint_id)},
							   NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "webhook_test: reading the endpoint failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("endpoint " INT64_FORMAT " does not exist", endpoint_id)));
	memset(&ep, 0, sizeof(ep));
	endpoint_read(&ep, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);

	/* No data given: the event type's example from the catalog, or a test object. */
	if (data == NULL)
	{
		rc = SPI_execute_with_args(psprintf("SELECT t.example::text FROM %s.webhook_event_types t"
											" WHERE t.name = $1", schema),
								   1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(event_type)},
								   NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "webhook_test: reading the event type failed");
		if (SPI_processed == 1)
			data = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		if (data == NULL)
			data = psprintf("{\"test\":true,\"endpoint_id\":" INT64_FORMAT "}", endpoint_id);
	}

	/* Build the message in the endpoint's format. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		elog(ERROR, "webhook_test: no random bytes");
	snprintf(msg_id, sizeof(msg_id), "msg_test_%02x%02x%02x%02x%02x%02x%02x%02x",
			 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	initStringInfo(&body);
	{
		BodyShape	shape = {ep.format, ep.batch_data, ep.text_body, ep.source};
		char	   *now = iso_now();

		message_begin(&body, &shape);
		message_append_event(&body, &shape, true, msg_id, event_type, now, data);
		message_end(&body, &shape, now);
	}

	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	started = GetCurrentTimestamp();
	if (ep.url_error != NULL)
	{
		res.ok = false;
		res.error = ep.url_error;
	}
	else
	{
		struct curl_slist *hl;

		http_global_init();
		if (!endpoint_headers(&ep, msg_id, ts, body.data, body.len, &hl))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not sign the test request"),
					 errdetail("The endpoint's secret cannot be used with its signing scheme."),
					 errhint("Set a new one with webhook_rotate_secret().")));
		PG_TRY();
		{
			CURLcode	code;

			http_request_setup(&req, ep.url, body.data, body.len, hl, ep.timeout_ms,
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
