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
 * Events are not inserted row by row: the row trigger appends type and data
 * to a buffer and the statement trigger webhook_capture_flush(), installed
 * beside it, writes the whole statement's events at once, as COPY writes
 * rows (insert_events).  The buffer never outlives
 * the statement that filled it: it is flushed when large, at the end of the
 * statement, and (a safety net) before commit; it is discarded with an
 * aborted statement, subtransaction or transaction.
 *
 * Neither function is SECURITY DEFINER: the row trigger only reads the
 * row and buffers it, running the column types' output functions as the
 * writer; the events are written without a permission check, as the
 * extension's own rows (insert_events), so writers need no rights on the
 * webhook tables.  The table is looked up in the schema the functions live
 * in, so no search_path can redirect it.  EXECUTE on both is PUBLIC's (the
 * owner of a watched partitioned table needs it to add partitions), so any
 * table owner may attach them; check_registered makes them capture only
 * where webhook_watch registered them, with the arguments it gave, so no
 * table owner can forge events of any type.
 *
 * Everything that depends only on the trigger and the table (which columns
 * are sent, how each is written, the event types) is worked out at the
 * first row of a statement and kept in the trigger's fn_extra.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "compat.h"
#include "executor/executor.h"
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
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/xid8.h"
#include "utils/relcache.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "access/genam.h"
#include "access/stratnum.h"
#include "utils/fmgroids.h"

PG_FUNCTION_INFO_V1(webhook_capture);
PG_FUNCTION_INFO_V1(webhook_capture_flush);

/* Flush from the row trigger once this much is buffered. */
#define FLUSH_EVENTS 10000
#define FLUSH_BYTES (16 * 1024 * 1024)

/* Rows given to table_multi_insert at once. */
#define MULTI_INSERT_ROWS 1000
/* Flushes of at least this many rows write through a bulk-insert ring. */
#define BULK_INSERT_ROWS 1000

/* The columns of webhook_events that capture writes. */
enum
{
	EV_ID, EV_TYPE, EV_DATA, EV_OCCURRED, EV_KEY, EV_TXID, EV_NATTS
};
static Oid	events_relid = InvalidOid;
static Oid	events_seq = InvalidOid;	/* its identity sequence */

/* Events of the current statement not yet inserted. */
static MemoryContext buf_cxt = NULL;	/* child of TopTransactionContext */
static ArrayBuildState *buf_types = NULL;
static ArrayBuildState *buf_data = NULL;
static ArrayBuildState *buf_keys = NULL;
static int	buf_events = 0;
static Size buf_bytes = 0;
static Oid	buf_nsp = InvalidOid;
static SubTransactionId buf_subxid = InvalidSubTransactionId;	/* filled in */
static bool flushing = false;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
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
	bool		holds_json;		/* json (in an array or row too): checked */
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
	int			npk;			/* primary key columns (0: none) */
	AttrNumber *pk;
	FmgrInfo   *pk_out;			/* their output functions */
	char	   *key_head;		/* "<schema>.<table>/" */
} CaptureInfo;

/* Names the column whose value check_json is checking. */
static void
column_context(void *arg)
{
	errcontext("column \"%s\" of a row captured by webhook_watch", (const char *) arg);
}

/*
 * Refuses json text that jsonb cannot hold (\u0000, or an escape the
 * database encoding cannot represent), as webhook_publish_json does: the
 * fan-out matches subscription filters against data::jsonb, so such an
 * event would fail it.  json's input function accepts both; this is the
 * writer's error, not the worker's.
 */
static void
check_json(const char *json, const char *column)
{
	ErrorContextCallback cb;

	cb.callback = column_context;
	cb.arg = (void *) column;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	(void) DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	error_context_stack = cb.previous;
}

