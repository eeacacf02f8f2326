/*-------------------------------------------------------------------------
 * queue.h
 *	  The worker's view of the queue tables (queue.c) and its in-memory
 *	  jobs and endpoint settings.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_QUEUE_H
#define WEBHOOK_QUEUE_H

#include "http.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/*
 * An endpoint's state, and the outcome of a delivery's request: each has
 * one text mapping (the names the tables use), and switches over them have
 * no default, so that a new value is named everywhere it matters.
 */
typedef enum EndpointState
{
	EP_ACTIVE,
	EP_DISABLED,
	EP_PAUSED,
	EP_CIRCUIT_OPEN
} EndpointState;

typedef enum DeliveryOutcome
{
	OUTCOME_PENDING,			/* failed; a retry is scheduled */
	OUTCOME_DELIVERED,
	OUTCOME_DEAD				/* failed; the schedule is exhausted */
} DeliveryOutcome;

extern const char *endpoint_state_name(EndpointState state);
extern EndpointState endpoint_state_of(const char *name);
extern const char *outcome_name(DeliveryOutcome outcome);

typedef enum PayloadFormat
{
	FORMAT_STANDARD,
	FORMAT_BATCH,
	FORMAT_RAW
} PayloadFormat;

/* How many signing keys an endpoint may have: the current and 10 old ones. */
#define MAX_SIGN_KEYS 11

/* Endpoint settings needed to send, cached per endpoint id (worker) or read once (webhook_test). */
typedef struct Endpoint
{
	int64		id;				/* hash key */
	char	   *url;
	int			signing;		/* SignScheme */
	SignKey		keys[MAX_SIGN_KEYS];	/* newest first */
	int			nkeys;			/* 0: unusable secret */
	char	   *sig_header;		/* hex schemes: "Name: " to prefix the value */
	char	   *sig_prefix;		/* hmac-sha256-hex: before each signature, or NULL */
	char	  **headers;		/* "Name: value", auth included */
	int			nheaders;
	long		timeout_ms;
	int64	   *schedule_ms;
	int			nschedule;
	PayloadFormat format;
	bool		batch_data;		/* batch items are the events' data, not envelopes */
	double		retry_jitter;	/* fraction; < 0: webhook.retry_jitter */
	char	   *source;			/* batch envelope's "source" */
	int			rate_limit;		/* requests per second, 0: unlimited */
	bool		ordered;
	char	   *url_error;		/* why the URL breaks the rules, or NULL */
	EndpointState state;
	/* health, as stored; updated by the worker from the outcomes */
	int			consecutive_failures;
	TimestampTz failing_since;	/* 0: the last request succeeded */
	int			circuit_cooldown;	/* seconds; 0: never opened since a success */
	bool		dirty;			/* counters changed, not yet written */
} Endpoint;

/*
 * The SELECT list endpoint_read() expects, FROM the endpoints as e; %1$s is
 * the quoted extension schema.  Header lines join the endpoint's headers
 * (a value is a string or {"value", "secret"}) and its auth; secrets are
 * the current one and the previous ones still valid, newest first.
 */
#define ENDPOINT_SELECT \
	"SELECT e.id, e.url, e.signing," \
	"       ARRAY[e.secret] || ARRAY(SELECT p ->> 'secret' FROM pg_catalog.jsonb_array_elements(e.previous_secrets)" \
	"                                  WITH ORDINALITY AS a(p, o)" \
	"                                 WHERE (p ->> 'expires_at')::timestamptz > pg_catalog.now() ORDER BY o)," \
	"       ARRAY[NULL::timestamptz] || ARRAY(SELECT (p ->> 'expires_at')::timestamptz" \
	"                                  FROM pg_catalog.jsonb_array_elements(e.previous_secrets) WITH ORDINALITY AS a(p, o)" \
	"                                 WHERE (p ->> 'expires_at')::timestamptz > pg_catalog.now() ORDER BY o)," \
	"       coalesce(e.signature_header, 'X-Webhook-Signature'), e.signature_prefix," \
	"       ARRAY(SELECT h.key || ': ' || CASE WHEN pg_catalog.jsonb_typeof(h.value) = 'object'" \
	"                                        THEN h.value ->> 'value' ELSE h.value #>> '{}' END" \
	"               FROM pg_catalog.jsonb_each(e.headers) h" \
	"             UNION ALL" \
	"             SELECT CASE e.auth ->> 'type'" \
	"                    WHEN 'bearer' THEN 'Authorization: Bearer ' || (e.auth ->> 'token')" \
	"                    WHEN 'basic' THEN 'Authorization: Basic ' || pg_catalog.translate(pg_catalog.encode(" \
	"                         pg_catalog.convert_to((e.auth ->> 'username') || ':' || (e.auth ->> 'password'), 'UTF8')," \
	"                         'base64'), E'\\n', '')" \
	"                    ELSE (e.auth ->> 'header') || ': ' || (e.auth ->> 'key') END" \
	"              WHERE e.auth IS NOT NULL)," \
	"       (extract(epoch FROM e.timeout) * 1000)::int8," \
	"       coalesce((SELECT pg_catalog.array_agg((extract(epoch FROM x) * 1000)::int8 ORDER BY o)" \
	"                   FROM pg_catalog.unnest(e.retry_schedule) WITH ORDINALITY AS s(x, o)), '{}')," \
	"       e.format, coalesce(e.rate_limit, 0), e.ordered," \
	"       e.state, e.consecutive_failures, e.failing_since, e.circuit_cooldown," \
	"       coalesce(e.source, pg_catalog.current_database())," \
	"       e.batch_items = 'data', coalesce(e.retry_jitter, -1)" \
	"  FROM %1$s.webhook_endpoints e"

extern void endpoint_read(Endpoint *ep, HeapTuple tup, TupleDesc desc);
extern PayloadFormat format_of(const char *name);

/*
 * message.c: the body of one request, in its endpoint's format: an event
 * envelope {"type","timestamp","data"}, the data alone (raw), or a batch
 * {"events":[...],"deliveredAt","source"} whose items are envelopes with
 * an "id" or, with batch_items = 'data', the events' data as published.
 * One builder for the worker and webhook_test.
 */
typedef struct BodyShape
{
	PayloadFormat format;
	bool		batch_data;
	const char *source;			/* batch envelope's "source" */
} BodyShape;

extern void message_begin(StringInfo buf, const BodyShape *shape);
extern void message_append_event(StringInfo buf, const BodyShape *shape, bool first,
								 const char *msg_id, const char *type, const char *ts,
								 const char *data);
extern void message_end(StringInfo buf, const BodyShape *shape, const char *delivered_at);
extern bool endpoint_headers(Endpoint *ep, const char *msg_id, int64 ts, const char *body,
							 size_t bodylen, struct curl_slist **list);

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
extern int64 queue_dead_entries(void);
extern void queue_vacuum(void);
extern Oid	queue_installation(void);
extern int64 queue_recover_leases(bool all, int64 *repaired);
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

extern int64 queue_fanout(int limit, bool wait, uint32 *made);
extern Job *queue_claim(ClaimKind kind, int limit, int64 token, HTAB *held,
						MemoryContext parent, int *nclaimed);
extern void queue_record(Job *done);
extern void queue_write_health(HTAB *endpoints);
extern void queue_set_state(int64 endpoint_id, EndpointState from, EndpointState state,
							const char *reason, int cooldown_s);
extern void queue_notify_dead(Job *done);
extern void queue_load_endpoints(HTAB *endpoints, MemoryContext cxt);
extern TimestampTz queue_next_due(void);

#endif							/* WEBHOOK_QUEUE_H */
