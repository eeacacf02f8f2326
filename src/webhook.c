/*-------------------------------------------------------------------------
 * webhook.c
 *	  Module entry: the GUCs, and _PG_init.
 *
 * _PG_init does nothing but define GUCs, have wake.c request shared memory,
 * install the hooks of the modules that need one (capture.c, redact.c) and
 * register the launcher: no libcurl, no OpenSSL, no catalog access.  The
 * library must be in shared_preload_libraries because the launcher and the
 * shared state are set up at postmaster start.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* GUC variables */
char	   *webhook_database_name = NULL;
bool		webhook_allow_http = false;
char	   *webhook_allowed_networks = NULL;
int			webhook_workers = 1;
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

void		_PG_init(void);


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

void
_PG_init(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;

	DefineCustomStringVariable("webhook.database_name",
							   "The only database the webhook workers serve; empty: every database that has the extension.",
							   NULL, &webhook_database_name, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
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
							"How often the worker looks for work when nothing wakes it (rows changed by hand without webhook_wake).",
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

	DefineCustomIntVariable("webhook.workers",
							"Delivery workers per database; the database's endpoints are split among them.",
							NULL, &webhook_workers, 1, 1, WEBHOOK_MAX_WORKERS,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("webhook");

	wake_init();
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