/* Appends one column value, of column name, as JSON. */
static void
append_value(StringInfo buf, Datum value, bool isnull, Column *col, const char *name)
{
	char	   *s;
	int			start = buf->len;

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
			break;
		case COL_ARRAY:
			appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(array_to_json, value)));
			break;
		case COL_ROW:
			appendStringInfoString(buf, TextDatumGetCString(DirectFunctionCall1(row_to_json, value)));
			break;
		case COL_TEXT:
			s = OutputFunctionCall(&col->out, value);
			escape_json(buf, s);
			pfree(s);
			return;
	}
	/* json, and arrays and rows that hold json, are embedded as text */
	if (col->holds_json)
		check_json(buf->data + start, name);
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
		append_value(buf, value, isnull, &cols[i], NameStr(TupleDescAttr(desc, i)->attname));
	}
	appendStringInfoChar(buf, '}');
}

/* Forgets the buffered events (their memory goes with the transaction). */
static void
discard_buffer(void)
{
	flushing = false;
	buf_cxt = NULL;
	buf_types = buf_data = buf_keys = NULL;
	buf_events = 0;
	buf_bytes = 0;
}

/* A table written as COPY writes rows, and its rows' slots. */
typedef struct BulkTable
{
	Relation	rel;
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	int			nslots;
	BulkInsertState bistate;	/* NULL: no bulk-write ring */
} BulkTable;

/* Opens table relname of schema nsp for bulk_write; refuses insert triggers. */
static void
bulk_open(BulkTable *t, const char *relname, Oid nsp, int nslots, bool ring)
{
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "webhook_capture: table %s is missing", relname);
	t->rel = table_open(relid, RowExclusiveLock);
	if (t->rel->trigdesc && (t->rel->trigdesc->trig_insert_before_row ||
							 t->rel->trigdesc->trig_insert_after_row ||
							 t->rel->trigdesc->trig_insert_instead_row))
		elog(ERROR, "webhook_capture: %s has insert triggers, which capture does not fire",
			 relname);
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	t->nslots = nslots;
	t->slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (int k = 0; k < nslots; k++)
		t->slots[k] = table_slot_create(t->rel, NULL);
	/* a bulk-write ring only for large flushes: small ones stay in cache */
	t->bistate = ring ? GetBulkInsertState() : NULL;
}

/* Inserts the first m slots' rows: heap pages a few rows at a time, then indexes. */
static void
bulk_write(BulkTable *t, int m, EState *estate, CommandId cid)
{
	MemoryContext old;

	/* heap_multi_insert leaves its work in the current context */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	table_multi_insert(t->rel, t->slots, m, cid, 0, t->bistate);
	MemoryContextSwitchTo(old);
	ResetPerTupleExprContext(estate);
	for (int k = 0; k < m; k++)
	{
		List	   *recheck = compat_insert_index_tuples(t->rri, t->slots[k], estate);

		list_free(recheck);
		ResetPerTupleExprContext(estate);
	}
}

/*
 * Finds the n columns capture writes (names[k] of type types[k]) in att[],
 * 0-based.  Refuses a table that is not as capture knows it: a column
 * missing or of another type, or another column capture would have to
 * compute (a default, NOT NULL, generated).  Columns it does not write are
 * NULL, as an INSERT naming only its columns would leave them.
 */
static void
bulk_columns(BulkTable *t, int n, const char *const *names, const Oid *types, int *att)
{
	TupleDesc	desc = RelationGetDescr(t->rel);
	const char *relname = RelationGetRelationName(t->rel);

	for (int k = 0; k < n; k++)
	{
		att[k] = -1;
		for (int a = 0; a < desc->natts; a++)
			if (!TupleDescAttr(desc, a)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, a)->attname), names[k]) == 0)
				att[k] = a;
		if (att[k] < 0 || TupleDescAttr(desc, att[k])->atttypid != types[k])
			elog(ERROR, "webhook_capture: column %s.%s is missing or of another type",
				 relname, names[k]);
	}
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute fa = TupleDescAttr(desc, a);
		bool		known = false;

		for (int k = 0; k < n; k++)
			known |= att[k] == a;
		if (!known && !fa->attisdropped && (fa->atthasdef || fa->attnotnull || fa->attgenerated))
			elog(ERROR, "webhook_capture: column %s.%s has a default or constraint capture does not know",
				 relname, NameStr(fa->attname));
	}
}

