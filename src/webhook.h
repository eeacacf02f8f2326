/*-------------------------------------------------------------------------
 * webhook.h
 *	  Declarations shared by the webhook extension's C files.
 *
 * Dependencies point one way: webhook.c (module, GUCs, shared memory) <-
 * worker.c -> queue.c (SPI) and http.c (libcurl) -> sign.c, destination.c
 * (pure functions).  capture.c and api.c are SQL-callable entry points.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_H
#define WEBHOOK_H

#include "postgres.h"

#include <sys/socket.h>

#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "datatype/timestamp.h"

/* WEBHOOK_VERSION comes from the Makefile's EXTVERSION. */
#define WEBHOOK_USER_AGENT "PostgreSQL-webhook/" WEBHOOK_VERSION

/* Maximum decoded key length of a whsec_ secret. */
#define WEBHOOK_MAX_KEY_LEN 64

/* GUCs (webhook.c) */
extern char *webhook_database_name;
extern bool webhook_allow_http;
extern char *webhook_allowed_networks;
extern int	webhook_workers;
extern int	webhook_max_connections;
extern int	webhook_response_limit;
extern int	webhook_max_retry_after;	/* seconds */
extern int	webhook_poll_interval;	/* milliseconds */
extern int	webhook_batch_size;
extern int	webhook_max_payload_size;	/* bytes */
extern int	webhook_retention;	/* seconds, 0 = for ever */
extern int	webhook_breaker_failures;	/* 0 = no circuit breaker */
extern int	webhook_breaker_cooldown;	/* seconds, first cool-down */
extern int	webhook_pause_after;	/* seconds, 0 = never pause */
extern int	webhook_dead_letter_retention;	/* seconds, 0 = for ever */
extern double webhook_retry_jitter;	/* 0..1: retries spread by +- this fraction */

/* wake.c: shared memory, one slot per database the launcher looks after. */
typedef enum WebhookDbState
{
	DB_FREE = 0,				/* an unused slot */
	DB_PROBE,					/* a worker is to start, or has, to look */
	DB_SERVED,					/* the extension is here: a worker serves it */
	DB_ABSENT,					/* no extension here (until a CREATE EXTENSION) */
	DB_NO_WORKER,				/* no background worker slot was free */
	DB_OTHER_VERSION			/* a worker waits for ALTER EXTENSION ... UPDATE */
} WebhookDbState;

/*
 * Delivery workers of one database, at most (webhook.workers).  Each
 * claims, sends and records the deliveries of its share of the endpoints
 * (endpoint id modulo webhook.workers).  The first, started by the
 * launcher, also fans out, keeps retention and starts the others.
 */
#define WEBHOOK_MAX_WORKERS 16

/* One delivery worker of a database, as its slot sees it. */
typedef struct WebhookProc
{
	Latch	   *latch;			/* NULL while it does not run */
	pid_t		pid;
	uint32		claims_due;		/* kinds of claim it should run */
} WebhookProc;

typedef struct WebhookDb
{
	Oid			dboid;			/* InvalidOid: a free slot */
	WebhookDbState state;
	TimestampTz state_since;
	WebhookProc worker[WEBHOOK_MAX_WORKERS];	/* [0]: the first worker */
	Latch	   *fanout_latch;	/* NULL while no fan-out helper runs */
	pid_t		fanout_pid;
	bool		worker_idle;	/* nothing in flight: commits wake the first worker */
	bool		worker_fans_out;	/* ... and it fans out what woke it */
	uint32		probes;			/* CREATE EXTENSIONs committed here, counted */
	pg_atomic_uint64 config_generation;
} WebhookDb;

/*
 * How many databases the launcher looks after at most (a slot each, about
 * 320 bytes); a database beyond that is said once in the log and not served.
 */
#define WEBHOOK_MAX_DATABASES 1024

