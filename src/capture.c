/*-------------------------------------------------------------------------
 * capture.c
 *	  webhook_capture(): the row trigger installed by webhook_watch().
 *
 * For each inserted, updated or deleted row it writes one event into
 * webhook_events in the writer's own transaction, and arms the commit-time
 * wake-up of the worker.  Event data:
 *	  {"schema","table","op","new"}           on INSERT
 *	  {"schema","table","op","new","old","changed"} on UPDATE
 *	  {"schema","table","op","old"}           on DELETE
 * Trigger arguments: event prefix, mode ("all", "include", "exclude") and
 * the column names the mode applies to.  Excluded columns never leave the
 * database; an UPDATE that changes no included column writes nothing.
 *
 * Events are not inserted row by row: executing an INSERT per row costs an
 * executor start-up each (constraints, indexes), several times the cost of
 * the row itself.  The row trigger appends type and data to a buffer and
 * the statement trigger webhook_capture_flush(), installed beside it, writes
 * the whole statement's events with one INSERT.  The buffer never outlives
 * the statement that filled it: it is flushed when large, at the end of the
 * statement, and (a safety net) before commit; it is discarded with an
 * aborted statement, subtransaction or transaction.
 *
 * Both functions are SECURITY DEFINER (writers need no rights on the
 * webhook tables) and every name they use is schema-qualified with the
 * schema the functions live in, so no search_path can redirect them.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(webhook_capture);
PG_FUNCTION_INFO_V1(webhook_capture_flush);

/* Flush from the row trigger once this much is buffered. */
#define FLUSH_EVENTS 10000
#define FLUSH_BYTES (16 * 1024 * 1024)

static SPIPlanPtr insert_plan = NULL;
static Oid	insert_plan_nsp = InvalidOid;

/* Events of the current statement not yet inserted. */
static MemoryContext buf_cxt = NULL;	/* child of TopTransactionContext */
static ArrayBuildState *buf_types = NULL;
static ArrayBuildState *buf_data = NULL;
static int	buf_events = 0;
static Size buf_bytes = 0;
static Oid	buf_nsp = InvalidOid;
static bool callbacks_registered = false;

/* Appends one column value as JSON. */
static void
append_value(StringInfo buf, Datum value, bool isnull, Oid typid)
{
	Oid			base;
	Oid			outfunc;
	bool		varlena;
	char	   *s;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	base = getBaseType(typid);
	switch (base)
	{
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			getTypeOutputInfo(base, &outfunc, &varlena);
			s = OidOutputFunctionCall(outfunc, value);
			/* NaN and infinities are not JSON numbers */
			if (isdigit((unsigned char) s[0]) || (s[0] == '-' && isdigit((unsigned char) s[1])))
				appendStringInfoString(buf, s);
			else
				escape_json(buf, s);
			pfree(s);
			return;
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			{
				/* ISO 8601 whatever the session's DateStyle, as to_json does */
				char		dt[MAXDATELEN + 1];

				appendStringInfoChar(buf, '"');
				appendStringInfoString(buf, JsonEncodeDateTime(dt, value, base, NULL));
				appendStringInfoChar(buf, '"');
				return;
			}
		case JSONOID:
		case JSONBOID:
			getTypeOutputInfo(base, &outfunc, &varlena);
			appendStringInfoString(buf, OidOutputFunctionCall(outfunc, value));
			return;
		default:
			break;
	}
	if (type_is_array(base))
	{
		appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(array_to_json, value)));
		return;
	}
	if (type_is_rowtype(base))
	{
		appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(row_to_json, value)));
		return;
	}
	getTypeOutputInfo(typid, &outfunc, &varlena);
	escape_json(buf, OidOutputFunctionCall(outfunc, value));
}

/* Appends "key":{col:value,...} for the included columns of tuple. */
static void
append_row(StringInfo buf, const char *key, HeapTuple tuple, TupleDesc desc, const bool *included)
{
	bool		first = true;

	appendStringInfo(buf, ",\"%s\":{", key);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		isnull;
		Datum		value;

		if (!included[i])
			continue;
		value = heap_getattr(tuple, i + 1, desc, &isnull);
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		escape_json(buf, NameStr(att->attname));
		appendStringInfoChar(buf, ':');
		append_value(buf, value, isnull, att->atttypid);
	}
	appendStringInfoChar(buf, '}');
}

