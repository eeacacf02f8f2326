/*-------------------------------------------------------------------------
 * launcher.c
 *	  The launcher: one delivery worker for each database that has the
 *	  extension.
 *
 * The launcher (static, connected to no database) lists the databases
 * that accept connections (not templates: a process connected to one
 * would block CREATE DATABASE), or only webhook.database_name when it is
 * set, and gives each a slot in shared memory (wake.c).  It cannot read
 * another database's catalog, so for each database it starts a worker
 * that looks: where the extension is, the worker stays and serves; where
 * it is not, the worker marks the slot "no extension" and leaves, and the
 * launcher starts none there until a CREATE EXTENSION commits in that
 * database (wake.c sets the slot back to "starting" and the launcher's
 * latch).  A worker that exits otherwise (an error, a crash) is started
 * again after RESTART_DELAY_MS; one whose database is gone is not.  When no
 * background worker slot is free, the slot says so, the launcher logs it
 * once per database, and tries again.
 *
 * The launcher never ERRORs on a database's account: a missing database is
 * a quiet wait, never a crash loop.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* How long the launcher waits before starting a worker again that exited. */
#define RESTART_DELAY_MS 10000
/* How often it lists the databases when nothing asks it to. */
#define SCAN_INTERVAL_MS 10000
/* At most this many workers look for the extension at once. */
#define MAX_PROBES 2

PG_FUNCTION_INFO_V1(webhook_worker_status);

/* The launcher's own view of each slot: its worker and when to retry. */
typedef struct SlotProcess
{
	NameData	dbname;			/* for the launcher's own messages */
	BackgroundWorkerHandle *handle;
	TimestampTz retry_at;
	bool		logged_no_worker;
} SlotProcess;

/*
 * Registers a background worker of this library connected to dboid, with
 * the registering process told of its start and stop, and in bgw_extra
 * its pid (the fan-out helper and the other delivery workers leave when
 * that process is gone) and index, which delivery worker of the database
 * it is (0 for the first, and for the helper; others are named "name 2"
 * and so on).  The handle is allocated for the life of the process.  False
 * when no slot is free.
 */
bool
webhook_start_db_worker(const char *function, const char *name, Oid dboid, int index,
						BackgroundWorkerHandle **handle)
{
	BackgroundWorker w;
	MemoryContext oldcxt;
	bool		ok;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "webhook");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
	if (index > 0)
		snprintf(w.bgw_name, BGW_MAXLEN, "%s %d", name, index + 1);
	else
		snprintf(w.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(w.bgw_type, BGW_MAXLEN, "%s", name);
	w.bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(w.bgw_extra, &MyProcPid, sizeof(pid_t));
	memcpy(w.bgw_extra + sizeof(pid_t), &index, sizeof(int));
	w.bgw_notify_pid = MyProcPid;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&w, handle);
	MemoryContextSwitchTo(oldcxt);
	if (!ok)
		*handle = NULL;
	return ok;
}

/*
 * Lists the databases to look after into dbs (room for max entries);
 * returns how many.  A heap scan, as autovacuum's launcher does: with no
 * database selected, index scans of shared catalogs are not available.
 */
static int
list_databases(Oid *dbs, NameData *names, int max)
{
	int			n = 0;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL && n < max)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (!db->datallowconn || db->datistemplate)
			continue;
		if (webhook_database_name[0] != '\0' &&
			strcmp(NameStr(db->datname), webhook_database_name) != 0)
			continue;
		names[n] = db->datname;
		dbs[n++] = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return n;
}

/*
 * Gives every listed database a slot (new ones start in DB_PROBE), and
 * frees the slots of databases no longer listed, stopping their workers.
 */