typedef struct WebhookShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	bool		rescan;			/* the launcher lists the databases again */
	int			nslots;
	WebhookDb	db[FLEXIBLE_ARRAY_MEMBER];
} WebhookShared;

extern WebhookShared *webhook_shared;

/*
 * claims_due: one bit per kind of claim (1 << ClaimKind, queue.h), and one
 * to look up when the next retry or probe comes due (another worker
 * scheduled one, or returned deliveries, for this worker's endpoints).
 */
#define CLAIMS_ALL 0x7
#define CLAIMS_FIND_DUE 0x8

extern void wake_init(void);
extern WebhookDb *wake_find_slot(Oid dboid);
extern bool wake_slot_busy(const WebhookDb *db);
extern const char *wake_state_name(WebhookDbState state);
extern void webhook_wake_workers(uint32 claims, int except);
extern void webhook_arm_wake(bool config_changed, bool claims);

/* launcher.c */
struct BackgroundWorkerHandle;
extern PGDLLEXPORT void webhook_launcher_main(Datum arg);
extern bool webhook_start_db_worker(const char *function, const char *name, Oid dboid,
									int index, struct BackgroundWorkerHandle **handle);

/* capture.c */
extern void capture_init(void);

/* redact.c */
extern void redact_init(void);

/* event.c: the rules of event types and patterns. */
extern bool valid_event_type(const char *s, bool pattern);

/* worker.c */
extern PGDLLEXPORT void webhook_worker_main(Datum arg);
extern PGDLLEXPORT void webhook_fanout_main(Datum arg);

/* sign.c: pure functions, never ERROR except on out-of-memory. */
typedef enum SignScheme
{
	SIGN_STANDARD,
	SIGN_HEX,
	SIGN_TIMESTAMPED,
	SIGN_ED25519,
	SIGN_NONE
} SignScheme;

/* A prepared signing key: HMAC key bytes, or an ed25519 EVP_PKEY. */
typedef struct SignKey
{
	unsigned char *key;
	int			keylen;
	void	   *pkey;			/* EVP_PKEY *, freed with its memory context */
	int64		expires;		/* TimestampTz; 0 for the current secret */
} SignKey;

extern int	sign_scheme(const char *name);
extern int	sign_decode_secret(const char *secret, unsigned char *key);
extern bool sign_valid_secret(const char *secret, int scheme);
extern bool sign_prepare_key(int scheme, const char *secret, SignKey *k);
extern bool sign_message(int scheme, const SignKey *keys, int nkeys, const char *prefix,
						 const char *msg_id, int64 ts, const char *body, size_t bodylen,
						 StringInfo out);
extern char *sign_generate_secret(int scheme);
extern void sign_digest_hex(const void *data, size_t len, char *out);
extern char *sign_public_key(const char *secret);
extern bool sign_verify(const char *secret, const char *msg_id, int64 ts, const char *body,
						size_t bodylen, const char *header);


/* destination.c: URL and address policy; pure apart from reading GUCs. */
typedef enum DestCheck
{
	DEST_OK = 0,
	DEST_BAD_URL,
	DEST_BAD_SCHEME,
	DEST_HTTP_NOT_ALLOWED,
	DEST_CREDENTIALS,
	DEST_BLOCKED_ADDRESS,
	DEST_BLOCKED_NAME
} DestCheck;

extern DestCheck destination_check_url(const char *url, char **detail);
extern bool destination_address_allowed(const struct sockaddr *sa);
extern bool destination_parse_networks(const char *list, char **errmsg);
extern void destination_reset_networks(void);

/* http.c: one HTTP POST, used by the worker (many in flight) and webhook_test. */
typedef struct HttpResult
{
	bool		ok;				/* 2xx received */
	int			status;			/* 0 when no response */
	double		duration_ms;
	int64		retry_after;	/* seconds, -1 when absent */
	char	   *error;			/* palloc'd, NULL when none */
	bool		truncated;
} HttpResult;

#endif							/* WEBHOOK_H */
