/*-------------------------------------------------------------------------
 * worker.c
 *	  The delivery workers of one database, and their fan-out helper.
 *
 * The launcher (launcher.c) starts a worker in each database it looks
 * after.  A worker that finds no extension there marks its slot so and
 * leaves; one that finds it serves the database until the extension is
 * dropped (then it leaves the same way) or the database is.  That first
 * worker starts webhook.workers - 1 others; the database's endpoints are
 * split among them by id (endpoint id modulo webhook.workers, taken
 * non-negative: a worker's share), and each claims, sends and records its
 * share's deliveries.  The first one alone fans out (with its helper),
 * keeps retention and the slot's state, recovers expired leases and those
 * of another that stopped, and serves the share of any other that does
 * not run.
 *
 * The delivery worker's loop:
 *	  wait (latch, libcurl sockets, timers) -> collect finished requests ->
 *	  one short transaction: record outcomes, claim due deliveries ->
 *	  commit -> start requests (no transaction open).
 * The worker starts a fan-out helper in the same database, which turns
 * committed events into deliveries and wakes the worker: fan-out is a
 * quarter of the work per delivery, and this way it runs on another core
 * than the requests.  While no helper runs (not started yet, no free
 * background worker slot), the worker fans out itself, in its cycle.
 * A crash loses nothing: claimed rows carry a lease whose token holds the
 * worker's share, and a worker's startup sweep returns its share's
 * in-flight rows to pending (only one process holds a share's place in
 * the slot at a time; another worker serving that share meanwhile leases
 * under its own).
 * A failing receiver is data (rows in webhook_attempts), never an ERROR.
 * An ERROR in a transaction is reported, the transaction aborted, and the
 * loop goes on after a pause.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "queue.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "common/pg_prng.h"

/* How long the worker waits before starting its fan-out helper again. */
#define RESTART_DELAY_MS 10000
/* How often expired leases are looked for while running. */
#define LEASE_SWEEP_MS 30000
#define MAX_DONE 256
/*
 * Retention: rows of each kind deleted per step, and the pause between
 * steps: a hundredth of the shorter retention, within these bounds.  A step
 * costs about a millisecond even when it finds nothing, and a commit that
 * arrives meanwhile waits for it: with the default ages (7 and 30 days) it
 * runs once a minute, and a row outlives its age by about 1 % of it (by a
 * second under 100 s), plus the wait for the worker's next wake-up while it
 * is idle.
 */
#define PURGE_LIMIT 2000
#define PURGE_MIN_INTERVAL_MS 1000
#define PURGE_MAX_INTERVAL_MS 60000

/*
 * Commits wake the worker (or its helper) one by one.  Under a stream of small
 * transactions, a claim cycle per wake-up would cost more than the
 * deliveries: wake-ups closer than this to the previous claim wait for the
 * gap, so each cycle takes all that committed meanwhile.  At idle the
 * previous claim is long past and a commit is claimed at once.
 */
#define MIN_CLAIM_GAP_US 5000
/*
 * While a DROP EXTENSION is pending, cycles are tried again this often (not
 * at every finished request), and the wait is logged once it lasts this long.
 */
#define DROP_RETRY_US 1000000
#define DROP_WAIT_LOG_US 10000000
/* An idle worker gives freed memory back to the system at most this often. */
#define TRIM_INTERVAL_MS 10000

/* ---------------------------------------------------------------------
 * Delivery worker
 * ---------------------------------------------------------------------
 */

/* The endpoint cache: every endpoint's settings, as last loaded. */
static struct
{
	MemoryContext cxt;			/* strings of the cache */
	HTAB	   *endpoints;		/* Endpoint by id */
	uint64		generation;		/* the configuration generation loaded */
	bool		loaded;
	Oid			installation;	/* the installation it was loaded from */
	bool		have_batch;		/* some endpoint uses the batch format */
	bool		have_ordered;	/* some endpoint is ordered */
	bool		have_rate_limit;	/* some endpoint has a rate limit */
}			cache;

/* The jobs: claimed, waiting for a connection, in flight, finished. */
static struct
{
	MemoryContext cxt;			/* parent of every job's context */
	HTAB	   *held;			/* HeldCount per endpoint, for max_in_flight */
	Job		   *queued;			/* claimed, not yet started (FIFO) */
	Job		  **queued_tail;
	int			nqueued;
	Job		   *claimed;		/* claimed in the open transaction */
	Job		   *done;			/* finished, outcome not yet recorded */
	int			ndone;
	int64		next_token;		/* the lease token of the next claim */
}			jobs = {.queued_tail = &jobs.queued};

/*
 * When to claim what.  next_due is when the next retry (or probe) comes
 * due, 0 for none known, and find_next_due whether to look it up at the
 * end of this cycle: at start, after a cycle that scheduled a retry, and
 * after the claim at a due time.  The worker sleeps until then, so a retry
 * starts on time rather than at the next poll.
 */
static struct
{
	TimestampTz throttle_wake;	/* claim then for rate-limited endpoints */
	TimestampTz next_due;
	bool		find_next_due;
	uint32		turn;			/* which kind of claim goes first */
	TimestampTz last[CLAIM_KINDS];	/* when each kind of claim last ran */
	bool		due[CLAIM_KINDS];	/* ... and whether it should run at once */
}			claims = {.find_next_due = true};

/*
 * A process the first worker keeps running (the fan-out helper, another
 * worker): its handle while it runs, and when to start it next.
 */
typedef struct Child
{
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
} Child;

/*
 * This worker in its database: its slot, which of the database's workers
 * it is, the processes the first one starts (the fan-out helper and the
 * other workers), a pending DROP.
 */
static struct
{
	WebhookDb  *db;				/* this database's slot in shared memory */
	int			index;			/* which worker: its share of the endpoints */
	pid_t		first;			/* the first worker's pid (the others') */
	char		dbname[NAMEDATALEN];	/* for messages outside transactions */
	Child		helper;			/* the fan-out helper */
	bool		helper_warned;
	Child		others[WEBHOOK_MAX_WORKERS];	/* the other workers, by index */
	bool		others_warned;
	bool		others_yielded; /* stopped for a database waiting for a slot */
	uint32		shares;			/* the shares served in this cycle (shares_served) */
	bool		shares_shrank;	/* ... fewer than in the one before */
	uint32		wake_others;	/* claims to ask of the others after this cycle */
	bool		woke_idle;		/* a commit asked the idle worker to fan out */
	int			configured_sync_commit; /* while a cycle overrides it, else -1 */
	TimestampTz drop_waited_since;	/* cycles skipped for a DROP since */
	TimestampTz drop_retry_at;	/* ... and when to try the next one */
	bool		drop_wait_logged;
	uint32		probes_seen;	/* the slot's probe count before the snapshot */
}			self = {.configured_sync_commit = -1};

static void set_db_state(WebhookDbState state);
static void leave_absent(void);
static void cycle_record(void);
static void cycle_sweep(bool all, uint32 orphaned);
static bool cycle_claim(void);
static void cycle_end(void);

static void
worker_exit(int code, Datum arg)
{
	Latch	   *launcher;

	SpinLockAcquire(&webhook_shared->mutex);
	if (self.db->worker[self.index].pid == MyProcPid)
	{
		self.db->worker[self.index].latch = NULL;
		self.db->worker[self.index].pid = 0;
		if (self.index == 0)
		{
			self.db->worker_idle = false;
			self.db->worker_fans_out = false;
		}
	}
	launcher = webhook_shared->launcher_latch;
	SpinLockRelease(&webhook_shared->mutex);
	/* a launcher started after this worker has no handle to be told by */
	if (launcher != NULL && self.index == 0)
		SetLatch(launcher);
	/* the helper and the other workers also leave once they see this one gone */
	if (self.helper.handle != NULL)
		TerminateBackgroundWorker(self.helper.handle);
	for (int i = 1; i < WEBHOOK_MAX_WORKERS; i++)
		if (self.others[i].handle != NULL)
			TerminateBackgroundWorker(self.others[i].handle);
	http_engine_shutdown();
}

