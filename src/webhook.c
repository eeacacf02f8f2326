/*-------------------------------------------------------------------------
 * webhook.c
 *	  Module entry: GUCs, shared memory, worker registration, and the
 *	  commit-time wake-up of the worker.
 *
 * _PG_init does nothing but define GUCs, request shared memory and register
 * the launcher: no libcurl, no OpenSSL, no catalog access.  The library must
 * be in shared_preload_libraries because the worker and its shared state are
 * set up at postmaster start.
 *
 * A backend that enqueued an event arms a wake-up; the transaction callback
 * (registered once per backend) sets the latch of the fan-out helper (or of
 * the worker, while it is idle or no helper runs) only at COMMIT, so aborted
 * transactions never wake it.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* GUC variables */
char	   *webhook_database_name = NULL;
bool		webhook_allow_http = false;
char	   *webhook_allowed_networks = NULL;
int			webhook_max_connections = 64;
int			webhook_response_limit = 4096;
int			webhook_max_retry_after = 86400;
int			webhook_poll_interval = 1000;
int			webhook_batch_size = 500;
int			webhook_max_payload_size = 262144;
int			webhook_retention = 7 * 86400;
int			webhook_breaker_failures = 10;
int			webhook_breaker_cooldown = 5;
int			webhook_pause_after = 5 * 86400;
int			webhook_dead_letter_retention = 30 * 86400;
double		webhook_retry_jitter = 0.2;

WebhookShared *webhook_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

static bool xact_callback_registered = false;
static bool wake_armed = false;
static bool config_armed = false;
static bool claims_armed = false;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(webhook_wake);
PG_FUNCTION_INFO_V1(webhook_config_changed);

/* GUC hooks for webhook.allowed_networks: parse in check, install in assign. */
static bool
check_allowed_networks(char **newval, void **extra, GucSource source)
{
	char	   *msg = NULL;

	if (!destination_parse_networks(*newval, &msg))
	{
		GUC_check_errdetail("%s", msg ? msg : "invalid network list");
		free(msg);
		return false;
	}
	return true;
}

static void
assign_allowed_networks(const char *newval, void *extra)
{
	destination_reset_networks();
	(void) destination_parse_networks(newval, NULL);
}

static void
webhook_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WebhookShared)));
}