/* Prepares (once per schema) the INSERT into webhook_events. */
static void
prepare_insert(Oid nsp)
{
	char	   *sql;
	SPIPlanPtr	plan;

	if (insert_plan != NULL && insert_plan_nsp == nsp)
		return;
	if (insert_plan != NULL)
		SPI_freeplan(insert_plan);
	insert_plan = NULL;
	sql = psprintf("INSERT INTO %s.webhook_events (type, data)"
				   " SELECT u.t, u.d::pg_catalog.jsonb"
				   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
				   "   WITH ORDINALITY AS u(t, d, n) ORDER BY u.n",
				   quote_identifier(get_namespace_name(nsp)));
	plan = SPI_prepare(sql, 2, (Oid[]) {TEXTARRAYOID, TEXTARRAYOID});
	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "webhook_capture: could not prepare insert: %s",
			 SPI_result_code_string(SPI_result));
	insert_plan = plan;
	insert_plan_nsp = nsp;
}

/* Forgets the buffered events (their memory goes with the transaction). */
static void
discard_buffer(void)
{
	buf_cxt = NULL;
	buf_types = buf_data = NULL;
	buf_events = 0;
	buf_bytes = 0;
}

/* Inserts the buffered events with one statement and empties the buffer. */
static void
flush_buffer(void)
{
	Datum		args[2];
	int			rc;

	if (buf_events == 0)
		return;
	args[0] = makeArrayResult(buf_types, CurrentMemoryContext);
	args[1] = makeArrayResult(buf_data, CurrentMemoryContext);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_capture: SPI_connect failed");
	prepare_insert(buf_nsp);
	rc = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "webhook_capture: insert failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	MemoryContextDelete(buf_cxt);
	discard_buffer();
	webhook_arm_wake(false);
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			/* safety net: a statement trigger should have flushed already */
			flush_buffer();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			discard_buffer();	/* TopTransactionContext is gone or going */
			break;
		default:
			break;
	}
}

static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	/* the buffer holds only the current statement's events: all aborted */
	if (event == SUBXACT_EVENT_ABORT_SUB && buf_cxt != NULL)
	{
		MemoryContextDelete(buf_cxt);
		discard_buffer();
	}
}

/* Appends one event to the statement's buffer. */
static void
buffer_event(Oid nsp, const char *type, const char *data, int len)
{
	MemoryContext old;

	if (!callbacks_registered)
	{
		RegisterXactCallback(capture_xact_callback, NULL);
		RegisterSubXactCallback(capture_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (buf_cxt != NULL && nsp != buf_nsp)
		flush_buffer();			/* another installation of the extension */
	if (buf_cxt == NULL)
		buf_cxt = AllocSetContextCreate(TopTransactionContext, "webhook capture buffer",
										ALLOCSET_DEFAULT_SIZES);
	buf_nsp = nsp;
	old = MemoryContextSwitchTo(buf_cxt);
	buf_types = accumArrayResult(buf_types, CStringGetTextDatum(type), false, TEXTOID, buf_cxt);
	buf_data = accumArrayResult(buf_data, PointerGetDatum(cstring_to_text_with_len(data, len)),
								false, TEXTOID, buf_cxt);
	MemoryContextSwitchTo(old);
	buf_events++;
	buf_bytes += len;
	if (buf_events >= FLUSH_EVENTS || buf_bytes >= FLUSH_BYTES)
		flush_buffer();
}

/* OID of the argument-less function name in namespace nsp, or InvalidOid. */
static Oid
get_func_oid_in(Oid nsp, const char *name)
{
	return GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(name),
						   PointerGetDatum(buildoidvector(NULL, 0)), ObjectIdGetDatum(nsp));
}

/* Does rel carry the statement trigger that flushes our buffer? */
static bool
has_flush_trigger(Relation rel, Oid nsp)
{
	static Oid	flush_oid = InvalidOid;
	static Oid	flush_nsp = InvalidOid;
	TriggerDesc *td = rel->trigdesc;

	if (flush_nsp != nsp)
	{
		flush_oid = get_func_oid_in(nsp, "webhook_capture_flush");
		flush_nsp = nsp;
	}
	for (int i = 0; td && i < td->numtriggers; i++)
		if (td->triggers[i].tgfoid == flush_oid && td->triggers[i].tgenabled != TRIGGER_DISABLED)
			return true;
	return false;
}

/* Statement trigger: writes the events the row trigger buffered. */
Datum
webhook_capture_flush(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "webhook_capture_flush: not called by trigger manager");
	flush_buffer();
	return PointerGetDatum(NULL);
}