static void
bulk_close(BulkTable *t)
{
	if (t->bistate)
	{
		table_finish_bulk_insert(t->rel, 0);
		FreeBulkInsertState(t->bistate);
	}
	for (int k = 0; k < t->nslots; k++)
		ExecDropSingleTupleTableSlot(t->slots[k]);
	pfree(t->slots);
	ExecCloseIndices(t->rri);
	table_close(t->rel, NoLock);
}

/*
 * Writes n events into webhook_events of schema nsp as COPY writes rows:
 * heap pages filled several rows
 * at a time (one WAL record per page), then each row's index entries.  An
 * INSERT through SPI cost more around each row than the row itself: its
 * plan, its executor, the table's CHECK constraints compiled again for
 * every statement, and every event copied into arrays and out again.
 *
 * The rows are the extension's own and valid by construction, so the
 * CHECK constraints (which guard inserts made with SQL) are not evaluated:
 * types come from a prefix checked by build_capture_info, keys are at most
 * 255 bytes (capture_row), data is JSON built here, and no other column is
 * set.  Every column not written here must have a default that is
 * computed here (id, occurred_at, txid) or be NULL; a new column with
 * another default must be added here too (bulk_columns refuses the table
 * otherwise).  There are no triggers on the table.
 * No permission is checked: the rows are the extension's own, written by
 * its triggers, which only those allowed may attach.
 */
static void
insert_events(Oid nsp, int n, Datum *types, Datum *data, Datum *keys, bool *keynulls)
{
	BulkTable	ev;
	BulkTable	queue;
	bool		queued;
	EState	   *estate;
	CommandId	cid = GetCurrentCommandId(true);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			nslots = Min(n, MULTI_INSERT_ROWS);
	int			att[EV_NATTS];	/* 0-based column numbers */
	int			qatt[1];
	static const char *const names[EV_NATTS] = {"id", "type", "data", "occurred_at",
	"ordering_key", "txid"};
	static const Oid types_of[EV_NATTS] = {INT8OID, TEXTOID, JSONOID, TIMESTAMPTZOID,
	TEXTOID, XID8OID};
	/* pg_current_xact_id(): the top level's, with which the events commit */
	Datum		txid = FullTransactionIdGetDatum(GetTopFullTransactionId());

	bulk_open(&ev, "webhook_events", nsp, nslots, n >= BULK_INSERT_ROWS);

	/*
	 * The schema of 0.1.0, until ALTER EXTENSION UPDATE makes it 0.2.0: no
	 * transaction id on the event, but an entry in webhook_fanout_queue.
	 */
	queued = get_attnum(RelationGetRelid(ev.rel), "txid") == InvalidAttrNumber;
	bulk_columns(&ev, queued ? EV_TXID : EV_NATTS, names, types_of, att);
	if (queued)
	{
		bulk_open(&queue, "webhook_fanout_queue", nsp, nslots, n >= BULK_INSERT_ROWS);
		bulk_columns(&queue, 1, (const char *const[]) {"event_id"}, (const Oid[]) {INT8OID}, qatt);
	}
	if (RelationGetRelid(ev.rel) != events_relid)
	{
		/* the identity sequence, looked up once per table */
		events_relid = RelationGetRelid(ev.rel);
		events_seq = compat_identity_sequence(ev.rel, att[EV_ID] + 1);
	}

	estate = CreateExecutorState();
	for (int done = 0; done < n; done += nslots)
	{
		int			m = Min(nslots, n - done);

		for (int k = 0; k < m; k++)
		{
			TupleTableSlot *slot = ev.slots[k];
			int			e = done + k;
			Datum		id = Int64GetDatum(nextval_internal(events_seq, false));

			ExecClearTuple(slot);
			memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
			slot->tts_values[att[EV_ID]] = id;
			slot->tts_values[att[EV_TYPE]] = types[e];
			slot->tts_values[att[EV_DATA]] = data[e];
			slot->tts_values[att[EV_OCCURRED]] = TimestampTzGetDatum(now);
			slot->tts_values[att[EV_KEY]] = keys[e];
			slot->tts_isnull[att[EV_ID]] = slot->tts_isnull[att[EV_TYPE]] =
				slot->tts_isnull[att[EV_DATA]] = slot->tts_isnull[att[EV_OCCURRED]] = false;
			slot->tts_isnull[att[EV_KEY]] = keynulls[e];
			if (!queued)
			{
				slot->tts_values[att[EV_TXID]] = txid;
				slot->tts_isnull[att[EV_TXID]] = false;
			}
			ExecStoreVirtualTuple(slot);
			if (queued)
			{
				TupleTableSlot *qslot = queue.slots[k];

				ExecClearTuple(qslot);
				memset(qslot->tts_isnull, true, sizeof(bool) * qslot->tts_tupleDescriptor->natts);
				qslot->tts_values[qatt[0]] = id;
				qslot->tts_isnull[qatt[0]] = false;
				ExecStoreVirtualTuple(qslot);
			}
		}
		bulk_write(&ev, m, estate, cid);
		if (queued)
			bulk_write(&queue, m, estate, cid);
	}

	if (queued)
		bulk_close(&queue);
	bulk_close(&ev);
	FreeExecutorState(estate);
	webhook_arm_wake(false, false);
}

