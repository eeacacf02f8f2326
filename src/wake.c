/*-------------------------------------------------------------------------
 * wake.c
 *	  Shared memory: one slot per database the launcher looks after, and
 *	  the commit-time wake-ups of that database's workers.
 *
 * A slot holds what backends, the launcher and the database's delivery
 * workers (webhook.workers) and fan-out helper tell each other: the
 * state of the database (being probed, served, without the extension,
 * waiting for a worker slot or for an update), the processes' latches and
 * pids, and each worker's wake-up requests.  Slots are found by database OID; there are
 * WEBHOOK_MAX_DATABASES of them.  Every
 * field is read and written under the one spinlock, for a few
 * instructions at a time.
 *
 * A backend that enqueued an event arms a wake-up; the transaction callback
 * (registered once per backend) sets the latch of its database's fan-out
 * helper (or of the worker, while it is idle or no helper runs) only at
 * COMMIT, so aborted transactions never wake it.  A committed CREATE
 * EXTENSION asks the launcher to probe the database again, and a
 * DROP DATABASE stops its processes before dropdb() counts the backends
 * still connected.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

WebhookShared *webhook_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

static bool xact_callback_registered = false;
static bool wake_armed = false;
static bool config_armed = false;
static bool claims_armed = false;
static bool created_armed = false;	/* CREATE EXTENSION webhook in this transaction */

PG_FUNCTION_INFO_V1(webhook_wake);
PG_FUNCTION_INFO_V1(webhook_config_changed);

static Size
shared_size(void)
{
	return add_size(offsetof(WebhookShared, db),
					mul_size(WEBHOOK_MAX_DATABASES, sizeof(WebhookDb)));
}

static void
wake_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(shared_size()));
}