/* Milliseconds from now until t, rounded up; 0 once t has passed. */
static long
ms_until(TimestampTz t)
{
	return (long) Max(0, (t - GetCurrentTimestamp() + 999) / 1000);
}

/* Session settings of the worker and of its fan-out helper. */
static void
session_settings(void)
{
	/*
	 * Every statement the worker runs is meant to walk an index: the queue
	 * tables are mostly dead rows between vacuums, and a plan made while a
	 * table was empty (a sequential scan looks cheapest then) is kept for
	 * the life of the worker and would grow with the table.
	 */
	SetConfigOption("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION);
	/* short statements, run thousands of times: never worth compiling */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	/*
	 * The search_path the extension's functions run with.  Every name the
	 * worker uses is qualified; what matters is that foreign-key checks,
	 * fired by the fan-out and by the worker's other statements, and by
	 * webhook_fanout() called by hand (it runs with this search_path),
	 * find their cached plans made under the same search_path.  A plan made
	 * under another one is made again, on every check.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
}

/*
 * The kinds of claim that wake-ups since the last call asked for
 * (claims_due): what the helper fanned out, or everything.
 */
static uint32
take_claims_due(void)
{
	uint32		claims;

	SpinLockAcquire(&webhook_shared->mutex);
	claims = self.db->worker[self.index].claims_due;
	self.db->worker[self.index].claims_due = 0;
	SpinLockRelease(&webhook_shared->mutex);
	return claims;
}

/*
 * Marks the kinds of claim in kinds (1 << ClaimKind) due; the plain claim
 * runs at every claim cycle anyway.
 */
static void
mark_due(uint32 kinds)
{
	for (int kind = CLAIM_BATCH; kind <= CLAIM_ORDERED; kind++)
		if (kinds & (1 << kind))
			claims.due[kind] = true;
	if (kinds & CLAIMS_FIND_DUE)
		claims.find_next_due = true;
}

/* The kinds of claim that take ep's deliveries, besides the plain one. */
static uint32
claims_of(const Endpoint *ep)
{
	return (ep->format == FORMAT_BATCH ? 1 << CLAIM_BATCH : 0) |
		(ep->ordered ? 1 << CLAIM_ORDERED : 0);
}

/* Sets the fan-out helper's latch, if it runs. */
static void
wake_helper(void)
{
	Latch	   *latch;

	SpinLockAcquire(&webhook_shared->mutex);
	latch = self.db->fanout_latch;
	SpinLockRelease(&webhook_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * After a burst, gives the memory it freed back to the system: batch bodies
 * and claimed rows of a busy period are freed, but glibc keeps the heap
 * they grew (tens of MB after a run of large batches) for the life of the
 * process.  The worker calls it after a whole wait with nothing to do, at
 * most every TRIM_INTERVAL_MS, so never on the way from a commit to its
 * request.
 */
static void
give_back_memory(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/*
 * Tells committing backends whether the worker is idle (they wake it
 * rather than the helper then).  Returns whether a commit woke it for
 * fan-out since it last said so.
 */
static bool
set_idle(bool idle)
{
	bool		fans_out;

	SpinLockAcquire(&webhook_shared->mutex);
	fans_out = self.db->worker_fans_out;
	self.db->worker_fans_out = false;
	self.db->worker_idle = idle;
	SpinLockRelease(&webhook_shared->mutex);
	return fans_out;
}

/*
 * Whether child c runs (BGWH_STARTED), is about to (BGWH_NOT_YET_STARTED)
 * or not (BGWH_STOPPED); one found stopped is forgotten, and its next
 * start is RESTART_DELAY_MS after now.
 */
static BgwHandleStatus
child_state(Child *c, TimestampTz now)
{
	BgwHandleStatus st;
	pid_t		pid;

	if (c->handle == NULL)
		return BGWH_STOPPED;
	st = GetBackgroundWorkerPid(c->handle, &pid);
	if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
		return st;
	pfree(c->handle);
	c->handle = NULL;
	c->next_start = now + (TimestampTz) RESTART_DELAY_MS * 1000;
	return BGWH_STOPPED;
}

/*
 * Starts child c (function, type and index as webhook_start_db_worker
 * takes them) if it has no handle and its next start has come: at once
 * the first time, then RESTART_DELAY_MS after it stopped or could not
 * start.  False when no background worker slot was free.  Children are
 * registered with this worker's pid: they leave when it does.
 */
static bool
child_start(Child *c, const char *function, const char *type, int index, TimestampTz now)
{
	if (c->handle != NULL)
		return true;
	if (now < c->next_start)
		return true;
	if (webhook_start_db_worker(function, type, MyDatabaseId, index, &c->handle))
		return true;
	c->next_start = now + (TimestampTz) RESTART_DELAY_MS * 1000;
	return false;
}

/* Whether the fan-out helper runs; starts it when it does not (child_start). */
static bool
helper_running(void)
{
	TimestampTz now = GetCurrentTimestamp();
	BgwHandleStatus st = child_state(&self.helper, now);

	if (st != BGWH_STOPPED)
		return st == BGWH_STARTED;
	if (!child_start(&self.helper, "webhook_fanout_main", "webhook fanout", 0, now) && !self.helper_warned)
	{
		ereport(WARNING,
				(errmsg("webhook: could not start the fan-out helper; the worker fans out itself"),
				 errhint("Raise max_worker_processes.")));
		self.helper_warned = true;
	}
	return false;
}

/*
 * Whether a database the launcher looks after waits for a background
 * worker slot for its first worker.
 */
static bool
database_starved(void)
{
	bool		starved = false;

	SpinLockAcquire(&webhook_shared->mutex);
	for (int i = 0; i < webhook_shared->nslots && !starved; i++)
		starved = OidIsValid(webhook_shared->db[i].dboid) &&
			webhook_shared->db[i].state == DB_NO_WORKER;
	SpinLockRelease(&webhook_shared->mutex);
	return starved;
}

/*
 * The first worker starts the others (webhook.workers), each at once the
 * first time and, after it stopped, again RESTART_DELAY_MS later; they are
 * registered with its pid and leave when it does.  While another database
 * waits for a background worker slot for its first worker, none is
 * started and those that run are stopped: a database served by one worker
 * comes before a second worker here (this one serves their shares, and
 * takes back what they had in flight).  Returns when to look again: the
 * next start, or the next look for a waiting database.
 */
static TimestampTz
start_others(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = now + (TimestampTz) RESTART_DELAY_MS * 1000;
	bool		starved = database_starved();

	for (int i = 1; i < webhook_workers; i++)
	{
		Child	   *c = &self.others[i];

		if (starved && c->handle != NULL)
		{
			if (!self.others_yielded)
				ereport(LOG,
						(errmsg("webhook: stopping the further delivery workers of database \"%s\": another database waits for a background worker slot",
								self.dbname)));
			self.others_yielded = true;
			TerminateBackgroundWorker(c->handle);
		}
		if (child_state(c, now) != BGWH_STOPPED)
			continue;
		if (starved)
			c->next_start = Max(c->next_start, next);
		else if (!child_start(c, "webhook_worker_main", "webhook worker", i, now) && !self.others_warned)
		{
			ereport(WARNING,
					(errmsg("webhook: could not start delivery worker %d of %d; the first worker serves its endpoints",
							i + 1, webhook_workers),
					 errhint("Raise max_worker_processes.")));
			self.others_warned = true;
		}
		if (c->handle == NULL && c->next_start < next)
			next = c->next_start;
	}
	if (!starved)
		self.others_yielded = false;
	return next;
}

/*
 * The shares of the endpoints this worker serves (bit k: share k): its
 * own, and for the first worker also those of the others that do not run.
 * While one starts or stops, its share may be served by both for a
 * moment: each claim leases its rows, so nothing is sent twice, but the
 * endpoint's max_in_flight and rate limit are each worker's alone then.
 */
static uint32
shares_served(void)
{
	uint32		shares = (uint32) 1 << self.index;

	if (self.index != 0)
		return shares;
	SpinLockAcquire(&webhook_shared->mutex);
	for (int i = 1; i < webhook_workers; i++)
		if (self.db->worker[i].pid == 0)
			shares |= (uint32) 1 << i;
	SpinLockRelease(&webhook_shared->mutex);
	return shares;
}

/*
 * The shares whose leases this worker takes back when it starts: its own;
 * the first worker also those of shares no worker has now
 * (webhook.workers was lowered).
 */
static uint32
shares_leased(void)
{
	uint32		shares = (uint32) 1 << self.index;

	if (self.index == 0)
		for (int i = webhook_workers; i < WEBHOOK_MAX_WORKERS; i++)
			shares |= (uint32) 1 << i;
	return shares;
}

/*
 * The shares of other workers that no process holds and none is being
 * started for: their leases belong to processes that are gone, and no
 * worker can take one before the first worker starts it (in its loop,
 * never during a cycle), so the first worker may take them back at once.
 * 0 for the others.
 */
static uint32
shares_orphaned(void)
{
	uint32		shares = 0;

	if (self.index != 0)
		return 0;
	SpinLockAcquire(&webhook_shared->mutex);
	for (int i = 1; i < webhook_workers; i++)
		if (self.db->worker[i].pid == 0 && self.others[i].handle == NULL)
			shares |= (uint32) 1 << i;
	SpinLockRelease(&webhook_shared->mutex);
	return shares;
}

/* Whether this worker serves endpoint id in this cycle. */
static inline bool
serves(int64 id)
{
	return (self.shares & ((uint32) 1 << queue_share(id, webhook_workers))) != 0;
}

/* The worker's entry for an endpoint, created empty when missing. */
static HeldCount *
held_entry(int64 endpoint_id)
{
	bool		found;
	HeldCount  *h = hash_search(jobs.held, &endpoint_id, HASH_ENTER, &found);

	if (!found)
	{
		h->count = 0;
		h->budget = -1;
		h->limited = false;
		h->tokens = 0;
		h->refilled = 0;
		h->accepted_attempt = 0;
		h->accepted_at = 0;
	}
	return h;
}

/* Counts a request the worker holds for an endpoint (+1) or no longer holds (-1). */
static void
hold(Job *job, int delta)
{
	HeldCount  *h = held_entry(job->endpoint_id);

	h->count = Max(0, h->count + delta);
}

/*
 * Token buckets of rate-limited endpoints: refills each, and sets what the
 * next claim may take of it (budget; -1 for endpoints without a limit).
 * A bucket holds a tenth of a second of requests (at least one), so a
 * limit is kept from the first second on, with no burst past it.
 */
static void
refill_buckets(TimestampTz now)
{
	HASH_SEQ_STATUS seq;
	HeldCount  *h;
	Endpoint   *ep;

	if (!cache.have_rate_limit)
		return;
	hash_seq_init(&seq, cache.endpoints);
	while ((ep = hash_seq_search(&seq)) != NULL)
	{
		double		burst;

		if (ep->rate_limit <= 0)
			continue;
		burst = Max(1.0, ep->rate_limit / 10.0);
		h = held_entry(ep->id);
		if (h->refilled == 0)
			h->tokens = burst;	/* a full bucket at first use */
		else
			h->tokens = Min(burst, h->tokens + (now - h->refilled) / 1e6 * ep->rate_limit);
		h->refilled = now;
		/* spent to the last token when last claimed: it may have more */
		if (h->budget == 0 && h->tokens >= 1)
			mark_due(claims_of(ep));
		h->budget = Max(0, (int) h->tokens);
		h->limited = true;
	}
}

/*
 * Takes a token for each request claimed from a rate-limited endpoint; an
 * endpoint that used its whole budget may have more waiting: returns when
 * its bucket will hold enough for another claim (0: no such endpoint).
 */
static TimestampTz
spend_tokens(Job *list, TimestampTz now)
{
	TimestampTz wake = 0;
	HASH_SEQ_STATUS seq;
	Endpoint   *ep;

	if (!cache.have_rate_limit)
		return 0;
	for (Job *j = list; j != NULL; j = j->next)
	{
		HeldCount  *h = hash_search(jobs.held, &j->endpoint_id, HASH_FIND, NULL);

		if (h != NULL && h->limited)
		{
			h->tokens -= 1;
			h->budget = Max(0, h->budget - 1);
		}
	}
	hash_seq_init(&seq, cache.endpoints);
	while ((ep = hash_seq_search(&seq)) != NULL)
	{
		HeldCount  *h;
		double		want;
		TimestampTz at;

		if (ep->rate_limit <= 0 ||
			(h = hash_search(jobs.held, &ep->id, HASH_FIND, NULL)) == NULL || h->tokens >= 1)
			continue;
		/* wait for 10 ms of requests (at least one), not for every token */
		want = Min(Max(1.0, ep->rate_limit / 100.0), Max(1.0, ep->rate_limit / 10.0));
		at = now + (TimestampTz) (Max(0.0, want - h->tokens) / ep->rate_limit * 1e6);
		if (wake == 0 || at < wake)
			wake = at;
	}
	return wake;
}

static void
free_job(Job *job)
{
	if (job->held)
		hold(job, -1);
	if (job->req.easy)
		curl_easy_cleanup(job->req.easy);
	if (job->req.headers)
		curl_slist_free_all(job->req.headers);
	MemoryContextDelete(job->cxt);
}

static void
push_done(Job *job)
{
	job->next = jobs.done;
	jobs.done = job;
	jobs.ndone++;
}

/*
 * Reads every endpoint's settings into the cache (inside a transaction),
 * clears the rate-limit budgets, and forgets the counts of endpoints that
 * are gone.
 */
static void
load_endpoints(void)
{
	HASH_SEQ_STATUS seq;
	Endpoint   *ep;
	HeldCount  *h;

	MemoryContextReset(cache.cxt);
	queue_load_endpoints(cache.endpoints, cache.cxt);
	cache.have_batch = cache.have_ordered = cache.have_rate_limit = false;
	hash_seq_init(&seq, cache.endpoints);
	while ((ep = hash_seq_search(&seq)) != NULL)
	{
		cache.have_batch |= ep->format == FORMAT_BATCH;
		cache.have_ordered |= ep->ordered;
		cache.have_rate_limit |= ep->rate_limit > 0;
	}
	hash_seq_init(&seq, jobs.held);
	while ((h = hash_seq_search(&seq)) != NULL)
	{
		/* limits may have changed: refill_buckets sets the budgets anew */
		h->budget = -1;
		h->limited = false;
		if (h->count == 0 && hash_search(cache.endpoints, &h->endpoint_id, HASH_FIND, NULL) == NULL)
			hash_search(jobs.held, &h->endpoint_id, HASH_REMOVE, NULL);
	}
}

/* Sets the job's new status from its result and the endpoint's schedule. */
static void
decide(Job *job, Endpoint *ep)
{
	if (job->res.ok)
		job->outcome = OUTCOME_DELIVERED;
	else if (ep == NULL || job->attempt > ep->nschedule)
		job->outcome = OUTCOME_DEAD;
	else
	{
		/* the endpoint's own jitter, or the setting's */
		double		jitter = ep->retry_jitter >= 0 ? ep->retry_jitter : webhook_retry_jitter;

		job->outcome = OUTCOME_PENDING;
		job->delay_s = ep->schedule_ms[job->attempt - 1] / 1000.0;
		/* spread retries so that a receiver's outage does not end in a stampede */
		if (jitter > 0)
			job->delay_s *= 1.0 + jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
		/* webhook.max_retry_after = 0 means Retry-After is ignored */
		if (job->res.retry_after > 0 && webhook_max_retry_after > 0)
			job->delay_s = Min(job->res.retry_after, webhook_max_retry_after);
	}
}

/* Signs and starts the request of a claimed job. */
static void
start_job(Job *job)
{
	Endpoint   *ep = hash_search(cache.endpoints, &job->endpoint_id, HASH_FIND, NULL);
	int64		ts = (int64) time(NULL);
	MemoryContext old;

	if (ep == NULL || job->installation != queue_installation())
	{
		/*
		 * The endpoint was deleted since the claim (its deliveries with
		 * it), or the extension was dropped: nothing to send or record.
		 */
		free_job(job);
		return;
	}
	old = MemoryContextSwitchTo(job->cxt);
	job->started = GetCurrentTimestamp();
	if (ep->url_error != NULL)
	{
		/* refused by the destination rules: a failed attempt, no connection */
		job->res.error = pstrdup(ep->url_error);
		decide(job, ep);
		MemoryContextSwitchTo(old);
		push_done(job);
		return;
	}
	job->req.owner = job;
	if (!endpoint_headers(ep, job->msg_id, ts, job->body, job->bodylen, &job->req.headers))
	{
		/* an unusable secret (or no memory): a failed attempt, on the schedule */
		job->res.error = pstrdup("could not sign the request (is the endpoint's secret usable?)");
		decide(job, ep);
		MemoryContextSwitchTo(old);
		push_done(job);
		return;
	}
	http_request_setup(&job->req, pstrdup(ep->url), job->body, job->bodylen,
					   job->req.headers, ep->timeout_ms,
					   palloc(webhook_response_limit + 1), webhook_response_limit);
	MemoryContextSwitchTo(old);
	http_engine_add(&job->req);
}

/* Turns a finished transfer into the job's outcome. */
static void
finish_job(Job *job, CURLcode code)
{
	Endpoint   *ep = hash_search(cache.endpoints, &job->endpoint_id, HASH_FIND, NULL);
	MemoryContext old = MemoryContextSwitchTo(job->cxt);

	http_request_result(&job->req, code, &job->res);
	job->response = http_response_text(&job->req);
	decide(job, ep);
	MemoryContextSwitchTo(old);
	curl_slist_free_all(job->req.headers);
	job->req.headers = NULL;
	push_done(job);
}

/* Circuit breaker cool-down: webhook.breaker_cooldown, doubling up to 60 times it. */
#define COOLDOWN_MIN_S webhook_breaker_cooldown
#define COOLDOWN_MAX_S (60 * webhook_breaker_cooldown)

typedef struct StateChange
{
	int64		endpoint_id;
	EndpointState from;			/* the state the decision was based on */
	EndpointState state;
	char	   *reason;			/* NULL: a failed probe (the circuit stays open) */
	int			cooldown_s;
} StateChange;

/*
 * Folds the outcomes into each endpoint's health (failures in a row, since
 * when every request failed) and decides state changes: 410 Gone disables,
 * webhook.breaker_failures failures in a row open the circuit (cool-down
 * webhook.breaker_cooldown, 5 s, doubling after each failed probe up to 60
 * times that), a success closes it, and webhook.pause_after of nothing but
 * failures pauses.  Fills changes (room for ndone) and returns how many.
 *
 * A failure the receiver is known to make does not count toward the
 * breaker: an earlier attempt than the one at which it accepted a request
 * within the last webhook.breaker_cooldown.  A receiver that refuses the
 * first request of every message and accepts the retry (one that reads a
 * replica lagging a moment behind) takes half of what it is sent, and
 * delivers everything; but a backlog's first attempts go out in a burst
 * ahead of their retries, and counted they would open the circuit again
 * right after every probe that closed it.  A receiver that really goes
 * down is still spared: its retries fail and count, and without a new
 * success the grace ends within a cool-down.
 */
static int
fold_health(Job *list, int njobs, StateChange *changes)
{
	Job		  **order = palloc(sizeof(Job *) * Max(njobs, 1));
	int			n = 0;
	int			nchanges = 0;
	TimestampTz now = GetCurrentTimestamp();

	/* done is newest first: walk it oldest first */
	for (Job *j = list; j != NULL && n < njobs; j = j->next)
		order[n++] = j;
	for (int i = n - 1; i >= 0; i--)
	{
		Job		   *j = order[i];
		Endpoint   *ep = hash_search(cache.endpoints, &j->endpoint_id, HASH_FIND, NULL);
		StateChange *c = &changes[nchanges];

		bool		change = false;

		/*
		 * Health is the serving worker's to keep: an outcome that comes
		 * back after its endpoint's share went to another worker (the
		 * first worker served it while that one was away) is recorded,
		 * but its counters are left to the other.
		 */
		if (ep == NULL || j->installation != queue_installation() ||
			ep->state == EP_DISABLED || ep->state == EP_PAUSED || !serves(ep->id))
			continue;
		c->endpoint_id = ep->id;
		c->cooldown_s = 0;
		if (j->res.status == 410)
		{
			change = true;
			c->state = EP_DISABLED;
			c->reason = pstrdup("the receiver answered 410 Gone");
		}
		else if (j->res.ok)
		{
			HeldCount  *h = held_entry(ep->id);

			h->accepted_attempt = j->attempt;
			h->accepted_at = now;
			if (ep->consecutive_failures != 0 || ep->failing_since != 0)
				ep->dirty = true;
			ep->consecutive_failures = 0;
			ep->failing_since = 0;
			ep->circuit_cooldown = 0;
			if (ep->state == EP_CIRCUIT_OPEN)
			{
				change = true;
				c->state = EP_ACTIVE;
				c->reason = pstrdup("a probe request succeeded");
			}
		}
		else
		{
			HeldCount  *h = held_entry(ep->id);
			bool		expected = j->attempt < h->accepted_attempt &&
				now - h->accepted_at < (TimestampTz) webhook_breaker_cooldown * USECS_PER_SEC;

			if (!expected)
				ep->consecutive_failures++;
			if (ep->failing_since == 0)
				ep->failing_since = j->started;
			ep->dirty = true;
			if (webhook_pause_after > 0 &&
				now - ep->failing_since >= (TimestampTz) webhook_pause_after * USECS_PER_SEC)
			{
				change = true;
				c->state = EP_PAUSED;
				c->reason = psprintf("every request failed for %d s (webhook.pause_after); last: %s",
									 (int) ((now - ep->failing_since) / USECS_PER_SEC),
									 j->res.error ? j->res.error : "failed");
			}
			else if (ep->state == EP_CIRCUIT_OPEN)
			{
				if (!j->probe)
					continue;	/* sent before the circuit opened */
				/* a failed probe: stay open, wait twice as long */
				change = true;
				c->state = EP_CIRCUIT_OPEN;
				c->cooldown_s = Min(Max(ep->circuit_cooldown * 2, COOLDOWN_MIN_S), COOLDOWN_MAX_S);
				c->reason = NULL;
			}
			else if (!expected && webhook_breaker_failures > 0 &&
					 ep->consecutive_failures >= webhook_breaker_failures)
			{
				change = true;
				c->state = EP_CIRCUIT_OPEN;
				c->cooldown_s = Max(Min(ep->circuit_cooldown * 2, COOLDOWN_MAX_S), COOLDOWN_MIN_S);
				c->reason = psprintf("%d failed requests in a row; last: %s",
									 ep->consecutive_failures,
									 j->res.error ? j->res.error : "failed");
			}
		}
		if (change)
		{
			c->from = ep->state;
			ep->state = c->state;
			if (c->cooldown_s > 0)
				ep->circuit_cooldown = c->cooldown_s;
			if (c->state == EP_ACTIVE)
				ep->dirty = false;	/* webhook_set_state resets the counters */
			nchanges++;
		}
	}
	pfree(order);
	return nchanges;
}

/* Drops every job not yet started (after a failed claim transaction). */
static void
drop_jobs(Job *list)
{
	while (list)
	{
		Job		   *next = list->next;

		free_job(list);
		list = next;
	}
}

/*
 * One unit of database work.  Returns false when the extension is not
 * installed, or is being dropped.  When claiming, *more tells whether a full batch was claimed
 * or fanned out, meaning more work is probably waiting; otherwise it is
 * left alone.
 */
static bool
db_cycle(bool claim, bool sweep_all, bool sweep, bool *more)
{
	uint64		gen;
	QueueStatus status;
	uint32		shares;
	uint32		orphaned = 0;

	/*
	 * Read the generation before the transaction's snapshot is taken: a
	 * bump this read sees belongs to a commit that snapshot will see, and
	 * a bump it misses makes the next cycle load again.
	 */
	gen = pg_atomic_read_u64(&self.db->config_generation);
	/*
	 * Likewise the kinds of claim asked for: each bit was set after the
	 * commit it stands for, which the snapshot will therefore see.  They
	 * are kept in claims.due until a claim of their kind has run, also
	 * across a failed cycle.
	 */
	if (claim)
		mark_due(take_claims_due());
	shares = shares_served();
	if (shares != self.shares)
	{
		/*
		 * Serving other shares than last time (the first worker, as one of
		 * the others stopped or came back): their endpoints' health is
		 * read anew from the table, their due work looked for, and what a
		 * worker that stopped left in flight taken back.
		 */
		self.shares_shrank |= (self.shares & ~shares) != 0;
		self.shares = shares;
		cache.loaded = false;
		mark_due(CLAIMS_ALL | CLAIMS_FIND_DUE);
		orphaned = shares_orphaned();
	}
	queue_serve_shares(webhook_workers, shares);
	/* and the CREATE EXTENSIONs committed so far, for leave_absent */
	SpinLockAcquire(&webhook_shared->mutex);
	self.probes_seen = self.db->probes;
	SpinLockRelease(&webhook_shared->mutex);
	status = queue_begin();
	if (status == QUEUE_BUSY)
	{
		/*
		 * Being dropped: outcomes wait to see whether the DROP commits, and
		 * the next try is in a second, not at every finished request.
		 */
		TimestampTz now = GetCurrentTimestamp();

		if (self.drop_waited_since == 0)
			self.drop_waited_since = now;
		else if (!self.drop_wait_logged && now - self.drop_waited_since >= DROP_WAIT_LOG_US)
		{
			ereport(LOG,
					(errmsg("webhook: waiting for a transaction that is dropping the extension")));
			self.drop_wait_logged = true;
		}
		self.drop_retry_at = now + DROP_RETRY_US;
		return false;
	}
	self.drop_waited_since = self.drop_retry_at = 0;
	self.drop_wait_logged = false;
	/* the first worker keeps the slot's state; the others leave when it is gone */
	if (status == QUEUE_ABSENT && self.index != 0)
		proc_exit(0);			/* outcomes have nowhere to go */
	if (status == QUEUE_ABSENT)
		leave_absent();
	if (status == QUEUE_OTHER_VERSION)
	{
		if (self.index == 0)
			set_db_state(DB_OTHER_VERSION);
		return false;			/* waiting for ALTER EXTENSION ... UPDATE */
	}
	if (self.index == 0)
		set_db_state(DB_SERVED);
	if (queue_installation() != cache.installation)
	{
		cache.loaded = false;
		cache.installation = queue_installation();
	}

	if (!cache.loaded || gen != cache.generation)
	{
		load_endpoints();
		cache.generation = gen;
		cache.loaded = true;
	}

	/*
	 * Outcomes are committed as durably as configured.  A cycle that only
	 * fans out and claims commits asynchronously: if a crash loses it, its
	 * deliveries are simply pending again (requests it started were in
	 * flight at the fault, which at-least-once allows), and the WAL flush
	 * stays off the commit-to-request path.
	 */
	self.configured_sync_commit = synchronous_commit;
	if (jobs.done == NULL)
		synchronous_commit = SYNCHRONOUS_COMMIT_OFF;
	if (jobs.done != NULL)
		cycle_record();

	/*
	 * Expired leases go back to the queue after this cycle's outcomes are
	 * recorded: outcomes held longer than a lease (while a DROP EXTENSION
	 * was pending) still find their rows.
	 */
	if (sweep)
		orphaned = shares_orphaned();
	if (sweep || sweep_all || orphaned != 0)
		cycle_sweep(sweep_all, orphaned);

	if (claim)
		*more = cycle_claim();
	cycle_end();
	return true;
}

/*
 * Records the finished jobs' outcomes (and the state changes and alerts
 * they bring) in the cycle's transaction; their slots under max_in_flight
 * are free for the claim that follows in it.
 */
static void
cycle_record(void)
{
	StateChange *changes = palloc(sizeof(StateChange) * (jobs.ndone + 1));
	int			nchanges;

	for (Job *j = jobs.done; j != NULL; j = j->next)
	{
		Endpoint   *ep = hash_search(cache.endpoints, &j->endpoint_id, HASH_FIND, NULL);

		if (ep != NULL)
			mark_due(claims_of(ep));
	}
	nchanges = fold_health(jobs.done, jobs.ndone, changes);

	queue_record(jobs.done);
	for (Job *j = jobs.done; j != NULL; j = j->next)
	{
		if (j->outcome == OUTCOME_PENDING)
			claims.find_next_due = true;	/* a retry was scheduled */
		/*
		 * An outcome for another worker's endpoint (a share handed back):
		 * a retry, the next of an ordered line, a probe's answer are its
		 * to act on.
		 */
		if (!serves(j->endpoint_id))
			self.wake_others |= CLAIMS_ALL | CLAIMS_FIND_DUE;
	}
	/*
	 * Their slots under max_in_flight are free for the claim below (it
	 * runs in this transaction: if that fails, nothing of it holds).
	 */
	for (Job *j = jobs.done; j != NULL; j = j->next)
	{
		if (j->held)
			hold(j, -1);
		j->held = false;
	}
	queue_notify_dead(jobs.done);
	queue_write_health(cache.endpoints);
	for (int i = 0; i < nchanges; i++)
	{
		if (changes[i].reason == NULL)
			queue_set_state(changes[i].endpoint_id, changes[i].from, EP_CIRCUIT_OPEN,
							"probe failed", changes[i].cooldown_s);
		else
			queue_set_state(changes[i].endpoint_id, changes[i].from, changes[i].state,
							changes[i].reason, changes[i].cooldown_s);
	}
}

/*
 * Returns expired leases to the queue, at start those this worker's share
 * held, and those of the orphaned shares (shares_orphaned).  The first
 * worker alone repairs ordering keys.
 */
static void
cycle_sweep(bool all, uint32 orphaned)
{
	int64		repaired;
	int64		n = queue_recover_leases(all || orphaned != 0, (all ? shares_leased() : 0) | orphaned,
										 self.index == 0, &repaired);

	if (n > 0)
		ereport(LOG, (errmsg("webhook: returned %lld in-flight deliveries to the queue",
							 (long long) n)));
	/* of any kind, of any worker's endpoints: for the next claims */
	if (n > 0 || repaired > 0)
	{
		mark_due(CLAIMS_ALL);
		self.wake_others |= CLAIMS_ALL;
	}
}

/*
 * Fans out what woke an idle worker, then claims due deliveries into
 * jobs.claimed, each kind of claim first in turn.  Returns whether more
 * may be waiting (a full fan-out or claim, or no room to claim).
 */
static bool
cycle_claim(void)
{
	int			room = 2 * webhook_max_connections - jobs.nqueued - http_engine_running();
	int			limit = Min(room, webhook_batch_size);
	Job		  **tail = &jobs.claimed;
	TimestampTz now;
	int64		token;
	bool		more = false;

	/*
	 * Woken while idle, the worker fans out itself; busy, it leaves that to
	 * the helper, and hands over what it could not finish.
	 */
	if (self.index == 0 && (!helper_running() || self.woke_idle))
	{
		/*
		 * Never waits for the helper's step (this transaction may hold row
		 * locks): while it runs, it takes one more step after it for what
		 * woke the worker.
		 */
		uint32		made;
		int64		fanned = queue_fanout(webhook_batch_size, false, &made, &more);

		if (fanned < 0 || more)
			wake_helper();
		mark_due(made);
		/* the other workers claim theirs once this transaction commits */
		if (fanned > 0)
			self.wake_others |= made | 1 << CLAIM_PLAIN;
	}
	if (room <= 0)
		return true;			/* no room to look: assume work waits */

	now = GetCurrentTimestamp();
	token = jobs.next_token++;
	refill_buckets(now);
	/* each kind goes first in turn, so that none can starve the others */
	claims.turn++;
	for (int i = 0; i < CLAIM_KINDS && limit > 0; i++)
	{
		ClaimKind	kind = (ClaimKind) ((claims.turn + i) % CLAIM_KINDS);
		int			nclaimed = 0;

		if ((kind == CLAIM_BATCH && !cache.have_batch) || (kind == CLAIM_ORDERED && !cache.have_ordered))
			continue;
		/*
		 * Batch and ordered claims cost about as much as the plain one,
		 * which finds any delivery to the other endpoints: they run when
		 * they may find work (they found some last time; outcomes of theirs
		 * were just recorded: a retry, the next of a line; the fan-out made
		 * deliveries of their kind; a wake-up not only for new events asked
		 * for them; a rate limit's tokens came back; a retry came due), and
		 * otherwise once per webhook.poll_interval.
		 */
		if (kind != CLAIM_PLAIN && !claims.due[kind] &&
			now - claims.last[kind] < (TimestampTz) webhook_poll_interval * 1000)
			continue;
		*tail = queue_claim(kind, limit, token, jobs.held, cache.endpoints, jobs.cxt, &nclaimed);
		claims.last[kind] = now;
		claims.due[kind] = nclaimed > 0;
		while (*tail)
			tail = &(*tail)->next;
		if (nclaimed >= limit)
			more = true;
		limit -= nclaimed;
	}
	claims.throttle_wake = spend_tokens(jobs.claimed, now);

	/*
	 * The claim saw an endpoint the cache does not know (created after the
	 * cache's snapshot): load again.  The claim's row locks keep every
	 * claimed endpoint from being deleted before we commit, so afterwards
	 * every job finds its endpoint.
	 */
	for (Job *j = jobs.claimed; j != NULL; j = j->next)
	{
		if (hash_search(cache.endpoints, &j->endpoint_id, HASH_FIND, NULL) == NULL)
		{
			load_endpoints();
			break;
		}
	}
	/* a delivery claimed from an open circuit is its probe */
	for (Job *j = jobs.claimed; j != NULL; j = j->next)
	{
		Endpoint   *ep = hash_search(cache.endpoints, &j->endpoint_id, HASH_FIND, NULL);

		j->probe = ep != NULL && ep->state == EP_CIRCUIT_OPEN;
	}
	return more;
}

/*
 * Ends the cycle: looks up the next due time when asked, commits, and
 * only then makes the claimed jobs the worker's (queued to be sent) and
 * forgets the recorded ones.
 */
static void
cycle_end(void)
{
	if (claims.find_next_due)
	{
		claims.next_due = queue_next_due();
		claims.find_next_due = false;
	}
	queue_commit();
	synchronous_commit = self.configured_sync_commit;
	self.configured_sync_commit = -1;
	if (self.wake_others != 0 && webhook_workers > 1)
		webhook_wake_workers(self.wake_others, self.index);
	self.wake_others = 0;
	if (self.shares_shrank)
	{
		/*
		 * The cycle before this one still served a share this worker has
		 * since handed back, and may have written its endpoints' health
		 * or scheduled their retries after their worker read them: all
		 * read the endpoints again, and look for due work.
		 */
		pg_atomic_fetch_add_u64(&self.db->config_generation, 1);
		webhook_wake_workers(CLAIMS_ALL | CLAIMS_FIND_DUE, self.index);
		self.shares_shrank = false;
	}

	while (jobs.claimed)
	{
		Job		   *next = jobs.claimed->next;

		jobs.claimed->next = NULL;
		jobs.claimed->held = true;
		hold(jobs.claimed, 1);
		*jobs.queued_tail = jobs.claimed;
		jobs.queued_tail = &jobs.claimed->next;
		jobs.nqueued++;
		jobs.claimed = next;
	}
	drop_jobs(jobs.done);
	jobs.done = NULL;
	jobs.ndone = 0;
}

/* Logs the error being handled and aborts the transaction it broke. */
static void
log_and_abort(void)
{
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * After an ERROR in a unit of database work: report it, abort, forget the
 * plans and every job whose claim or outcome was rolled back (leases bring
 * those deliveries back), and pause a moment.
 */
static void
recover_from_error(void)
{
	if (self.configured_sync_commit >= 0)
		synchronous_commit = self.configured_sync_commit;
	self.configured_sync_commit = -1;
	log_and_abort();
	queue_forget_plans();
	/* whatever the failed cycle was to claim is looked for again */
	mark_due(CLAIMS_ALL);
	self.wake_others = 0;		/* its fan-out was rolled back */
	drop_jobs(jobs.claimed);
	jobs.claimed = NULL;
	drop_jobs(jobs.done);
	jobs.done = NULL;
	jobs.ndone = 0;
	cache.loaded = false;
	/* a pause; the latch stays set for a wake-up that comes meanwhile */
	(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000, PG_WAIT_EXTENSION);
}

/*
 * Runs step(arg) and returns whether it finished without an ERROR.  An
 * ERROR is logged, its transaction aborted, and then recover (or
 * log_and_abort when NULL) cleans up; the caller's memory context is
 * restored either way.  Every unit of database work of the worker and of
 * its helper goes through here.
 */
static bool
guarded(void (*step) (void *arg), void *arg, void (*recover) (void))
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		step(arg);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		if (recover)
			recover();
		else
			log_and_abort();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	return ok;
}

/* The pause between retention steps that caught up (PURGE_LIMIT). */
static int64
purge_interval_ms(void)
{
	int64		shortest = INT_MAX;

	if (webhook_retention > 0)
		shortest = webhook_retention;
	if (webhook_dead_letter_retention > 0)
		shortest = Min(shortest, webhook_dead_letter_retention);
	/* seconds / 100, in milliseconds */
	return Max(PURGE_MIN_INTERVAL_MS, Min(PURGE_MAX_INTERVAL_MS, shortest * 10));
}

/*
 * One retention step in its own short transaction; returns the rows
 * deleted (at most PURGE_LIMIT of each kind).
 */
static int64
purge_cycle(void)
{
	int64		n;

	if (queue_begin() != QUEUE_READY)
		return 0;
	n = queue_purge(webhook_retention, webhook_dead_letter_retention, PURGE_LIMIT);
	queue_commit();
	return n;
}

/* db_cycle's arguments and results, for guarded(). */
typedef struct CycleStep
{
	bool		claim;
	bool		sweep_all;
	bool		sweep;
	bool		installed;		/* out */
	bool		more;			/* out */
} CycleStep;

static void
cycle_step(void *arg)
{
	CycleStep  *c = (CycleStep *) arg;

	c->installed = db_cycle(c->claim, c->sweep_all, c->sweep, &c->more);
}

static void
purge_step(void *arg)
{
	*(int64 *) arg = purge_cycle();
}

/*
 * Takes this worker's place in its database's slot; false when the
 * launcher no longer looks after the database, another worker holds the
 * place, or (for the others) the first worker that started this one is
 * gone.
 */
static bool
claim_slot(Oid dboid)
{
	bool		ok = false;

	SpinLockAcquire(&webhook_shared->mutex);
	self.db = wake_find_slot(dboid);
	if (self.db != NULL && self.db->worker[self.index].pid == 0 &&
		(self.index == 0 || self.db->worker[0].pid == self.first))
	{
		self.db->worker[self.index].latch = MyLatch;
		self.db->worker[self.index].pid = MyProcPid;
		ok = true;
	}
	SpinLockRelease(&webhook_shared->mutex);
	return ok;
}

/*
 * Sets this database's state in its slot (served, or no extension) and
 * logs a change.
 */
static void
set_db_state(WebhookDbState state)
{
	bool		changed;

	SpinLockAcquire(&webhook_shared->mutex);
	changed = self.db->state != state;
	if (changed)
	{
		self.db->state = state;
		self.db->state_since = GetCurrentTimestamp();
	}
	SpinLockRelease(&webhook_shared->mutex);
	if (changed && state == DB_SERVED)
		ereport(LOG, (errmsg("webhook worker serving database \"%s\"", self.dbname)));
}

/*
 * No extension in this database (never, or dropped): the slot says so and
 * the worker leaves; a CREATE EXTENSION has the launcher start another.
 * One that committed after this cycle's snapshot was taken (the probe
 * count moved) leaves the slot probing instead, so that the launcher,
 * told of this exit, starts a worker that sees it.
 */
static void
leave_absent(void)
{
	bool		was_served;

	SpinLockAcquire(&webhook_shared->mutex);
	was_served = self.db->state == DB_SERVED;
	self.db->state = self.db->probes == self.probes_seen ? DB_ABSENT : DB_PROBE;
	self.db->state_since = GetCurrentTimestamp();
	SpinLockRelease(&webhook_shared->mutex);
	if (was_served)
		ereport(LOG, (errmsg("webhook worker leaving database \"%s\": the extension is gone",
							 self.dbname)));
	proc_exit(0);
}

/* What the delivery worker's loop keeps from one turn to the next. */
typedef struct LoopState
{
	TimestampTz next_poll;		/* claim then even if nothing woke the worker */
	TimestampTz next_sweep;		/* look for expired leases then */
	TimestampTz next_purge;		/* the next retention step */
	TimestampTz next_trim;		/* give freed memory back no sooner */
	TimestampTz next_start;		/* start one of the other workers then (0: none) */
	bool		others_begun;	/* the other workers were started once */
	TimestampTz last_claim;
	bool		purge_more;		/* the last retention step hit its limit */
	bool		swept_all;		/* the startup sweep is done */
	bool		more;			/* the last claim was full: more may wait */
	bool		installed;		/* the extension was there last time */
	bool		wake_pending;	/* a commit woke the worker; not claimed yet */
	bool		idle_published; /* committing backends were told it is idle */
} LoopState;

/* Whether the worker has room for more claimed jobs. */
static inline bool
room_for_claims(void)
{
	return jobs.nqueued < webhook_max_connections / 2;
}

/*
 * Step 1, wait: until a request finishes, the latch is set, or the first
 * timer runs out (none when work is known to be waiting).  Finished
 * requests become outcomes to record.  Returns whether the latch was set.
 */
static bool
worker_wait(LoopState *s)
{
	HttpRequest *finished[MAX_DONE];
	CURLcode	codes[MAX_DONE];
	bool		latch_set = false;
	bool		idle;
	long		timeout = webhook_poll_interval;
	int			n;

	if (jobs.done != NULL || (s->more && room_for_claims()) || s->purge_more)
		timeout = 0;
	else if (s->wake_pending && room_for_claims())
		timeout = Min(timeout, ms_until(s->last_claim + MIN_CLAIM_GAP_US));
	if (claims.throttle_wake != 0 && room_for_claims())
		timeout = Min(timeout, ms_until(claims.throttle_wake));
	if (claims.next_due != 0 && room_for_claims())
		timeout = Min(timeout, ms_until(claims.next_due));
	/* the fan-out helper is started again on time, busy or not */
	if (self.helper.handle == NULL && self.helper.next_start != 0 && s->installed)
		timeout = Min(timeout, ms_until(self.helper.next_start));
	if (s->next_start != 0 && s->installed)
		timeout = Min(timeout, ms_until(s->next_start));
	if (!s->installed)
		timeout = Max(webhook_poll_interval, 5000);
	/* idle: nothing claimed, in flight or to record, and no wake-up pending */
	idle = timeout > 0 && jobs.done == NULL && jobs.nqueued == 0 && http_engine_running() == 0 &&
		!s->wake_pending;
	/* only the first worker fans out: the others never say they are idle */
	if (self.index == 0 && idle != s->idle_published)
		self.woke_idle |= set_idle(idle);
	if (self.index == 0)
		s->idle_published = idle;
	n = http_engine_wait(timeout, finished, codes, MAX_DONE, &latch_set);
	if (s->idle_published && latch_set)
	{
		/* a commit that woke this idle worker is fanned out by it */
		self.woke_idle |= set_idle(false);
		s->idle_published = false;
	}
	for (int i = 0; i < n; i++)
		finish_job((Job *) finished[i]->owner, codes[i]);

	/* a whole wait with nothing to do: memory of the last burst goes back */
	if (idle && !latch_set && n == 0 && GetCurrentTimestamp() >= s->next_trim)
	{
		give_back_memory();
		s->next_trim = GetCurrentTimestamp() + (TimestampTz) TRIM_INTERVAL_MS * 1000;
	}
	return latch_set;
}

/*
 * Step 2, reload: the configuration file, when asked; new destination
 * rules forget open connections and check every URL again.
 */
static void
worker_reload(void)
{
	bool		old_allow_http;
	char	   *old_networks;

	if (!ConfigReloadPending)
		return;
	old_allow_http = webhook_allow_http;
	old_networks = pstrdup(webhook_allowed_networks);
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	http_engine_configure(webhook_max_connections);
	if (old_allow_http != webhook_allow_http ||
		strcmp(old_networks, webhook_allowed_networks) != 0)
	{
		http_engine_forget_connections();
		cache.loaded = false;	/* check every URL again */
	}
	pfree(old_networks);
}

/*
 * Step 3, record and claim: one unit of database work when outcomes wait
 * or it is time to claim or to sweep leases.  Claim only when short of
 * work; recorded outcomes free slots under endpoints' max_in_flight, so
 * deliveries held back by it may be claimed at once.
 */
static void
worker_cycle(LoopState *s, TimestampTz now, bool latch_set)
{
	bool		claim = false;
	bool		sweep = false;

	if (latch_set)
		s->wake_pending = true;
	if (room_for_claims() &&
		(s->more || now >= s->next_poll || jobs.done != NULL ||
		 (claims.throttle_wake != 0 && now >= claims.throttle_wake) ||
		 (claims.next_due != 0 && now >= claims.next_due) ||
		 (s->wake_pending && now >= s->last_claim + MIN_CLAIM_GAP_US)))
	{
		if (claims.next_due != 0 && now >= claims.next_due)
		{
			/* a retry of any kind of endpoint may be due; then the next */
			mark_due(CLAIMS_ALL);
			claims.next_due = 0;
			claims.find_next_due = true;
		}
		claims.throttle_wake = 0;
		claim = true;
		s->wake_pending = false;
		s->last_claim = now;
		s->next_poll = now + (TimestampTz) webhook_poll_interval * 1000;
	}
	/* expired leases, of every worker, are the first worker's to recover */
	if (now >= s->next_sweep && self.index == 0)
	{
		sweep = true;
		s->next_sweep = now + (TimestampTz) LEASE_SWEEP_MS * 1000;
	}

	if ((claim || sweep || jobs.done != NULL) && now >= self.drop_retry_at)
	{
		CycleStep	step = {claim, !s->swept_all, sweep, false, false};

		if (guarded(cycle_step, &step, recover_from_error))
		{
			s->installed = step.installed;
			s->more = step.more;
			if (claim)
				self.woke_idle = false;
			if (s->installed)
				s->swept_all = true;
		}
		else
			s->more = false;
	}
}

/* Step 4, send: start what was claimed, up to the connection limit. */
static void
worker_send(void)
{
	bool		started = false;

	while (jobs.queued != NULL && http_engine_running() < webhook_max_connections)
	{
		Job		   *job = jobs.queued;

		jobs.queued = job->next;
		if (jobs.queued == NULL)
			jobs.queued_tail = &jobs.queued;
		jobs.nqueued--;
		job->next = NULL;
		start_job(job);
		started = true;
	}
	if (started)
		http_engine_kick();
}

/*
 * Step 5, retention, after the requests are on their way.  A step that
 * hit its limit is followed by another at once, between claim cycles.
 */
static void
worker_retention(LoopState *s, TimestampTz now)
{
	int64		purged = 0;

	if (!s->installed || self.index != 0 || now < s->next_purge ||
		(webhook_retention <= 0 && webhook_dead_letter_retention <= 0))
		return;
	(void) guarded(purge_step, &purged, recover_from_error);
	s->purge_more = purged >= PURGE_LIMIT;
	s->next_purge = s->purge_more ? now : now + purge_interval_ms() * 1000;
}

/*
 * Whether this worker still holds its place in its database's slot.  The
 * launcher frees the slot of a database no longer listed (dropped, or left
 * out by webhook.database_name) and sets the first worker's latch; a
 * launcher started after this worker holds no handle to terminate it by.
 * The other workers leave with the first one.
 */
static bool
slot_still_ours(void)
{
	bool		ours;

	SpinLockAcquire(&webhook_shared->mutex);
	ours = self.db->dboid == MyDatabaseId && self.db->worker[self.index].pid == MyProcPid &&
		(self.index == 0 || self.db->worker[0].pid == self.first);
	SpinLockRelease(&webhook_shared->mutex);
	return ours;
}

/*
 * A delivery worker of database arg: set up, then wait, reload, record and
 * claim, send, and keep retention, in turn, for ever.  The first worker of
 * a database (index 0 in bgw_extra, started by the launcher) also fans
 * out, keeps retention and the slot's state, and starts the others.
 */
void
webhook_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	HASHCTL		ctl;
	LoopState	loop = {0};

	memcpy(&self.first, MyBgworkerEntry->bgw_extra, sizeof(pid_t));
	memcpy(&self.index, MyBgworkerEntry->bgw_extra + sizeof(pid_t), sizeof(int));
	Assert(self.index >= 0 && self.index < webhook_workers);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("webhook worker");

	session_settings();

	jobs.cxt = AllocSetContextCreate(TopMemoryContext, "webhook jobs", ALLOCSET_DEFAULT_SIZES);
	cache.cxt = AllocSetContextCreate(TopMemoryContext, "webhook endpoints", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(Endpoint);
	ctl.hcxt = TopMemoryContext;
	cache.endpoints = hash_create("webhook endpoints", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.entrysize = sizeof(HeldCount);
	jobs.held = hash_create("webhook held deliveries", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	/* its share from bit QUEUE_TOKEN_SHIFT up, its start below */
	jobs.next_token = ((int64) self.index << QUEUE_TOKEN_SHIFT) |
		((((int64) time(NULL)) << 20) & (((int64) 1 << QUEUE_TOKEN_SHIFT) - 1));

	StartTransactionCommand();
	strlcpy(self.dbname, get_database_name(MyDatabaseId), sizeof(self.dbname));
	CommitTransactionCommand();
	if (!claim_slot(dboid))
	{
		/* the launcher no longer looks after it, or a worker serves it */
		ereport(LOG,
				(errmsg("webhook worker for database \"%s\" exits: its slot is taken or gone",
						self.dbname)));
		proc_exit(0);
	}
	http_engine_init(webhook_max_connections);
	before_shmem_exit(worker_exit, (Datum) 0);
	if (self.index != 0)
		ereport(LOG, (errmsg("webhook worker %d of %d serving database \"%s\"",
							 self.index + 1, webhook_workers, self.dbname)));
	loop.installed = true;
	loop.next_sweep = GetCurrentTimestamp() + (TimestampTz) LEASE_SWEEP_MS * 1000;

	for (;;)
	{
		bool		latch_set = worker_wait(&loop);
		TimestampTz now;

		if (!slot_still_ours())
			proc_exit(0);		/* the launcher freed it: the database is gone */
		worker_reload();
		now = GetCurrentTimestamp();
		if (self.helper.handle == NULL && self.helper.next_start != 0 && now >= self.helper.next_start &&
			loop.installed)
			(void) helper_running();
		/*
		 * The others, before the cycle: one that stopped (the postmaster
		 * sets the latch) is known gone, and its share orphaned, by then.
		 */
		if (self.index == 0 && webhook_workers > 1 && loop.installed &&
			(latch_set || !loop.others_begun || (loop.next_start != 0 && now >= loop.next_start)))
		{
			loop.next_start = start_others();
			loop.others_begun = true;
		}
		worker_cycle(&loop, now, latch_set);
		worker_send();
		worker_retention(&loop, now);
	}
}

/* ---------------------------------------------------------------------
 * Fan-out helper
 * ---------------------------------------------------------------------
 */

static void
helper_exit(int code, Datum arg)
{
	SpinLockAcquire(&webhook_shared->mutex);
	if (self.db != NULL && self.db->fanout_pid == MyProcPid)
	{
		self.db->fanout_latch = NULL;
		self.db->fanout_pid = 0;
	}
	SpinLockRelease(&webhook_shared->mutex);
}

/* Whether the worker that started this helper still runs. */
static bool
parent_alive(pid_t parent)
{
	bool		alive;

	SpinLockAcquire(&webhook_shared->mutex);
	alive = self.db->dboid == MyDatabaseId && self.db->worker[0].pid == parent;
	SpinLockRelease(&webhook_shared->mutex);
	return alive;
}

/* One step of the helper, for guarded(): its inputs and results. */
typedef struct FanoutStep
{
	int64		fanned;			/* out: events taken */
	uint32		made;			/* out: kinds of deliveries made */
	bool		more;			/* out: more may wait */
	long		pause;			/* out: ms to wait before the next step */
} FanoutStep;

static void
fanout_step(void *arg)
{
	FanoutStep *f = (FanoutStep *) arg;
	QueueStatus st = queue_begin();

	if (st == QUEUE_READY)
	{
		f->fanned = queue_fanout(webhook_batch_size, true, &f->made, &f->more);
		queue_commit();
	}
	else if (st == QUEUE_BUSY)
	{
		f->pause = DROP_RETRY_US / 1000;	/* the worker logs the wait */
		f->more = true;
	}
}

/* After an ERROR in the helper: its kept plans may be what broke. */
static void
forget_plans(void)
{
	log_and_abort();
	queue_forget_plans();
}

/*
 * The fan-out helper: woken by commits (or every webhook.poll_interval),
 * fans out committed events in steps of webhook.batch_size, each its own
 * asynchronously committed transaction (a crash only leaves the events to
 * be fanned out again), and wakes the worker after each step that fanned
 * out something or was woken for.  A step that failed or found a DROP
 * EXTENSION pending is tried again after a pause.  It leaves quietly on
 * SIGTERM and when the worker that started it is gone.
 */
void
webhook_fanout_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	pid_t		parent;
	volatile bool more = true;	/* a first step: commits may precede our latch */
	TimestampTz last_step = 0;

	memcpy(&parent, MyBgworkerEntry->bgw_extra, sizeof(pid_t));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("webhook fanout");
	session_settings();
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	SpinLockAcquire(&webhook_shared->mutex);
	self.db = wake_find_slot(dboid);
	if (self.db == NULL || self.db->worker[0].pid != parent)
	{
		SpinLockRelease(&webhook_shared->mutex);
		proc_exit(0);
	}
	self.db->fanout_latch = MyLatch;
	self.db->fanout_pid = MyProcPid;
	SpinLockRelease(&webhook_shared->mutex);
	before_shmem_exit(helper_exit, (Datum) 0);

	for (;;)
	{
		int			rc;
		FanoutStep	step = {0};

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   more ? 0 : webhook_poll_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ShutdownRequestPending || !parent_alive(parent))
			proc_exit(0);
		/* as the worker's claims: under a stream of commits, a step takes many */
		if (!more && ms_until(last_step + MIN_CLAIM_GAP_US) > 0)
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms_until(last_step + MIN_CLAIM_GAP_US), PG_WAIT_EXTENSION);
		last_step = GetCurrentTimestamp();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!guarded(fanout_step, &step, forget_plans))
		{
			step.pause = 1000;
			step.more = true;	/* what it was woken for is still to do */
		}
		more = step.more;

		/* the worker claims what was fanned out, or what a wake-up was for */
		if (step.fanned > 0 || (rc & WL_LATCH_SET))
			webhook_wake_workers(step.made, -1);
		if (step.pause > 0)
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, step.pause, PG_WAIT_EXTENSION);
	}
}