static int
compare_oids(const void *a, const void *b)
{
	Oid			x = *(const Oid *) a;
	Oid			y = *(const Oid *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
sync_slots(SlotProcess *procs)
{
	int			nslots = webhook_shared->nslots;
	Oid		   *dbs = palloc(sizeof(Oid) * (nslots + 1));
	NameData   *names = palloc(sizeof(NameData) * (nslots + 1));
	NameData   *sorted_names;
	bool	   *known;
	Latch	  **leave = palloc0(sizeof(Latch *) * nslots);
	int			n = list_databases(dbs, names, nslots + 1);
	int			next_free = 0;
	TimestampTz now = GetCurrentTimestamp();
	static bool logged_too_many = false;

	if (n > nslots)
	{
		if (!logged_too_many)
			ereport(WARNING,
					(errmsg("webhook: more than %d databases; the others are not served", nslots),
					 errhint("Set webhook.database_name to the database to serve.")));
		logged_too_many = true;
		n = nslots;
	}
	/* sorted, so that each slot finds its database by binary search */
	sorted_names = palloc(sizeof(NameData) * Max(n, 1));
	known = palloc0(sizeof(bool) * Max(n, 1));
	{
		Oid		   *pairs = palloc(sizeof(Oid) * 2 * Max(n, 1));

		/* (oid, index) pairs sort by oid; names follow their oid */
		for (int k = 0; k < n; k++)
		{
			pairs[2 * k] = dbs[k];
			pairs[2 * k + 1] = (Oid) k;
		}
		qsort(pairs, n, sizeof(Oid) * 2, compare_oids);
		for (int k = 0; k < n; k++)
		{
			sorted_names[k] = names[pairs[2 * k + 1]];
			dbs[k] = pairs[2 * k];
		}
		pfree(pairs);
	}

	SpinLockAcquire(&webhook_shared->mutex);
	webhook_shared->rescan = false;
	for (int i = 0; i < nslots; i++)
	{
		WebhookDb  *db = &webhook_shared->db[i];
		Oid		   *hit;

		if (!OidIsValid(db->dboid))
			continue;
		hit = bsearch(&db->dboid, dbs, n, sizeof(Oid), compare_oids);
		if (hit != NULL)
		{
			/* (a launcher started again finds the slots as they were) */
			known[hit - dbs] = true;
			procs[i].dbname = sorted_names[hit - dbs];
			continue;
		}
		/* no longer listed: its worker sees the slot freed and leaves */
		db->dboid = InvalidOid;
		db->state = DB_FREE;
		for (int w = 0; w < WEBHOOK_MAX_WORKERS; w++)
			db->worker[w].claims_due = 0;
		leave[i] = db->worker[0].latch;
	}
	for (int k = 0; k < n; k++)
	{
		if (known[k])
			continue;
		for (; next_free < nslots; next_free++)
		{
			WebhookDb  *db = &webhook_shared->db[next_free];

			/* in use, or its old processes still leaving */
			if (OidIsValid(db->dboid) || procs[next_free].handle != NULL ||
				wake_slot_busy(db))
				continue;
			db->dboid = dbs[k];
			db->state = DB_PROBE;
			db->state_since = now;
			for (int w = 0; w < WEBHOOK_MAX_WORKERS; w++)
				db->worker[w].claims_due = CLAIMS_ALL;
			procs[next_free].retry_at = 0;
			procs[next_free].logged_no_worker = false;
			procs[next_free].dbname = sorted_names[k];
			next_free++;
			break;
		}
	}
	SpinLockRelease(&webhook_shared->mutex);

	/*
	 * The workers of freed slots leave: the launcher's own by their
	 * handles; one a previous launcher started, when its latch wakes it
	 * to see the slot freed.
	 */
	for (int i = 0; i < nslots; i++)
	{
		if (OidIsValid(webhook_shared->db[i].dboid))
			continue;
		if (procs[i].handle != NULL)
			TerminateBackgroundWorker(procs[i].handle);
		if (leave[i] != NULL)
			SetLatch(leave[i]);
	}
	pfree(dbs);
	pfree(names);
	pfree(sorted_names);
	pfree(known);
	pfree(leave);
}

/*
 * Starts the worker of slot i, or marks the slot as waiting for a
 * background worker slot (logged once).
 */
static void
start_slot(SlotProcess *proc, int i, Oid dboid, TimestampTz now)
{
	WebhookDb  *db = &webhook_shared->db[i];

	if (webhook_start_db_worker("webhook_worker_main", "webhook worker", dboid, 0, &proc->handle))
	{
		proc->logged_no_worker = false;
		return;
	}
	SpinLockAcquire(&webhook_shared->mutex);
	if (db->dboid == dboid && db->state != DB_NO_WORKER)
	{
		db->state = DB_NO_WORKER;
		db->state_since = now;
	}
	SpinLockRelease(&webhook_shared->mutex);
	if (!proc->logged_no_worker)
	{
		ereport(LOG,
				(errmsg("webhook: no background worker slot is free to serve database \"%s\"; trying again every %d s",
						NameStr(proc->dbname), RESTART_DELAY_MS / 1000),
				 errhint("Raise max_worker_processes; webhook_workers shows the databases waiting.")));
		proc->logged_no_worker = true;
	}
	proc->retry_at = now + (TimestampTz) RESTART_DELAY_MS * 1000;
}

void
webhook_launcher_main(Datum arg)
{
	SlotProcess *procs;
	TimestampTz next_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	procs = MemoryContextAllocZero(TopMemoryContext, sizeof(SlotProcess) * webhook_shared->nslots);
	SpinLockAcquire(&webhook_shared->mutex);
	webhook_shared->launcher_latch = MyLatch;
	webhook_shared->rescan = true;
	SpinLockRelease(&webhook_shared->mutex);

	for (;;)
	{
		TimestampTz now;
		long		wait_ms = SCAN_INTERVAL_MS;
		int			probing = 0;
		bool		rescan;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_scan = 0;		/* webhook.database_name may have changed */
		}

		/* workers that left */
		now = GetCurrentTimestamp();
		for (int i = 0; i < webhook_shared->nslots; i++)
		{
			pid_t		pid;

			if (procs[i].handle == NULL ||
				GetBackgroundWorkerPid(procs[i].handle, &pid) != BGWH_STOPPED)
				continue;
			pfree(procs[i].handle);
			procs[i].handle = NULL;
			/* an error, a crash, its database being dropped: not at once */
			procs[i].retry_at = now + (TimestampTz) RESTART_DELAY_MS * 1000;
		}

		SpinLockAcquire(&webhook_shared->mutex);
		rescan = webhook_shared->rescan;
		SpinLockRelease(&webhook_shared->mutex);
		if (rescan || now >= next_scan)
		{
			sync_slots(procs);
			next_scan = now + (TimestampTz) SCAN_INTERVAL_MS * 1000;
		}

		for (int i = 0; i < webhook_shared->nslots; i++)
			if (procs[i].handle != NULL && webhook_shared->db[i].state == DB_PROBE)
				probing++;
		for (int i = 0; i < webhook_shared->nslots; i++)
		{
			WebhookDb  *db = &webhook_shared->db[i];
			Oid			dboid;
			WebhookDbState state;

			pid_t		running;

			if (procs[i].handle != NULL)
				continue;
			SpinLockAcquire(&webhook_shared->mutex);
			dboid = db->dboid;
			state = db->state;
			running = db->worker[0].pid;
			SpinLockRelease(&webhook_shared->mutex);
			/*
			 * No extension here, or a worker a previous launcher started
			 * still runs (this one was restarted): nothing to start.
			 */
			if (!OidIsValid(dboid) || state == DB_ABSENT || running != 0)
				continue;
			/* a CREATE EXTENSION asked for a probe: no delay */
			if (state == DB_PROBE && probing >= MAX_PROBES)
				continue;
			if (state != DB_PROBE && now < procs[i].retry_at)
			{
				wait_ms = Min(wait_ms, (procs[i].retry_at - now) / 1000 + 1);
				continue;
			}
			start_slot(&procs[i], i, dboid, now);
			if (state == DB_PROBE)
				probing++;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait_ms, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * SQL: webhook_worker_status() returns one row per database the launcher
 * looks after: its name, state, the pids of its first worker and fan-out
 * helper, since when it is in that state, and the pids of its delivery
 * workers (webhook.workers) by share, NULL for one that does not run.  Reads shared memory, and the names
 * of the databases.
 */
Datum
webhook_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			nslots = webhook_shared ? webhook_shared->nslots : 0;
	WebhookDb  *copy = palloc(sizeof(WebhookDb) * Max(nslots, 1));
	int			used = 0;

	InitMaterializedSRF(fcinfo, 0);
	/* the slots in use, field by field: the lock is held briefly */
	SpinLockAcquire(&webhook_shared->mutex);
	for (int i = 0; i < nslots; i++)
	{
		WebhookDb  *db = &webhook_shared->db[i];

		if (!OidIsValid(db->dboid))
			continue;
		copy[used].dboid = db->dboid;
		copy[used].state = db->state;
		for (int w = 0; w < webhook_workers; w++)
			copy[used].worker[w].pid = db->worker[w].pid;
		copy[used].fanout_pid = db->fanout_pid;
		copy[used].state_since = db->state_since;
		used++;
	}
	SpinLockRelease(&webhook_shared->mutex);
	for (int i = 0; i < used; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {0};
		Datum		pids[WEBHOOK_MAX_WORKERS];
		bool		absent[WEBHOOK_MAX_WORKERS];
		int			npids = 0;
		int			dims[1] = {webhook_workers};
		int			lbs[1] = {1};
		char	   *name;

		if (!OidIsValid(copy[i].dboid))
			continue;
		name = get_database_name(copy[i].dboid);
		values[0] = ObjectIdGetDatum(copy[i].dboid);
		if (name)
			values[1] = CStringGetTextDatum(name);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(wake_state_name(copy[i].state));
		values[3] = Int32GetDatum(copy[i].worker[0].pid);
		nulls[3] = copy[i].worker[0].pid == 0;
		values[4] = Int32GetDatum(copy[i].fanout_pid);
		nulls[4] = copy[i].fanout_pid == 0;
		values[5] = TimestampTzGetDatum(copy[i].state_since);
		nulls[5] = copy[i].state_since == 0;
		/* element k + 1 is share k's worker, NULL while none runs */
		for (int w = 0; w < webhook_workers; w++)
		{
			pids[w] = Int32GetDatum(copy[i].worker[w].pid);
			absent[w] = copy[i].worker[w].pid == 0;
			npids += !absent[w];
		}
		if (npids > 0)
			values[6] = PointerGetDatum(construct_md_array(pids, absent, 1, dims, lbs, INT4OID,
														   sizeof(int32), true, TYPALIGN_INT));
		else
			nulls[6] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