static void
wake_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	webhook_shared = ShmemInitStruct("webhook", shared_size(), &found);
	if (!found)
	{
		memset(webhook_shared, 0, shared_size());
		SpinLockInit(&webhook_shared->mutex);
		webhook_shared->nslots = WEBHOOK_MAX_DATABASES;
		for (int i = 0; i < webhook_shared->nslots; i++)
			pg_atomic_init_u64(&webhook_shared->db[i].config_generation, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot of database dboid, or NULL.  The caller holds the mutex.  A slot
 * stays where it is while its database is listed, so a process may keep a
 * pointer to its own.
 */
WebhookDb *
wake_find_slot(Oid dboid)
{
	for (int i = 0; i < webhook_shared->nslots; i++)
		if (webhook_shared->db[i].dboid == dboid)
			return &webhook_shared->db[i];
	return NULL;
}

/*
 * Whether a process of the slot still runs (a worker or the helper); the
 * caller holds the mutex.
 */
bool
wake_slot_busy(const WebhookDb *db)
{
	for (int i = 0; i < WEBHOOK_MAX_WORKERS; i++)
		if (db->worker[i].pid != 0)
			return true;
	return db->fanout_pid != 0;
}

/*
 * This backend's database's slot, or NULL; the caller holds the mutex.
 * The index found is kept, and checked, as the database cannot change.
 */
static WebhookDb *
my_slot(void)
{
	static int	cached = -1;

	if (cached >= 0 && webhook_shared->db[cached].dboid == MyDatabaseId)
		return &webhook_shared->db[cached];
	for (int i = 0; i < webhook_shared->nslots; i++)
		if (webhook_shared->db[i].dboid == MyDatabaseId)
		{
			cached = i;
			return &webhook_shared->db[i];
		}
	return NULL;
}

/*
 * The object access hook: a CREATE EXTENSION webhook arms a probe of this
 * database for its commit; a DROP DATABASE stops the database's processes
 * now, so that dropdb() does not wait for them.  The launcher waits before
 * probing the database again.
 */
static void
wake_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				   int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (webhook_shared == NULL)
		return;

	/*
	 * Any extension: its pg_extension row is not visible yet to tell which
	 * (no command counter increment since its insert), and a probe of a
	 * database without this one costs a worker that starts and leaves.
	 */
	if (access == OAT_POST_CREATE && classId == ExtensionRelationId)
	{
		webhook_arm_wake(false, false);
		created_armed = true;
	}
	else if (access == OAT_DROP && classId == DatabaseRelationId)
	{
		pid_t		pids[WEBHOOK_MAX_WORKERS + 1];
		int			n = 0;
		WebhookDb  *db;

		SpinLockAcquire(&webhook_shared->mutex);
		db = wake_find_slot(objectId);
		for (int i = 0; db != NULL && i < WEBHOOK_MAX_WORKERS; i++)
			if (db->worker[i].pid != 0)
				pids[n++] = db->worker[i].pid;
		if (db != NULL && db->fanout_pid != 0)
			pids[n++] = db->fanout_pid;
		SpinLockRelease(&webhook_shared->mutex);
		for (int i = 0; i < n; i++)
			kill(pids[i], SIGTERM);
	}
}

/*
 * Asks every delivery worker of this database but the one of share except
 * (-1: none) to run the given kinds of claim (claims_due), and sets the
 * latch of each that runs.  Never ERRORs.
 */
void
webhook_wake_workers(uint32 claims, int except)
{
	WebhookDb  *db;
	Latch	   *latches[WEBHOOK_MAX_WORKERS];
	int			n = 0;

	if (webhook_shared == NULL)
		return;
	SpinLockAcquire(&webhook_shared->mutex);
	db = my_slot();
	for (int i = 0; db != NULL && i < webhook_workers; i++)
	{
		if (i == except)
			continue;
		db->worker[i].claims_due |= claims;
		if (db->worker[i].latch != NULL)
			latches[n++] = db->worker[i].latch;
	}
	SpinLockRelease(&webhook_shared->mutex);
	/* a latch stays valid shared memory: a stale one wakes another process */
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * Wakes whoever fans out committed events.  An idle first worker does it
 * itself, in the transaction that claims them: the shortest path from
 * commit to request.  A busy one leaves it to the fan-out helper, which
 * wakes the workers once the events are fanned out.  A commit that asks
 * for claims (a retry or replay by hand) also wakes the other workers,
 * which claim what may be theirs.  Never ERRORs.
 */
static void
wake_fanout(bool claims)
{
	WebhookDb  *db;
	Latch	   *latch = NULL;

	if (webhook_shared == NULL)
		return;
	SpinLockAcquire(&webhook_shared->mutex);
	db = my_slot();
	if (db != NULL)
	{
		if (claims)
			db->worker[0].claims_due |= CLAIMS_ALL;
		if (db->fanout_latch != NULL && !db->worker_idle)
			latch = db->fanout_latch;
		else if (db->worker[0].latch != NULL)
		{
			db->worker_fans_out = true;
			latch = db->worker[0].latch;
		}
	}
	SpinLockRelease(&webhook_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
	if (claims)
		webhook_wake_workers(CLAIMS_ALL, 0);
}

/*
 * A committed CREATE EXTENSION: the launcher probes this database again
 * (at once, even if it found no extension here before).
 */
static void
wake_probe(void)
{
	WebhookDb  *db;
	Latch	   *latch;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&webhook_shared->mutex);
	db = my_slot();
	if (db != NULL)
		db->probes++;
	if (db != NULL && db->state != DB_SERVED && db->state != DB_OTHER_VERSION)
	{
		db->state = DB_PROBE;
		db->state_since = now;
	}
	webhook_shared->rescan = true;
	latch = webhook_shared->launcher_latch;
	SpinLockRelease(&webhook_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* Whether this transaction created the extension webhook. */
static bool
created_here(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		here = false;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("webhook"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		here = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return here;
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* still in the transaction: was it this extension it created? */
			if (created_armed && !created_here())
				created_armed = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			/*
			 * No wake-up crosses to the session that runs COMMIT PREPARED:
			 * the worker would keep old endpoint settings, and the launcher
			 * would not look at this database again.  Events alone are
			 * found by the worker's poll.
			 */
			if (config_armed || (created_armed && created_here()))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed webhook endpoints or created the extension webhook")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (webhook_shared != NULL && config_armed)
			{
				WebhookDb  *db;

				SpinLockAcquire(&webhook_shared->mutex);
				db = my_slot();
				if (db != NULL)
					pg_atomic_fetch_add_u64(&db->config_generation, 1);
				SpinLockRelease(&webhook_shared->mutex);
			}
			if (wake_armed)
				wake_fanout(claims_armed);
			if (config_armed)
				webhook_wake_workers(CLAIMS_ALL, -1);
			if (created_armed && webhook_shared != NULL)
				wake_probe();
			wake_armed = config_armed = claims_armed = created_armed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction's events wait for its COMMIT PREPARED,
			 * perhaps in another session: the worker's poll finds them.
			 */
			wake_armed = config_armed = claims_armed = created_armed = false;
			break;
		default:
			break;
	}
}

/*
 * Arms the worker wake-up for the end of the current transaction; with
 * config_changed, the worker also reloads endpoint settings.  Without
 * claims, the transaction only enqueued events (capture, webhook_publish):
 * an idle worker woken for them fans them out and then looks only for the
 * kinds of deliveries the fan-out made.  With claims, something else may
 * have become due (a replay, a requeue, rows changed by hand): it looks
 * for every kind.
 */
void
webhook_arm_wake(bool config_changed, bool claims)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_armed = true;
	if (config_changed)
		config_armed = true;
	if (claims)
		claims_armed = true;
}

/*
 * SQL: webhook_wake(events_only) wakes the worker when this transaction
 * commits; events_only says that the transaction only enqueued events.
 */
Datum
webhook_wake(PG_FUNCTION_ARGS)
{
	webhook_arm_wake(false, PG_NARGS() < 1 || PG_ARGISNULL(0) || !PG_GETARG_BOOL(0));
	PG_RETURN_VOID();
}

/* SQL trigger: endpoint settings changed; the worker reloads at commit. */
Datum
webhook_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "webhook_config_changed: not called by trigger manager");
	webhook_arm_wake(true, true);
	return PointerGetDatum(NULL);
}

/* The text of a database state, as webhook_workers shows it. */
const char *
wake_state_name(WebhookDbState state)
{
	switch (state)
	{
		case DB_FREE:
			return "free";
		case DB_PROBE:
			return "starting";
		case DB_SERVED:
			return "served";
		case DB_ABSENT:
			return "no extension";
		case DB_NO_WORKER:
			return "waiting for a worker slot";
		case DB_OTHER_VERSION:
			return "waiting for an update";
	}
	return "?";
}

/* Requests the shared memory and installs the hooks; called from _PG_init. */
void
wake_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wake_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wake_shmem_startup;
	prev_object_access_hook = object_access_hook;
	object_access_hook = wake_object_access;
}