Datum
webhook_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	Relation	rel;
	TupleDesc	desc;
	bool	   *included;
	HeapTuple	newtup = NULL;
	HeapTuple	oldtup = NULL;
	const char *op;
	const char *suffix;
	StringInfoData data;
	StringInfoData changed;
	char	   *type;
	Oid			nsp;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "webhook_capture: not called by trigger manager");
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture must be an AFTER ... FOR EACH ROW trigger"),
				 errhint("Use webhook_watch() to install it.")));
	tg = td->tg_trigger;
	if (tg->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture needs an event prefix and a column mode"),
				 errhint("Use webhook_watch() to install it.")));

	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	if (!has_flush_trigger(rel, nsp))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture on \"%s\" has no webhook_capture_flush statement trigger",
						RelationGetRelationName(rel)),
				 errhint("Use webhook_watch() to install both triggers.")));

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		newtup = td->tg_trigtuple;
		op = "INSERT";
		suffix = "created";
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
		op = "UPDATE";
		suffix = "updated";
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		oldtup = td->tg_trigtuple;
		op = "DELETE";
		suffix = "deleted";
	}
	else
		return PointerGetDatum(NULL);	/* TRUNCATE: nothing per row */

	/* Which columns leave the database. */
	included = palloc(sizeof(bool) * desc->natts);
	{
		const char *mode = tg->tgargs[1];
		bool		listed_value = strcmp(mode, "include") == 0;

		if (!listed_value && strcmp(mode, "exclude") != 0 && strcmp(mode, "all") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("webhook_capture: unknown column mode \"%s\"", mode)));
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		listed = false;

			if (att->attisdropped)
			{
				included[i] = false;
				continue;
			}
			for (int k = 2; k < tg->tgnargs; k++)
				if (strcmp(tg->tgargs[k], NameStr(att->attname)) == 0)
					listed = true;
			included[i] = strcmp(mode, "all") == 0 ? true : (listed == listed_value);
		}
	}

	/* UPDATE: which included columns changed; none means no event. */
	initStringInfo(&changed);
	if (oldtup != NULL && newtup != NULL)
	{
		bool		any = false;

		appendStringInfoString(&changed, ",\"changed\":[");
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		n1,
						n2;
			Datum		v1,
						v2;

			if (!included[i])
				continue;
			v1 = heap_getattr(oldtup, i + 1, desc, &n1);
			v2 = heap_getattr(newtup, i + 1, desc, &n2);
			if (n1 == n2 && (n1 || datum_image_eq(v1, v2, att->attbyval, att->attlen)))
				continue;
			if (any)
				appendStringInfoChar(&changed, ',');
			escape_json(&changed, NameStr(att->attname));
			any = true;
		}
		appendStringInfoChar(&changed, ']');
		if (!any)
			return PointerGetDatum(NULL);
	}

	initStringInfo(&data);
	appendStringInfoString(&data, "{\"schema\":");
	escape_json(&data, get_namespace_name(RelationGetNamespace(rel)));
	appendStringInfoString(&data, ",\"table\":");
	escape_json(&data, RelationGetRelationName(rel));
	appendStringInfo(&data, ",\"op\":\"%s\"", op);
	if (newtup)
		append_row(&data, "new", newtup, desc, included);
	if (oldtup)
		append_row(&data, "old", oldtup, desc, included);
	appendBinaryStringInfo(&data, changed.data, changed.len);
	appendStringInfoChar(&data, '}');

	if (data.len > webhook_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("webhook event for table \"%s\" is larger than webhook.max_payload_size",
						RelationGetRelationName(rel)),
				 errdetail("The event data is %d bytes; the limit is %d bytes.",
						   data.len, webhook_max_payload_size),
				 errhint("Exclude large columns with webhook_watch(..., exclude_columns => ...).")));

	type = psprintf("%s.%s", tg->tgargs[0], suffix);
	buffer_event(nsp, type, data.data, data.len);
	return PointerGetDatum(NULL);
}
