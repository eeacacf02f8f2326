/*-------------------------------------------------------------------------
 * queue.h
 *	  The worker's view of the queue tables (queue.c) and its in-memory
 *	  jobs and endpoint settings.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_QUEUE_H
#define WEBHOOK_QUEUE_H

#include "http.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* Endpoint settings the worker needs to send, cached per endpoint id. */
typedef struct Endpoint
{
	int64		id;				/* hash key */
	char	   *url;
	unsigned char key[WEBHOOK_MAX_KEY_LEN];
	int			keylen;			/* -1: unusable secret */
	char	  **headers;		/* "Name: value" */
	int			nheaders;
	long		timeout_ms;
	int64	   *schedule_ms;
	int			nschedule;
	char	   *url_error;		/* why the URL breaks the rules, or NULL */
	char		state[16];		/* active, disabled, paused, circuit_open */
	/* health, as stored; updated by the worker from the outcomes */
	int			consecutive_failures;
	TimestampTz failing_since;	/* 0: the last request succeeded */
	int			circuit_cooldown;	/* seconds; 0: never opened since a success */
	bool		dirty;			/* counters changed, not yet written */
} Endpoint;

/* One claimed delivery, from claim to recorded outcome; owns its context. */
typedef struct Job
{
	MemoryContext cxt;
	struct Job *next;
	int64		delivery_id;
	int64		endpoint_id;
	int64		event_id;
	int64		lease_token;
	Oid			installation;	/* pg_extension OID when claimed */
	bool		probe;			/* the single request to an open circuit */
	bool		held;			/* counted in the worker's per-endpoint counts */
	int			attempt;
	char	   *body;
	size_t		bodylen;
	char		msg_id[32];
	TimestampTz started;
	HttpRequest req;
	HttpResult	res;
	/* outcome */
	const char *new_status;		/* delivered, pending or dead */
	double		delay_s;		/* for pending */
	char	   *response;		/* sanitized capped body, or NULL */
} Job;

extern bool queue_begin(void);
extern void queue_commit(void);
extern void queue_forget_plans(void);
extern Oid	queue_installation(void);
extern int64 queue_recover_leases(bool all);
extern int64 queue_fanout(int limit);
extern int64 queue_purge(int retention_s, int dead_retention_s, int limit);
/* Deliveries of one endpoint the worker holds: claimed, not yet recorded. */
typedef struct HeldCount
{
	int64		endpoint_id;	/* hash key */
	int			count;
} HeldCount;

extern Job *queue_claim(int limit, int64 token, HTAB *held, MemoryContext parent, int *nclaimed);
extern void queue_record(Job *done);
extern void queue_write_health(HTAB *endpoints);
extern void queue_set_state(int64 endpoint_id, const char *state, const char *reason,
							int cooldown_s);
extern void queue_notify_dead(Job *done);
extern void queue_load_endpoints(HTAB *endpoints, MemoryContext cxt);

#endif							/* WEBHOOK_QUEUE_H */
