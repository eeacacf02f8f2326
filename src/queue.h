/*-------------------------------------------------------------------------
 * queue.h
 *	  The worker's view of the queue tables (queue.c) and its in-memory
 *	  jobs.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_QUEUE_H
#define WEBHOOK_QUEUE_H

#include "http.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "endpoint.h"

/* The outcome of a delivery's request, with one text mapping (outcome_name). */
typedef enum DeliveryOutcome
{
	OUTCOME_PENDING,			/* failed; a retry is scheduled */
	OUTCOME_DELIVERED,
	OUTCOME_DEAD				/* failed; the schedule is exhausted */
} DeliveryOutcome;

extern const char *outcome_name(DeliveryOutcome outcome);

/* One claimed request (one delivery, or a batch of them) from claim to recorded outcome; owns its context. */
typedef struct Job
{
	MemoryContext cxt;
	struct Job *next;
	int			ndeliveries;	/* 1, or the size of a batch */
	int64	   *delivery_ids;	/* ndeliveries of each */
	int64	   *event_ids;
	int64		endpoint_id;
	int64		lease_token;
	Oid			installation;	/* pg_extension OID when claimed */
	bool		probe;			/* the single request to an open circuit */
	bool		held;			/* counted in the worker's per-endpoint counts */
	bool		batch_new;		/* a batch of new deliveries, named when recorded */
	int			attempt;
	char	   *body;
	size_t		bodylen;
	char		msg_id[64];
	TimestampTz started;
	HttpRequest req;
	HttpResult	res;
	/* outcome */
	DeliveryOutcome outcome;	/* set when the request is finished */
	double		delay_s;		/* for pending */
	char	   *response;		/* sanitized capped body, or NULL */
} Job;

/* What queue_begin found. */
typedef enum QueueStatus
{
	QUEUE_ABSENT,				/* the extension is not installed */
	QUEUE_OTHER_VERSION,		/* ... not in the version the library serves */
	QUEUE_BUSY,					/* a transaction is dropping it */
	QUEUE_READY					/* a unit of work has begun */
} QueueStatus;

extern QueueStatus queue_begin(void);
extern void queue_commit(void);
extern void queue_forget_plans(void);
extern Oid	queue_installation(void);
/*
 * The share of the endpoints a worker serves: endpoint id modulo
 * webhook.workers, taken non-negative (queue_share, and SHARE in the
 * statements).  A worker's lease tokens carry its share from this bit up.
 */
#define QUEUE_TOKEN_SHIFT 56

/* The share endpoint id belongs to among workers. */
static inline int
queue_share(int64 id, int workers)
{
	return (int) (((id % workers) + workers) % workers);
}

extern void queue_serve_shares(int workers, uint32 shares);
extern int64 queue_recover_leases(bool all, uint32 shares, bool repair, int64 *repaired);
extern int64 queue_purge(int retention_s, int dead_retention_s, int limit);
/*
 * What the worker keeps per endpoint between cycles: requests it holds
 * (claimed, not yet recorded) for max_in_flight, the token bucket of its
 * rate limit, and for the circuit breaker the attempt at which the
 * receiver last accepted a request.  budget is what the next claim may
 * take (-1: no limit).  Unlike the cached Endpoint, which a change of
 * state reloads, this survives reloads; a restarted worker starts empty.
 */
typedef struct HeldCount
{
	int64		endpoint_id;	/* hash key */
	int			count;
	int			budget;
	bool		limited;		/* has a rate limit: every request takes a token */
	double		tokens;
	TimestampTz refilled;
	int			accepted_attempt;	/* of the last successful request; 0: none */
	TimestampTz accepted_at;	/* when its outcome was folded */
} HeldCount;

/* Which deliveries a claim takes. */
typedef enum ClaimKind
{
	CLAIM_PLAIN,				/* standard and raw formats, unordered */
	CLAIM_BATCH,				/* batch format: several deliveries per job */
	CLAIM_ORDERED				/* ordered endpoints: the head of each key */
} ClaimKind;

#define CLAIM_KINDS (CLAIM_ORDERED + 1)

StaticAssertDecl(CLAIMS_ALL == (1 << CLAIM_PLAIN | 1 << CLAIM_BATCH | 1 << CLAIM_ORDERED),
				 "CLAIMS_ALL names every ClaimKind");

extern int64 queue_fanout(int limit, bool wait, uint32 *made, bool *more);
extern Job *queue_claim(ClaimKind kind, int limit, int64 token, HTAB *held, HTAB *endpoints,
						MemoryContext parent, int *nclaimed);
extern void queue_record(Job *done);
extern void queue_write_health(HTAB *endpoints);
extern void queue_set_state(int64 endpoint_id, EndpointState from, EndpointState state,
							const char *reason, int cooldown_s);
extern void queue_notify_dead(Job *done);
extern void queue_load_endpoints(HTAB *endpoints, MemoryContext cxt);
extern TimestampTz queue_next_due(void);

#endif							/* WEBHOOK_QUEUE_H */