/*
 * Writes the buffer, unless we are inside a subtransaction started after
 * the buffer was filled: the rows would belong to that subtransaction and
 * vanish if it rolled back, though the events are the outer level's.
 * They wait for the end of a statement at their own level.
 */
static void
flush_buffer(void)
{
	if (buf_events == 0 || flushing || GetCurrentSubTransactionId() > buf_subxid)
		return;
	flushing = true;
	PG_TRY();
	{
		insert_events(buf_nsp, buf_events, buf_types->dvalues, buf_data->dvalues,
					  buf_keys->dvalues, buf_keys->dnulls);
	}
	PG_FINALLY();
	{
		flushing = false;
	}
	PG_END_TRY();
	MemoryContextDelete(buf_cxt);
	discard_buffer();
}

/*
 * The end of every statement writes what it captured, whatever table the
 * statement named (a statement on an unwatched parent of a watched
 * partition fires no trigger of ours at its end).
 */
static void
capture_executor_finish(QueryDesc *queryDesc)
{
	if (prev_executor_finish)
		prev_executor_finish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	if (buf_events > 0)
		flush_buffer();
}

/* Called from _PG_init. */
void
capture_init(void)
{
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = capture_executor_finish;
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
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
	/*
	 * Every buffered event was captured in subtransaction buf_subxid
	 * (buffer_event flushes when that changes).  Ids grow within a
	 * transaction: the aborting one is buf_subxid or one of its parents
	 * exactly when buf_subxid >= mySubid.  An older buffer belongs to a
	 * transaction level that lives on and must be kept.
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB && buf_cxt != NULL && buf_subxid >= mySubid)
	{
		MemoryContextDelete(buf_cxt);
		discard_buffer();
	}
}

/* Appends one event (its ordering key may be NULL) to the statement's buffer. */
static void
buffer_event(Oid nsp, const char *type, const char *data, int len, const char *key)
{
	MemoryContext old;

	if (!callbacks_registered)
	{
		RegisterXactCallback(capture_xact_callback, NULL);
		RegisterSubXactCallback(capture_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (buf_cxt != NULL && GetCurrentSubTransactionId() > buf_subxid)
	{
		/*
		 * Inside a subtransaction begun after the buffer was filled (a
		 * function with an exception block, say): this event is the
		 * subtransaction's and is written at once; the buffer stays.
		 */
		insert_events(nsp, 1, &(Datum) {CStringGetTextDatum(type)},
					  &(Datum) {PointerGetDatum(cstring_to_text_with_len(data, len))},
					  &(Datum) {key ? CStringGetTextDatum(key) : (Datum) 0},
					  &(bool) {key == NULL});
		return;
	}
	if (buf_cxt != NULL && nsp != buf_nsp)
		flush_buffer();			/* the extension was created again meanwhile */
	if (buf_cxt == NULL)
		buf_cxt = AllocSetContextCreate(TopTransactionContext, "webhook capture buffer",
										ALLOCSET_DEFAULT_SIZES);
	buf_nsp = nsp;
	/* a committed child's events are now its parent's, and so on up */
	buf_subxid = GetCurrentSubTransactionId();
	old = MemoryContextSwitchTo(buf_cxt);
	buf_types = accumArrayResult(buf_types, CStringGetTextDatum(type), false, TEXTOID, buf_cxt);
	/* json is text inside; the data was built here and is valid JSON */
	buf_data = accumArrayResult(buf_data, PointerGetDatum(cstring_to_text_with_len(data, len)),
								false, JSONOID, buf_cxt);
	buf_keys = accumArrayResult(buf_keys, key ? CStringGetTextDatum(key) : (Datum) 0, key == NULL,
								TEXTOID, buf_cxt);
	MemoryContextSwitchTo(old);
	buf_events++;
	buf_bytes += len;
	if (buf_events >= FLUSH_EVENTS || buf_bytes >= FLUSH_BYTES)
		flush_buffer();
}

/*
 * Refuses a capture trigger that webhook_watch did not install: the
 * trigger, or on a partition the one it was cloned from, must be named
 * webhook_capture and sit on a table webhook_watches registers with
 * exactly its arguments.  Read without a permission check or row security
 * (the writer has no rights on the table).  ERRORs.
 */
static void
check_registered(Trigger *tg, Relation rel, Oid nsp)
{
	Oid			root = RelationGetRelid(rel);
	char	   *name = tg->tgname;
	Oid			watches = get_relname_relid("webhook_watches", nsp);
	Oid			watches_pkey = get_relname_relid("webhook_watches_pkey", nsp);
	bool		ok = false;
	Relation	wrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	/*
	 * Version 0.1.0's schema, until ALTER EXTENSION webhook UPDATE: it has
	 * no registry, and EXECUTE on the capture functions was PUBLIC's to
	 * be granted only.  Writes to watched tables go on meanwhile.
	 */
	if (!OidIsValid(watches) || !OidIsValid(watches_pkey))
		return;
	if (tg->tgisclone)
	{
		Relation	trel = table_open(TriggerRelationId, AccessShareLock);
		Oid			next = tg->tgoid;

		while (OidIsValid(next))
		{
			Form_pg_trigger f;

			ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
						ObjectIdGetDatum(next));
			scan = systable_beginscan(trel, TriggerOidIndexId, true, NULL, 1, &key);
			tup = systable_getnext(scan);
			if (!HeapTupleIsValid(tup))
				elog(ERROR, "webhook_capture: trigger %u not found", next);
			f = (Form_pg_trigger) GETSTRUCT(tup);
			root = f->tgrelid;
			name = pstrdup(NameStr(f->tgname));
			next = f->tgparentid;
			systable_endscan(scan);
		}
		table_close(trel, AccessShareLock);
	}

	wrel = table_open(watches, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(root));
	scan = systable_beginscan(wrel, watches_pkey, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup) && strcmp(name, "webhook_capture") == 0)
	{
		bool		isnull;
		Datum		args = heap_getattr(tup, 2, RelationGetDescr(wrel), &isnull);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(args), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		ok = !isnull && n == tg->tgnargs;
		for (int i = 0; ok && i < n; i++)
			ok = !nulls[i] && strcmp(TextDatumGetCString(elems[i]), tg->tgargs[i]) == 0;
	}
	systable_endscan(scan);
	table_close(wrel, AccessShareLock);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("capture trigger \"%s\" on table \"%s\" was not installed by webhook_watch",
						tg->tgname, RelationGetRelationName(rel)),
				 errdetail("The capture trigger runs only on tables webhook_watch registered, with the arguments it gave the trigger."),
				 errhint("Watch the table with webhook_watch(), or drop the trigger; webhook_watched_tables lists every capture trigger.")));
}

