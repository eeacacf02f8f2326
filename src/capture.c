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
 * Neither function is SECURITY DEFINER: the row trigger only reads the
 * row and buffers it, running the column types' output functions as the
 * writer; the INSERT alone runs as the extension's owner (flush_buffer),
 * so writers need no rights on the webhook tables.  Every name used is
 * schema-qualified with the schema the functions live in, so no
 * search_path can redirect it.  EXECUTE on both is revoked from PUBLIC:
 * only those allowed to may attach them (CREATE TRIGGER checks it), so
 * no table owner can forge events of any type.
 *
 * Everything that depends only on the trigger and the table (which columns
 * are sent, how each is written, the event types) is worked out at the
 * first row of a statement and kept in the trigger's fn_extra.
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
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
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
static Oid	buf_owner = InvalidOid;	/* owner of the extension's functions */
static bool callbacks_registered = false;

/* How a column's values are written as JSON (decided once per statement). */
typedef enum
{
	COL_BOOL,
	COL_NUMBER,					/* output text, quoted if not a JSON number */
	COL_DATETIME,				/* ISO 8601, as to_json writes it */
	COL_JSON,					/* output text as is */
	COL_ARRAY,
	COL_ROW,
	COL_TEXT					/* output text as a JSON string */
} ColKind;

typedef struct Column
{
	bool		included;
	ColKind		kind;
	Oid			base;			/* base type (domains looked through) */
	FmgrInfo	out;			/* output function, where used */
} Column;

/*
 * What one trigger on one relation needs for every row, built at its first
 * row of a statement and kept in fn_extra (the trigger's FmgrInfo lives as
 * long as the statement, and the relation cannot change meanwhile).
 */
typedef struct CaptureInfo
{
	Oid			tgoid;
	Oid			relid;
	int			natts;
	Oid			nsp;			/* the extension's schema */
	Column	   *cols;
	char	   *head;			/* {"schema":...,"table":...,"op": */
	char	   *types[3];		/* <prefix>.created, .updated, .deleted */
} CaptureInfo;

/* Appends one column value as JSON. */
static void
append_value(StringInfo buf, Datum value, bool isnull, Column *col)
{
	char	   *s;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	switch (col->kind)
	{
		case COL_BOOL:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		case COL_NUMBER:
			s = OutputFunctionCall(&col->out, value);
			/* NaN and infinities are not JSON numbers */
			if (isdigit((unsigned char) s[0]) || (s[0] == '-' && isdigit((unsigned char) s[1])))
				appendStringInfoString(buf, s);
			else
				escape_json(buf, s);
			pfree(s);
			return;
		case COL_DATETIME:
			{
				char		dt[MAXDATELEN + 1];

				appendStringInfoChar(buf, '"');
				appendStringInfoString(buf, JsonEncodeDateTime(dt, value, col->base, NULL));
				appendStringInfoChar(buf, '"');
				return;
			}
		case COL_JSON:
			appendStringInfoString(buf, OutputFunctionCall(&col->out, value));
			return;
		case COL_ARRAY:
			appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(array_to_json, value)));
			return;
		case COL_ROW:
			appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(row_to_json, value)));
			return;
		case COL_TEXT:
			s = OutputFunctionCall(&col->out, value);
			escape_json(buf, s);
			pfree(s);
			return;
	}
}

