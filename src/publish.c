/*-------------------------------------------------------------------------
 * publish.c
 *	  webhook_publish() and webhook_publish_json(): an application's own
 *	  events, written in its transaction.
 *
 * Both are C functions that are not SECURITY DEFINER: the caller's role
 * (current_user at the call) is the namespace of its idempotency keys, and
 * a SECURITY DEFINER function could not see it.  EXECUTE on them is the
 * only gate; the rows are then written as the extension's owner (as a
 * SECURITY DEFINER function would, and as the capture trigger writes
 * without a permission check), so publishers need no rights on the tables.
 *
 * webhook_publish takes jsonb and stores its normalised text;
 * webhook_publish_json takes json and stores the text exactly as given,
 * sent byte for byte.  An idempotency key is scoped to the publishing role:
 * webhook_idempotency_keys holds (role, key) with a SHA-256 digest of the
 * event's type and data, so that a reuse is recognised (same type and data:
 * the first event's id) or refused (anything else: unique_violation, with
 * neither payload in the message).
 *
 * The statements are prepared once per backend and schema and kept; every
 * name in them is schema-qualified, and they run with the function's own
 * pinned search_path.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <openssl/evp.h>

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(webhook_publish);
PG_FUNCTION_INFO_V1(webhook_publish_json);

/* The kept statements, for the schema they were prepared in. */
static Oid	plans_nsp = InvalidOid;
static SPIPlanPtr plan_find_key = NULL;
static SPIPlanPtr plan_claim_key = NULL;
static SPIPlanPtr plan_insert = NULL;

/* Length of the digest that identifies a keyed event's type and data. */
#define DIGEST_LEN 32

static SPIPlanPtr
keep(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "webhook_publish: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "webhook_publish: SPI_keepplan failed");
	return plan;
}

/*
 * Prepares the statements for the extension in schema nsp, unless they
 * are already.  SPI must be connected.
 */
static void
prepare_plans(Oid nsp)
{
	const char *schema;
	char	   *seq;

	if (nsp == plans_nsp && plan_insert != NULL)
		return;
	if (plan_find_key)
		SPI_freeplan(plan_find_key);
	if (plan_claim_key)
		SPI_freeplan(plan_claim_key);
	if (plan_insert)
		SPI_freeplan(plan_insert);
	plan_find_key = plan_claim_key = plan_insert = NULL;
	plans_nsp = InvalidOid;

	schema = quote_identifier(get_namespace_name(nsp));
	/* the events' identity sequence, named once (it may be renamed) */
	if (SPI_execute_with_args("SELECT pg_catalog.pg_get_serial_sequence($1, 'id')", 1,
							  (Oid[]) {TEXTOID},
							  (Datum[]) {CStringGetTextDatum(psprintf("%s.webhook_events", schema))},
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1 ||
		(seq = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)) == NULL)
		elog(ERROR, "webhook_publish: the sequence of webhook_events is missing");
	seq = quote_literal_cstr(seq);

	plan_find_key = keep(psprintf("SELECT k.event_id, k.digest OPERATOR(pg_catalog.=) $3"
								  "  FROM %s.webhook_idempotency_keys k"
								  " WHERE k.publisher OPERATOR(pg_catalog.=) $1"
								  "   AND k.idempotency_key OPERATOR(pg_catalog.=) $2", schema),
						 3, (Oid[]) {NAMEOID, TEXTOID, BYTEAOID});
	/* the key first, with the id its event will have: a concurrent
	 * publisher of the same key waits here, and then finds it taken */
	plan_claim_key = keep(psprintf("INSERT INTO %s.webhook_idempotency_keys"
								   " (publisher, idempotency_key, event_id, digest)"
								   " VALUES ($1, $2, pg_catalog.nextval(%s::pg_catalog.regclass), $3)"
								   " ON CONFLICT DO NOTHING RETURNING event_id", schema, seq),
						  3, (Oid[]) {NAMEOID, TEXTOID, BYTEAOID});
	plan_insert = keep(psprintf("INSERT INTO %1$s.webhook_events (id, type, data, idempotency_key, ordering_key)"
								" VALUES (COALESCE($1, pg_catalog.nextval(%2$s::pg_catalog.regclass)),"
								"         $2, $3, $4, $5)"
								" RETURNING id", schema, seq),
					   5, (Oid[]) {INT8OID, TEXTOID, JSONOID, TEXTOID, TEXTOID});
	plans_nsp = nsp;
}

/* SHA-256 of type, a NUL, and data as jsonb writes it: how a reuse is recognised. */
static bytea *
event_digest(const char *type, const char *normalised)
{
	bytea	   *d = palloc(VARHDRSZ + DIGEST_LEN);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;

	if (ctx == NULL ||
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		EVP_DigestUpdate(ctx, type, strlen(type) + 1) != 1 ||
		EVP_DigestUpdate(ctx, normalised, strlen(normalised)) != 1 ||
		EVP_DigestFinal_ex(ctx, (unsigned char *) VARDATA(d), &len) != 1 ||
		len != DIGEST_LEN)
	{
		EVP_MD_CTX_free(ctx);
		elog(ERROR, "webhook_publish: SHA-256 failed");
	}
	EVP_MD_CTX_free(ctx);
	SET_VARSIZE(d, VARHDRSZ + DIGEST_LEN);
	return d;
}