static void
webhook_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	webhook_shared = ShmemInitStruct("webhook", sizeof(WebhookShared), &found);
	if (!found)
	{
		SpinLockInit(&webhook_shared->mutex);
		webhook_shared->worker_latch = NULL;
		webhook_shared->worker_pid = 0;
		webhook_shared->worker_dboid = InvalidOid;
		webhook_shared->fanout_latch = NULL;
		webhook_shared->fanout_pid = 0;
		webhook_shared->worker_idle = false;
		webhook_shared->worker_fans_out = false;
		webhook_shared->claims_due = 0;
		pg_atomic_init_u64(&webhook_shared->config_generation, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * DROP DATABASE of the worker's database must not be blocked by the worker:
 * ask it to exit before dropdb() counts the backends still connected.  The
 * launcher waits before starting a new one.
 */
static void
webhook_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == DatabaseRelationId && webhook_shared)
	{
		pid_t		pid = 0;
		pid_t		helper = 0;

		SpinLockAcquire(&webhook_shared->mutex);
		if (webhook_shared->worker_dboid == objectId)
		{
			pid = webhook_shared->worker_pid;
			helper = webhook_shared->fanout_pid;
		}
		SpinLockRelease(&webhook_shared->mutex);
		if (pid != 0)
			kill(pid, SIGTERM);
		if (helper != 0)
			kill(helper, SIGTERM);
	}
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;

	DefineCustomBoolVariable("webhook.allow_http",
							 "Allows endpoints with plain http:// URLs.",
							 NULL, &webhook_allow_http, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("webhook.allowed_networks",
							   "Networks (CIDR list) that may be reached although they are loopback, private or reserved.",
							   NULL, &webhook_allowed_networks, "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_allowed_networks, assign_allowed_networks, NULL);
	DefineCustomIntVariable("webhook.max_connections",
							"Maximum number of requests the worker has in flight.",
							NULL, &webhook_max_connections, 64, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.response_limit",
							"Bytes of each response body kept in webhook_attempts.",
							NULL, &webhook_response_limit, 4096, 0, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.max_retry_after",
							"Longest delay a Retry-After header can impose.",
							NULL, &webhook_max_retry_after, 86400, 0, 30 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.poll_interval",
							"How often the worker looks for retries coming due when nothing wakes it.",
							NULL, &webhook_poll_interval, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.batch_size",
							"Deliveries claimed or recorded by the worker in one statement.",
							NULL, &webhook_batch_size, 500, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.max_payload_size",
							"Largest event data accepted, in bytes of JSON text.",
							NULL, &webhook_max_payload_size, 262144, 1024, 64 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.breaker_failures",
							"Failed requests in a row that open an endpoint's circuit; 0 disables the breaker.",
							NULL, &webhook_breaker_failures, 10, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.breaker_cooldown",
							"First cool-down of an open circuit; it doubles after each failed probe, up to 60 times this.",
							NULL, &webhook_breaker_cooldown, 5, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.pause_after",
							"How long every request to an endpoint may fail before it is paused; 0 never pauses.",
							NULL, &webhook_pause_after, 5 * 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.retention",
							"How long delivered deliveries, their attempts and finished events are kept; 0 keeps them for ever.",
							NULL, &webhook_retention, 7 * 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("webhook.dead_letter_retention",
							"How long dead letters are kept; 0 keeps them for ever.",
							NULL, &webhook_dead_letter_retention, 30 * 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomRealVariable("webhook.retry_jitter",
							 "Spreads each retry delay at random by up to this fraction of it either way; 0 keeps the schedule exact.",
							 NULL, &webhook_retry_jitter, 0.2, 0.0, 1.0,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook must be loaded via shared_preload_libraries"),
				 errhint("Add webhook to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineCustomStringVariable("webhook.database_name",
							   "Database in which the webhook worker delivers events.",
							   NULL, &webhook_database_name, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("webhook");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = webhook_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = webhook_shmem_startup;
	prev_object_access_hook = object_access_hook;
	object_access_hook = webhook_object_access;
	capture_init();
	redact_init();

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "webhook");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "webhook_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "webhook launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "webhook launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Sets the delivery worker's latch, if one is running, and asks it to run
 * the given kinds of claim (claims_due).  Never ERRORs.
 */
void
webhook_wake_worker(uint32 claims)
{
	if (webhook_shared == NULL)
		return;
	SpinLockAcquire(&webhook_shared->mutex);
	webhook_shared->claims_due |= claims;
	if (webhook_shared->worker_latch != NULL)
		SetLatch(webhook_shared->worker_latch);
	SpinLockRelease(&webhook_shared->mutex);
}

/*
 * Wakes whoever fans out committed events.  An idle worker does it itself,
 * in the transaction that claims them: the shortest path from commit to
 * request.  A busy worker leaves it to the fan-out helper, which wakes the
 * worker once the events are fanned out.  Never ERRORs.
 */
static void
wake_fanout(bool claims)
{
	if (webhook_shared == NULL)
		return;
	SpinLockAcquire(&webhook_shared->mutex);
	if (claims)
		webhook_shared->claims_due |= CLAIMS_ALL;
	if (webhook_shared->fanout_latch != NULL && !webhook_shared->worker_idle)
		SetLatch(webhook_shared->fanout_latch);
	else if (webhook_shared->worker_latch != NULL)
	{
		webhook_shared->worker_fans_out = true;
		SetLatch(webhook_shared->worker_latch);
	}
	SpinLockRelease(&webhook_shared->mutex);
}

static void
webhook_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (config_armed && webhook_shared)
				pg_atomic_fetch_add_u64(&webhook_shared->config_generation, 1);
			if (wake_armed)
				wake_fanout(claims_armed);
			if (config_armed)
				webhook_wake_worker(CLAIMS_ALL);
			wake_armed = config_armed = claims_armed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_armed = config_armed = claims_armed = false;
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
		RegisterXactCallback(webhook_xact_callback, NULL);
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