/* Appends ,"key":{col:value,...} for the included columns of tuple. */
static void
append_row(StringInfo buf, const char *key, HeapTuple tuple, TupleDesc desc, Column *cols)
{
	bool		first = true;

	appendStringInfo(buf, ",\"%s\":{", key);
	for (int i = 0; i < desc->natts; i++)
	{
		bool		isnull;
		Datum		value;

		if (!cols[i].included)
			continue;
		value = heap_getattr(tuple, i + 1, desc, &isnull);
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		escape_json(buf, NameStr(TupleDescAttr(desc, i)->attname));
		appendStringInfoChar(buf, ':');
		append_value(buf, value, isnull, &cols[i]);
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
				   " SELECT u.t, u.d"
				   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
				   "   WITH ORDINALITY AS u(t, d, n) ORDER BY u.n",
				   quote_identifier(get_namespace_name(nsp)));
	plan = SPI_prepare(sql, 2, (Oid[]) {TEXTARRAYOID, JSONARRAYOID});
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

/*
 * Inserts the buffered events with one statement and empties the buffer.
 * The INSERT runs as the owner of the extension's functions, in a
 * restricted security context, so writers need no rights on the webhook
 * tables (an ERROR restores the user with the aborted transaction).
 */
static void
flush_buffer(void)
{
	Datum		args[2];
	int			rc;
	Oid			save_userid;
	int			save_sec_context;
	bool		pushed = false;

	if (buf_events == 0)
		return;
	if (!ActiveSnapshotSet())
	{
		/* the pre-commit safety net runs outside any statement */
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	args[0] = makeArrayResult(buf_types, CurrentMemoryContext);
	args[1] = makeArrayResult(buf_data, CurrentMemoryContext);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(buf_owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_capture: SPI_connect failed");
	prepare_insert(buf_nsp);
	rc = SPI_execute_plan(insert_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "webhook_capture: insert failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (pushed)
		PopActiveSnapshot();
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
buffer_event(Oid nsp, Oid owner, const char *type, const char *data, int len)
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
	buf_owner = owner;
	old = MemoryContextSwitchTo(buf_cxt);
	buf_types = accumArrayResult(buf_types, CStringGetTextDatum(type), false, TEXTOID, buf_cxt);
	/* json is text inside; the data was built here and is valid JSON */
	buf_data = accumArrayResult(buf_data, PointerGetDatum(cstring_to_text_with_len(data, len)),
								false, JSONOID, buf_cxt);
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

/*
 * Does rel carry the statement trigger that flushes our buffer?  Sets
 * *owner to the owner of that function (the extension's owner).
 */
static bool
has_flush_trigger(Relation rel, Oid nsp, Oid *owner)
{
	static Oid	flush_oid = InvalidOid;
	static Oid	flush_nsp = InvalidOid;
	static Oid	flush_owner = InvalidOid;
	TriggerDesc *td = rel->trigdesc;

	if (flush_nsp != nsp)
	{
		HeapTuple	tup;

		flush_oid = get_func_oid_in(nsp, "webhook_capture_flush");
		tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flush_oid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "webhook_capture: function webhook_capture_flush not found");
		flush_owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
		ReleaseSysCache(tup);
		flush_nsp = nsp;
	}
	*owner = flush_owner;
	for (int i = 0; td && i < td->numtriggers; i++)
		if (td->triggers[i].tgfoid == flush_oid && td->triggers[i].tgenabled != TRIGGER_DISABLED)
			return true;
	return false;
}

/* Decides how each column is written and which columns are included. */
static CaptureInfo *
build_capture_info(FmgrInfo *flinfo, Trigger *tg, Relation rel)
{
	MemoryContext old = MemoryContextSwitchTo(flinfo->fn_mcxt);
	TupleDesc	desc = RelationGetDescr(rel);
	CaptureInfo *ci = palloc0(sizeof(CaptureInfo));
	const char *mode = tg->tgargs[1];
	bool		all = strcmp(mode, "all") == 0;
	bool		listed_value = strcmp(mode, "include") == 0;
	StringInfoData head;

	if (!all && !listed_value && strcmp(mode, "exclude") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture: unknown column mode \"%s\"", mode)));
	ci->tgoid = tg->tgoid;
	ci->relid = RelationGetRelid(rel);
	ci->natts = desc->natts;
	ci->nsp = get_func_namespace(flinfo->fn_oid);
	ci->cols = palloc0(sizeof(Column) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Column	   *col = &ci->cols[i];
		bool		listed = false;
		Oid			outfunc;
		bool		varlena;

		if (att->attisdropped)
			continue;
		for (int k = 2; k < tg->tgnargs; k++)
			if (strcmp(tg->tgargs[k], NameStr(att->attname)) == 0)
				listed = true;
		col->included = all || listed == listed_value;
		if (!col->included)
			continue;
		col->base = getBaseType(att->atttypid);
		switch (col->base)
		{
			case BOOLOID:
				col->kind = COL_BOOL;
				break;
			case INT2OID:
			case INT4OID:
			case INT8OID:
			case FLOAT4OID:
			case FLOAT8OID:
			case NUMERICOID:
				col->kind = COL_NUMBER;
				break;
			case DATEOID:
			case TIMEOID:
			case TIMETZOID:
			case TIMESTAMPOID:
			case TIMESTAMPTZOID:
				col->kind = COL_DATETIME;
				break;
			case JSONOID:
			case JSONBOID:
				col->kind = COL_JSON;
				break;
			default:
				col->kind = type_is_array(col->base) ? COL_ARRAY :
					type_is_rowtype(col->base) ? COL_ROW : COL_TEXT;
				break;
		}
		if (col->kind == COL_NUMBER || col->kind == COL_JSON || col->kind == COL_TEXT)
		{
			getTypeOutputInfo(col->kind == COL_TEXT ? att->atttypid : col->base,
							  &outfunc, &varlena);
			fmgr_info_cxt(outfunc, &col->out, flinfo->fn_mcxt);
		}
	}

	initStringInfo(&head);
	appendStringInfoString(&head, "{\"schema\":");
	escape_json(&head, get_namespace_name(RelationGetNamespace(rel)));
	appendStringInfoString(&head, ",\"table\":");
	escape_json(&head, RelationGetRelationName(rel));
	appendStringInfoString(&head, ",\"op\":");
	ci->head = head.data;
	ci->types[0] = psprintf("%s.created", tg->tgargs[0]);
	ci->types[1] = psprintf("%s.updated", tg->tgargs[0]);
	ci->types[2] = psprintf("%s.deleted", tg->tgargs[0]);
	MemoryContextSwitchTo(old);
	return ci;
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
	CaptureInfo *ci;
	HeapTuple	newtup = NULL;
	HeapTuple	oldtup = NULL;
	const char *op;
	int			kind;
	StringInfoData data;
	StringInfoData changed;
	Oid			owner;
	bool		batched;

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
	ci = (CaptureInfo *) fcinfo->flinfo->fn_extra;
	if (ci == NULL || ci->tgoid != tg->tgoid || ci->relid != RelationGetRelid(rel) ||
		ci->natts != desc->natts)
	{
		ci = build_capture_info(fcinfo->flinfo, tg, rel);
		fcinfo->flinfo->fn_extra = ci;
	}
	/*
	 * Without the statement trigger nothing would write the buffer before
	 * the statement ends.  A partition attached after webhook_watch() has
	 * the row trigger (cloned from its parent) but not the statement
	 * trigger: its events are written row by row.
	 */
	batched = has_flush_trigger(rel, ci->nsp, &owner);
	if (!batched && !rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture on \"%s\" has no webhook_capture_flush statement trigger",
						RelationGetRelationName(rel)),
				 errhint("Use webhook_watch() to install both triggers.")));

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		newtup = td->tg_trigtuple;
		op = "\"INSERT\"";
		kind = 0;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
		op = "\"UPDATE\"";
		kind = 1;
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		oldtup = td->tg_trigtuple;
		op = "\"DELETE\"";
		kind = 2;
	}
	else
		return PointerGetDatum(NULL);	/* TRUNCATE: nothing per row */

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

			if (!ci->cols[i].included)
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
	appendStringInfoString(&data, ci->head);
	appendStringInfoString(&data, op);
	if (newtup)
		append_row(&data, "new", newtup, desc, ci->cols);
	if (oldtup)
		append_row(&data, "old", oldtup, desc, ci->cols);
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

	buffer_event(ci->nsp, owner, ci->types[kind], data.data, data.len);
	if (!batched)
		flush_buffer();
	pfree(data.data);
	pfree(changed.data);
	return PointerGetDatum(NULL);
}