/*
 * Looks the caller's key up: the first event's id when it was used with
 * the same type and data, an ERROR when with others, 0 when unused.
 */
static int64
find_key(Datum *args)
{
	bool		isnull;
	int			rc = SPI_execute_plan(plan_find_key, args, NULL, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "webhook_publish: reading the idempotency key failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return 0;
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("idempotency key already used for another event"),
				 errdetail("This role published an event of another type or with other data under this key."),
				 errhint("Use a new key for a new event; a key is reused only to publish the same event again.")));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The body of both functions: data is the JSON text to store, normalised
 * its jsonb text (needed only for a keyed event: NULL otherwise).
 */
static Datum
publish(FunctionCallInfo fcinfo, char *data, const char *normalised)
{
	char	   *type;
	text	   *key = PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2);
	text	   *ordering = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	Oid			caller = GetUserId();
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	HeapTuple	proc;
	Oid			nsp;
	int64		id = 0;
	Datum		keyargs[3];
	size_t		datalen = strlen(data);
	int			rc;
	bool		isnull;

	type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strlen(type) > 255 || !valid_event_type(type, false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event type \"%.80s\"", type),
				 errdetail("An event type is up to 255 characters of dot-separated segments of letters, digits, \"_\" and \"-\".")));
	if (key != NULL && (VARSIZE_ANY_EXHDR(key) < 1 || pg_mbstrlen_with_len(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) > 255))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key must be 1 to 255 characters")));
	if (ordering != NULL && pg_mbstrlen_with_len(VARDATA_ANY(ordering), VARSIZE_ANY_EXHDR(ordering)) > 255)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ordering_key is longer than 255 characters")));
	if (datalen > (size_t) webhook_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event data is larger than webhook.max_payload_size"),
				 errdetail("The data is %zu bytes; the limit is %s.", datalen,
						   GetConfigOptionByName("webhook.max_payload_size", NULL, false))));

	/* the schema and owner of the called function: the extension's */
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "webhook_publish: cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	nsp = ((Form_pg_proc) GETSTRUCT(proc))->pronamespace;
	owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);

	if (key != NULL)
	{
		keyargs[0] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(caller, false)));
		keyargs[1] = PointerGetDatum(key);
		keyargs[2] = PointerGetDatum(event_digest(type, normalised));
	}

	/* as the owner, like SECURITY DEFINER; an ERROR restores the caller */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_publish: SPI_connect failed");
	prepare_plans(nsp);

	if (key != NULL)
	{
		id = find_key(keyargs);
		if (id == 0)
		{
			rc = SPI_execute_plan(plan_claim_key, keyargs, NULL, false, 0);
			if (rc != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "webhook_publish: recording the idempotency key failed: %s",
					 SPI_result_code_string(rc));
			if (SPI_processed == 1)
				id = -DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			else
				id = find_key(keyargs); /* taken meanwhile by a commit */
		}
	}
	/* no key, or a new one (its event's id, negated): write the event */
	if (id <= 0)
	{
		rc = SPI_execute_plan(plan_insert,
							  (Datum[]) {Int64GetDatum(-id), CStringGetTextDatum(type),
								  CStringGetTextDatum(data),
								  key ? PointerGetDatum(key) : (Datum) 0,
							  ordering ? PointerGetDatum(ordering) : (Datum) 0},
							  (const char[]) {id == 0 ? 'n' : ' ', ' ', ' ', key ? ' ' : 'n',
							  ordering ? ' ' : 'n'},
							  false, 0);
		if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
			elog(ERROR, "webhook_publish: writing the event failed: %s", SPI_result_code_string(rc));
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		webhook_arm_wake(false, false);
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	PG_RETURN_INT64(id);
}

/* SQL: webhook_publish(event_type text, data jsonb, idempotency_key, ordering_key) */
Datum
webhook_publish(PG_FUNCTION_ARGS)
{
	char	   *data;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type and data must not be NULL")));
	data = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(1)));
	return publish(fcinfo, data, data);
}

/* SQL: webhook_publish_json(event_type text, data json, ...): the text as given. */
Datum
webhook_publish_json(PG_FUNCTION_ARGS)
{
	char	   *data;
	Datum		jb;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type and data must not be NULL")));
	data = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/*
	 * json's input function has checked the syntax, and the text is stored
	 * as it is.  jsonb's refuses what it cannot hold (\u0000, an escape the
	 * database encoding cannot represent), which the fan-out's filter match
	 * (data::jsonb) could not read; its text is what a key's digest covers.
	 */
	jb = DirectFunctionCall1(jsonb_in, CStringGetDatum(data));
	return publish(fcinfo, data,
				   PG_ARGISNULL(2) ? NULL : DatumGetCString(DirectFunctionCall1(jsonb_out, jb)));
}