/*
 * Whether values of type typid can hold json, whose text jsonb may refuse:
 * json itself, or an array or composite with json inside.
 */
static bool
type_holds_json(Oid typid)
{
	Oid			elem;

	check_stack_depth();
	typid = getBaseType(typid);
	if (typid == JSONOID)
		return true;
	if (OidIsValid(elem = get_element_type(typid)))
		return type_holds_json(elem);
	if (type_is_rowtype(typid))
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
		bool		holds = false;

		for (int i = 0; i < desc->natts && !holds; i++)
			holds = !TupleDescAttr(desc, i)->attisdropped &&
				type_holds_json(TupleDescAttr(desc, i)->atttypid);
		ReleaseTupleDesc(desc);
		return holds;
	}
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

	ci->nsp = get_func_namespace(flinfo->fn_oid);
	check_registered(tg, rel, ci->nsp);
	if (!all && !listed_value && strcmp(mode, "exclude") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("webhook_capture: unknown column mode \"%s\"", mode)));
	ci->tgoid = tg->tgoid;
	ci->relid = RelationGetRelid(rel);
	ci->natts = desc->natts;
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
		/* (bool, number, date and text output never hold json) */
		col->holds_json = (col->kind == COL_JSON || col->kind == COL_ARRAY || col->kind == COL_ROW) &&
			type_holds_json(col->base);
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
	/*
	 * The events are written without the table's CHECK constraints (see
	 * insert_events): their types are checked here, as webhook_watch did.
	 */
	if (strlen(tg->tgargs[0]) > 200 || !valid_event_type(tg->tgargs[0], false))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event prefix \"%s\" in trigger \"%s\"", tg->tgargs[0], tg->tgname),
				 errhint("Use webhook_watch() to install it.")));
	ci->types[0] = psprintf("%s.created", tg->tgargs[0]);
	ci->types[1] = psprintf("%s.updated", tg->tgargs[0]);
	ci->types[2] = psprintf("%s.deleted", tg->tgargs[0]);

	/* the ordering key of a row: its primary key, in the key's column order */
	{
		Oid			pkoid = compat_primary_key_index(rel);
		HeapTuple	itup = OidIsValid(pkoid) ? SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkoid)) : NULL;
		Form_pg_index ind = itup ? (Form_pg_index) GETSTRUCT(itup) : NULL;
		int			n = ind ? ind->indnkeyatts : 0;

		ci->pk = palloc(sizeof(AttrNumber) * Max(n, 1));
		ci->pk_out = palloc(sizeof(FmgrInfo) * Max(n, 1));
		ci->npk = 0;
		for (int i = 0; i < n; i++)
		{
			AttrNumber	att = ind->indkey.values[i];
			Oid			outfunc;
			bool		varlena;

			if (att <= 0)
				continue;		/* primary keys have no expressions; be safe */
			getTypeOutputInfo(TupleDescAttr(desc, att - 1)->atttypid, &outfunc, &varlena);
			fmgr_info_cxt(outfunc, &ci->pk_out[ci->npk], flinfo->fn_mcxt);
			ci->pk[ci->npk++] = att;
		}
		if (itup)
			ReleaseSysCache(itup);
		ci->key_head = psprintf("%s.%s/", get_namespace_name(RelationGetNamespace(rel)),
								RelationGetRelationName(rel));
	}
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
	char	   *key;

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

	/* ordering key: "<schema>.<table>/<primary key>[,<more columns>]" */
	key = NULL;
	if (ci->npk > 0)
	{
		HeapTuple	keytup = newtup ? newtup : oldtup;
		StringInfoData k;

		initStringInfo(&k);
		appendStringInfoString(&k, ci->key_head);
		for (int i = 0; i < ci->npk; i++)
		{
			bool		isnull;
			Datum		v = heap_getattr(keytup, ci->pk[i], desc, &isnull);

			if (i > 0)
				appendStringInfoChar(&k, ',');
			if (!isnull)
				appendStringInfoString(&k, OutputFunctionCall(&ci->pk_out[i], v));
		}
		key = k.len <= 255 ? k.data : NULL;	/* too long to order by: one line */
	}

	buffer_event(ci->nsp, ci->types[kind], data.data, data.len, key);
	pfree(data.data);
	pfree(changed.data);
	return PointerGetDatum(NULL);
}
