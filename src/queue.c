/*-------------------------------------------------------------------------
 * queue.c
 *	  Every SQL statement the worker runs: fan-out, claim, outcome
 *	  recording, lease recovery and loading endpoint settings.  The only
 *	  SPI user in the worker.
 *
 * Rules kept here:
 *	- Each unit of work is one short transaction opened by queue_begin()
 *	  and closed by queue_commit(); no transaction is ever open while HTTP
 *	  requests wait.
 *	- Statements are prepared once per extension installation and kept
 *	  (SPI_keepplan); if the extension is dropped and created again (new
 *	  OID, maybe another schema) they are prepared anew.
 *	- Claims lock with FOR UPDATE SKIP LOCKED and stamp a lease token;
 *	  outcomes are written only where the token still matches, so a late
 *	  result can never overwrite a newer owner's.  A token is set only
 *	  while a delivery is in flight, so matching it implies that status
 *	  (and keeps the update on the primary key: a status test would let
 *	  the planner walk the in-flight index instead).
 *	- Results of SPI calls are copied into the caller's memory before the
 *	  transaction ends.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "compat.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "queue.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(webhook_statement);

static Oid	ext_oid = InvalidOid;

/*
 * Every statement the worker runs is prepared by prepare_all(), under a
 * name; webhook_statement(name) has prepare_all() describe the one of that
 * name instead of preparing it (describing), so that the isolation specs
 * run the shipped text, never a copy.
 */
static const char *describing = NULL;
static char *described = NULL;

static void run_plan(SPIPlanPtr plan, Datum *args, int expected, const char *what);

static SPIPlanPtr plan_fanout = NULL;
static SPIPlanPtr plan_tick = NULL;
static SPIPlanPtr plan_window = NULL;
static SPIPlanPtr plan_aside = NULL;
static Oid	fanout_lock_key = InvalidOid;	/* webhook_events' OID */
static bool cursor_checked = false; /* CURSOR_SQL ran for these plans */

static SPIPlanPtr plans_claim[CLAIM_KINDS];
static SPIPlanPtr plan_record = NULL;
static SPIPlanPtr plan_recover = NULL;
static SPIPlanPtr plan_name_recovered = NULL;
static SPIPlanPtr plan_endpoints = NULL;
static SPIPlanPtr plan_next_due = NULL;
static SPIPlanPtr plan_purge = NULL;
static SPIPlanPtr plan_health = NULL;
static SPIPlanPtr plan_state = NULL;
static SPIPlanPtr plan_dead = NULL;
static SPIPlanPtr plan_circuit = NULL;
static SPIPlanPtr plan_lock = NULL;
static SPIPlanPtr plan_repair = NULL;

/* The shares this worker serves, and of how many (queue_serve_shares). */
static struct
{
	int			workers;
	uint32		shares;			/* bit k: share k */
}			served = {1, 1};

/*
 * Sets which shares of the endpoints (queue_share) the worker's
 * claims, and its look-up of the next due time, take: bit k of shares for
 * share k.  Until called, one worker serves every endpoint.
 */
void
queue_serve_shares(int workers, uint32 shares)
{
	served.workers = workers;
	served.shares = shares;
}

/* The shares in bit mask shares as an int4[] Datum, in the current memory context. */
static Datum
shares_array(uint32 shares)
{
	Datum		elems[32];
	int			n = 0;

	for (int k = 0; k < 32; k++)
		if (shares & ((uint32) 1 << k))
			elems[n++] = Int32GetDatum(k);
	return PointerGetDatum(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* Frees every kept plan; they are prepared again on next use. */
void
queue_forget_plans(void)
{
	SPIPlanPtr *plans[] = {&plan_fanout, &plan_tick, &plan_window, &plan_aside, &plans_claim[0], &plans_claim[1], &plans_claim[2], &plan_record, &plan_recover, &plan_name_recovered, &plan_endpoints,
	&plan_purge, &plan_health, &plan_state, &plan_dead, &plan_circuit, &plan_lock, &plan_next_due,
	&plan_repair};

	for (int i = 0; i < (int) lengthof(plans); i++)
	{
		if (*plans[i])
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
	ext_oid = InvalidOid;
	cursor_checked = false;
}

/*
 * The installation (pg_extension OID) the prepared statements belong to,
 * or InvalidOid.  A job claimed under another installation (the extension
 * was dropped, maybe created again, since) must be neither sent nor
 * recorded: its ids mean nothing now.
 */
Oid
queue_installation(void)
{
	return ext_oid;
}

/*
 * A transaction of this many events or more is set aside when its window
 * opens.  An import committed in chunks of that size is then one chunk set
 * aside after another, stepped beside the windows, instead of every
 * window's head in turn.  Smaller transactions stay in their windows: the
 * rows of webhook_fanout_aside, written and updated per transaction, must
 * stay cheap beside the events.
 */
#define ASIDE_EVENTS 50

/*
 * A row of webhook_fanout_aside (alias a) whose transaction has events
 * left to take (webhook_fanout_aside_left_idx holds those rows).
 */
#define ASIDE_HAS_LEFT(a) a ".next_id <= " a ".hi_id"

/*
 * The fan-out reads the log window by window: a window is the events whose
 * transaction a tick's snapshot (upto) shows committed and
 * webhook_fanout_cursor's (done) does not.  WINDOW_SQL opens the next one,
 * when none is open: its transactions are those in done's list of running
 * ones that upto shows committed, and those between done's xmax and upto's,
 * found by a skip scan of webhook_events_txid_idx (one probe per
 * transaction: a long import is one) whose bounds leave out the
 * transactions upto shows running (webhook_log_ranges: their uncommitted
 * rows are never stepped over); two more probes per transaction give its
 * lowest and highest event id.  So a window costs three probes per
 * transaction once, however many steps take it.  A transaction of
 * ASIDE_EVENTS events or more is set aside (webhook_fanout_aside),
 * and the window is the rest (ordered endpoints hold what would overtake
 * it: see the ordered claim).  A window
 * with no event is passed at once.  The ticks before it go, and so do the
 * transactions set aside that are done: no window is open to leave them
 * out of any more.
 */
#define WINDOW_SQL \
	"WITH RECURSIVE c AS (" \
	"  SELECT k.done, t.id AS tick, t.snapshot AS upto" \
	"    FROM %1$s.webhook_fanout_cursor k" \
	"   CROSS JOIN LATERAL (SELECT t.id, t.snapshot FROM %1$s.webhook_ticks t" \
	"                        WHERE t.id > k.tick_id ORDER BY t.id LIMIT 1) t" \
	"   WHERE k.upto IS NULL" \
	"), r AS (" \
	"  SELECT (SELECT e.txid FROM %1$s.webhook_events e" \
	"           WHERE e.txid >= g.lo AND e.txid < g.hi ORDER BY e.txid LIMIT 1) AS txid, g.hi" \
	"    FROM c CROSS JOIN LATERAL %1$s.webhook_log_ranges(pg_snapshot_xmax(c.done), c.upto) g" \
	"  UNION ALL" \
	"  SELECT (SELECT e.txid FROM %1$s.webhook_events e" \
	"           WHERE e.txid > r.txid AND e.txid < r.hi ORDER BY e.txid LIMIT 1), r.hi" \
	"    FROM r WHERE r.txid IS NOT NULL" \
	"), x AS (" \
	"  SELECT r.txid FROM r WHERE r.txid IS NOT NULL" \
	"  UNION ALL" \
	"  SELECT s.txid FROM c CROSS JOIN LATERAL pg_snapshot_xip(c.done) AS s(txid)" \
	"   WHERE pg_visible_in_snapshot(s.txid, c.upto)" \
	"), xb AS (" \
	/* (a range on txid, not =, so that only the (txid, id) index gives \
	 * the order) */ \
	"  SELECT x.txid," \
	"         (SELECT e.id FROM %1$s.webhook_events e" \
	"           WHERE e.txid >= x.txid AND e.txid <= x.txid ORDER BY e.txid, e.id LIMIT 1) AS lo," \
	"         (SELECT e.id FROM %1$s.webhook_events e" \
	"           WHERE e.txid >= x.txid AND e.txid <= x.txid ORDER BY e.txid DESC, e.id DESC LIMIT 1) AS hi" \
	"    FROM x" \
	"), aside AS (" \
	"  INSERT INTO %1$s.webhook_fanout_aside (txid, next_id, hi_id, tick_id)" \
	"  SELECT xb.txid, xb.lo, xb.hi, (SELECT c.tick FROM c) FROM xb" \
	/* ASIDE_EVENTS events or more: a span of ids first (a transaction \
	 * may share its stretch of ids with others), then its ASIDE_EVENTS-th \
	 * event, at most that many entries of the index (a constant, so that \
	 * the plan counts on reading that many) */ \
	"   WHERE xb.hi - xb.lo >= " CppAsString2(ASIDE_EVENTS) " - 1" \
	"     AND EXISTS (SELECT e.id FROM %1$s.webhook_events e" \
	"                  WHERE e.txid >= xb.txid AND e.txid <= xb.txid" \
	"                  ORDER BY e.txid, e.id OFFSET " CppAsString2(ASIDE_EVENTS) " - 1 LIMIT 1)" \
	"  RETURNING txid" \
	"), b AS (" \
	"  SELECT min(xb.lo) AS lo, max(xb.hi) AS hi FROM xb" \
	"   WHERE xb.txid <> ALL (ARRAY(SELECT aside.txid FROM aside))" \
	"), finished AS (" \
	/* (through webhook_fanout_aside_done_idx: not the rows with events \
	 * left, which may be thousands) */ \
	"  DELETE FROM %1$s.webhook_fanout_aside a WHERE a.next_id > a.hi_id AND EXISTS (SELECT FROM c)" \
	"), passed AS (" \
	"  DELETE FROM %1$s.webhook_ticks t WHERE t.id < (SELECT c.tick FROM c)" \
	")" \
	"UPDATE %1$s.webhook_fanout_cursor k" \
	"   SET tick_id = c.tick," \
	"       done = CASE WHEN b.lo IS NULL THEN c.upto ELSE k.done END," \
	"       upto = CASE WHEN b.lo IS NULL THEN NULL ELSE c.upto END," \
	"       next_id = b.lo, hi_id = b.hi" \
	"  FROM c, b"

/*
 * Whether a transaction set aside has events left to take (a row whose
 * next_id has passed hi_id is done, kept only until the next window).
 */
#define ASIDE_LEFT "EXISTS (SELECT FROM %1$s.webhook_fanout_aside a WHERE " ASIDE_HAS_LEFT("a") ")"

/*
 * Whether delivery d, to an ordered endpoint, may still be preceded in its
 * line by an event not fanned out yet: one of a transaction set aside
 * with events left whose (tick_id, next_id) is below d's (tick_id,
 * event_id), or one of the open window (the cursor's tick_id, from its
 * next_id on; a transaction set aside is stepped beside its own window,
 * and may get ahead of that window's earlier events).  The ordered claim
 * holds such a head; a restore, which empties the table, makes it again
 * (CURSOR_SQL).  Compared with the lowest such (tick_id, next_id), read
 * once per statement (an initial plan each: the first entry of
 * webhook_fanout_aside_left_idx, the cursor's one row), not with every
 * row for every head: an import committed in chunks is many rows.  No
 * such row compares as NULL, and so does a d made before 0.2.0, which has
 * no tick: neither holds.
 */
#define HELD(d) \
	"(coalesce((" d ".tick_id, " d ".event_id) > (" \
	"   SELECT a.tick_id, a.next_id FROM %1$s.webhook_fanout_aside a WHERE " ASIDE_HAS_LEFT("a") \
	"    ORDER BY a.tick_id, a.next_id LIMIT 1), false)" \
	" OR coalesce((" d ".tick_id, " d ".event_id) > (" \
	"   SELECT w.tick_id, w.next_id FROM %1$s.webhook_fanout_cursor w WHERE w.upto IS NOT NULL), false))"

/*
 * The deliveries of the events picked (pick: their ids, and tick_id, the
 * tick of the window that holds each, which its deliveries carry: the
 * ordered claim's order): one for each of them per matching endpoint.  A
 * part of FANOUT_SQL and ASIDE_SQL (the CTEs ev, m, eps and ins).
 */
#define DELIVER_SQL \
	"ev AS (" \
	/* the lock the deliveries' foreign key would take: an event being \
	 * deleted by hand is waited for and skipped, as is one already gone \
	 * (retention never deletes one not fanned out) */ \
	"  SELECT e.id, e.type, e.ordering_key FROM %1$s.webhook_events e" \
	"   WHERE e.id = ANY (ARRAY(SELECT pick.id FROM pick))" \
	"     FOR KEY SHARE" \
	/* the subscriptions that may take each type of the step: a few index \
	 * probes per type, not a test of every subscription per event */ \
	"), tm AS (" \
	"  SELECT t.type, s.endpoint_id, s.event_type, s.filter" \
	"    FROM (SELECT DISTINCT ev.type FROM ev) t" \
	"   CROSS JOIN LATERAL (" \
	"    SELECT s.endpoint_id, s.event_type, s.filter FROM %1$s.webhook_subscriptions s" \
	"     WHERE s.event_type = ANY (%1$s.webhook_type_patterns(t.type)) OFFSET 0) s" \
	"), m AS (" \
	"  SELECT DISTINCT ev.id, ev.ordering_key, tm.endpoint_id" \
	"    FROM ev JOIN tm ON tm.type = ev.type" \
	"   WHERE %1$s.webhook_subscribed(tm.event_type, tm.filter, ev.type," \
	"                                 (SELECT x.data FROM %1$s.webhook_events x WHERE x.id = ev.id))" \
	"), eps AS (" \
	/* the lock the deliveries' foreign key would take, taken first and \
	 * only on the endpoints that receive something: an endpoint being \
	 * deleted is waited for and then skipped, instead of failing the \
	 * insert with a foreign key violation */ \
	"  SELECT e.id, e.ordered, e.format = 'batch' AS batch FROM %1$s.webhook_endpoints e" \
	"   WHERE e.id = ANY (ARRAY(SELECT DISTINCT m.endpoint_id FROM m))" \
	"     FOR KEY SHARE" \
	"), ins AS (" \
	"  INSERT INTO %1$s.webhook_deliveries (event_id, endpoint_id, ordering_key, tick_id)" \
	"  SELECT m.id, m.endpoint_id," \
	"         CASE WHEN eps.ordered THEN %1$s.webhook_line_key(m.ordering_key) END, pick.tick_id" \
	"    FROM m JOIN eps ON eps.id = m.endpoint_id JOIN pick ON pick.id = m.id" \
	"  ORDER BY 1, 2" \
	"  ON CONFLICT DO NOTHING" \
	")"

/*
 * The fan-out step: the open window's next up to $1 events, in id order
 * (for one key's events, which writers lock in turn, commit order), walked
 * on the primary key from the cursor's next_id up to the window's highest
 * id, and one delivery for each of them per matching endpoint.  The cursor
 * moves in the same statement; once the window is done, done becomes its
 * snapshot and the ticks up to it go.  The transactions set aside are
 * left out, done or not.
 * Returns how many events it took, whether it made deliveries for the
 * batch and the ordered claim, whether more may wait, and whether a
 * transaction set aside has events left (w, read once).  One statement,
 * run by the worker and its helper (a kept generic plan) and by
 * webhook_fanout().  Names it does not qualify
 * resolve with search_path = pg_catalog, pg_temp: the worker's, and
 * webhook_fanout's own.
 */
#define FANOUT_SQL \
	"WITH w AS (" \
	"  SELECT " ASIDE_LEFT " AS aside_left" \
	"), c AS (" \
	/* (the snapshots decompressed once, not for each row walked: with many \
	 * transactions running at a tick they are stored compressed) */ \
	"  SELECT k.done::text::pg_snapshot AS done, k.upto::text::pg_snapshot AS upto," \
	"         k.next_id, k.hi_id, k.tick_id" \
	"    FROM %1$s.webhook_fanout_cursor k WHERE k.upto IS NOT NULL" \
	"), pick AS (" \
	"  SELECT p.id, c.tick_id FROM c CROSS JOIN LATERAL (" \
	"    SELECT e.id FROM %1$s.webhook_events e" \
	"     WHERE e.id >= c.next_id AND e.id <= c.hi_id" \
	"       AND pg_visible_in_snapshot(e.txid, c.upto) AND NOT pg_visible_in_snapshot(e.txid, c.done)" \
	/* a probe per row of the window's transactions, never a join (its \
	 * sort would read the whole window): an import committed in chunks \
	 * sets many transactions aside */ \
	"       AND NOT EXISTS (SELECT FROM %1$s.webhook_fanout_aside a WHERE a.txid = e.txid OFFSET 0)" \
	"     ORDER BY e.id LIMIT $1) p" \
	"), f AS (" \
	"  SELECT count(*) < $1 OR max(pick.id) >= (SELECT c.hi_id FROM c) AS whole," \
	"         count(*) AS n, max(pick.id) AS last FROM pick" \
	"), " DELIVER_SQL ", adv AS (" \
	"  UPDATE %1$s.webhook_fanout_cursor k" \
	"     SET done = CASE WHEN f.whole THEN c.upto ELSE k.done END," \
	"         upto = CASE WHEN f.whole THEN NULL ELSE k.upto END," \
	"         next_id = CASE WHEN f.whole THEN NULL ELSE f.last + 1 END," \
	"         hi_id = CASE WHEN f.whole THEN NULL ELSE k.hi_id END" \
	"    FROM c, f" \
	"), passed AS (" \
	"  DELETE FROM %1$s.webhook_ticks t" \
	"   WHERE t.id <= (SELECT c.tick_id FROM c) AND (SELECT f.whole FROM f)" \
	")" \
	"SELECT f.n," \
	"       EXISTS (SELECT FROM eps WHERE eps.batch)," \
	/* the window's progress lets go what it held (see HELD) */ \
	"       EXISTS (SELECT FROM eps WHERE eps.ordered)" \
	"       OR (EXISTS (SELECT FROM %1$s.webhook_fanout_aside a)" \
	"           AND EXISTS (SELECT FROM %1$s.webhook_endpoints e WHERE e.ordered))," \
	"       NOT coalesce(f.whole, true)" \
	"       OR EXISTS (SELECT FROM %1$s.webhook_ticks t, %1$s.webhook_fanout_cursor k WHERE t.id > k.tick_id)" \
	"       OR (SELECT w.aside_left FROM w)," \
	"       (SELECT w.aside_left FROM w)" \
	"  FROM f"

/*
 * A step of the transactions set aside and not done, in the order the
 * ordered claim's hold goes by, (tick_id, next_id) (through
 * webhook_fanout_aside_left_idx): the first one's next up to $1 events,
 * and each after it taken whole as long as the ids left of those taken
 * span at most $1 (an import committed in chunks takes several chunks a
 * statement).  Each is walked in id order on webhook_events_txid_idx (the
 * = on txid also lets a walk of the primary key serve, bounded by next_id
 * and hi_id), and their deliveries made as the fan-out step makes them;
 * then each row moves on, past hi_id once it is done (it stays, left out
 * of its window, until the next window opens).  Returns what the fan-out
 * step does (more and the last column: one is still to be taken), except
 * that the ordered claim is asked for, when an endpoint is ordered, at
 * every step: moving the first transaction on may let go deliveries it
 * held (see HELD).
 */
#define ASIDE_SQL \
	"WITH a AS (" \
	"  SELECT a.txid, a.next_id, a.hi_id, a.tick_id," \
	"         row_number() OVER w AS rn, sum(a.hi_id - a.next_id + 1) OVER w AS span" \
	"    FROM (SELECT a.txid, a.next_id, a.hi_id, a.tick_id FROM %1$s.webhook_fanout_aside a" \
	"           WHERE " ASIDE_HAS_LEFT("a") " ORDER BY a.tick_id, a.next_id LIMIT $1) a" \
	"  WINDOW w AS (ORDER BY a.tick_id, a.next_id ROWS UNBOUNDED PRECEDING)" \
	"), take AS (" \
	"  SELECT a.txid, a.next_id, a.hi_id, a.tick_id FROM a WHERE a.rn = 1 OR a.span <= $1" \
	"), pick AS (" \
	"  SELECT p.id, k.txid, k.tick_id FROM take k CROSS JOIN LATERAL (" \
	"    SELECT e.id FROM %1$s.webhook_events e" \
	"     WHERE e.txid = k.txid AND e.id >= k.next_id AND e.id <= k.hi_id" \
	"     ORDER BY e.txid, e.id LIMIT $1) p" \
	"), f AS (" \
	"  SELECT k.txid, k.tick_id, k.hi_id, count(pick.id) AS n, max(pick.id) AS last," \
	"         count(pick.id) < $1 OR max(pick.id) >= k.hi_id AS whole" \
	"    FROM take k LEFT JOIN pick ON pick.txid = k.txid" \
	"   GROUP BY k.txid, k.tick_id, k.hi_id" \
	"), " DELIVER_SQL ", adv AS (" \
	/* (each row found by key, not by a join the plan could make a scan) */ \
	"  UPDATE %1$s.webhook_fanout_aside x" \
	"     SET next_id = (SELECT CASE WHEN f.whole THEN f.hi_id + 1 ELSE f.last + 1 END" \
	"                      FROM f WHERE f.txid = x.txid)" \
	"   WHERE x.txid = ANY (ARRAY(SELECT f.txid FROM f))" \
	"), still AS (" \
	"  SELECT EXISTS (SELECT FROM f WHERE NOT f.whole)" \
	"         OR EXISTS (SELECT FROM %1$s.webhook_fanout_aside x" \
	"                     WHERE " ASIDE_HAS_LEFT("x") \
	"                       AND x.txid <> ALL (ARRAY(SELECT k.txid FROM take k))) AS waits" \
	")" \
	"SELECT coalesce((SELECT sum(f.n) FROM f), 0)::bigint," \
	"       EXISTS (SELECT FROM eps WHERE eps.batch)," \
	"       EXISTS (SELECT FROM take)" \
	"       AND EXISTS (SELECT FROM %1$s.webhook_endpoints e WHERE e.ordered)," \
	"       (SELECT still.waits FROM still)," \
	"       (SELECT still.waits FROM still)"

/*
 * A tick: the current snapshot, taken when an event has been committed
 * since the newest tick (or, before any, since the cursor's snapshot): an
 * event of a transaction that was not running then and is not now, or of
 * one that was and has committed since.  Running transactions are left out
 * by the bounds of the probes (webhook_log_ranges), so that a long import
 * costs nothing here until it commits.  The snapshot recorded shows the
 * ticking transaction itself running (pg_current_snapshot shows it
 * committed): events it writes after the tick belong to a later window,
 * never to this one, which could end before they are written.  (l is
 * materialized so that webhook_log_ranges' arguments are plain values and
 * its body is planned once, inside this plan, instead of at every call.)
 * Returns whether there is a window to open or to step through, or a
 * transaction set aside to take: without either, the fan-out runs nothing
 * more (the idle path, at every commit that
 * wakes the worker).
 */
#define TICK_SQL \
	"WITH l AS MATERIALIZED (" \
	"  SELECT coalesce((SELECT t.snapshot FROM %1$s.webhook_ticks t ORDER BY t.id DESC LIMIT 1)," \
	"                  (SELECT k.done FROM %1$s.webhook_fanout_cursor k)) AS snapshot," \
	"         pg_current_snapshot() AS now, pg_current_xact_id_if_assigned() AS own" \
	"), tick AS (" \
	"  INSERT INTO %1$s.webhook_ticks (snapshot)" \
	"  SELECT CASE WHEN l.own IS NULL OR NOT pg_visible_in_snapshot(l.own, l.now) THEN l.now" \
	"              ELSE (least(pg_snapshot_xmin(l.now), l.own)::text || ':' || pg_snapshot_xmax(l.now)::text" \
	"                    || ':' || (SELECT string_agg(u.x::text, ',' ORDER BY u.x)" \
	"                                 FROM (SELECT pg_snapshot_xip(l.now) UNION SELECT l.own) AS u(x)))::pg_snapshot" \
	"         END" \
	"    FROM l" \
	"   WHERE EXISTS (SELECT FROM %1$s.webhook_log_ranges(pg_snapshot_xmax(l.snapshot), l.now) g" \
	"                  WHERE EXISTS (SELECT FROM %1$s.webhook_events e WHERE e.txid >= g.lo AND e.txid < g.hi))" \
	"      OR EXISTS (SELECT FROM pg_snapshot_xip(l.snapshot) AS s(txid)" \
	"                  WHERE pg_visible_in_snapshot(s.txid, l.now)" \
	"                    AND EXISTS (SELECT FROM %1$s.webhook_events e WHERE e.txid = s.txid))" \
	"  RETURNING 1" \
	")" \
	"SELECT EXISTS (SELECT FROM tick)" \
	"       OR EXISTS (SELECT FROM %1$s.webhook_fanout_cursor k" \
	"                   WHERE k.upto IS NOT NULL" \
	"                      OR EXISTS (SELECT FROM %1$s.webhook_ticks t WHERE t.id > k.tick_id))" \
	"       OR " ASIDE_LEFT

/*
 * The cursor, made by the first fan-out, which stamps the events committed
 * until then '1', the first window's: none was fanned out, and those of a
 * restore made before any fan-out carry another cluster's transaction ids
 * (writers that commit meanwhile stamp theirs).  The row names the
 * installation that wrote it (system identifier, database and extension
 * OIDs).  One of another installation that came with the extension's
 * creation was restored from a dump, with the events: their
 * transaction ids are another cluster's (or of the past), so the restored
 * events are stamped again, in one pass: '1' if the dumped cursor had not
 * taken them, '0' otherwise, and the cursor starts again from nothing
 * ('1:1:': 0 is done, 1 the first window's), with nothing set aside.  The
 * deliveries an ordered endpoint held behind a transaction set aside
 * (never tried: see the ordered claim) go, and their events are stamped
 * '1' too: the first window makes them again, in commit order after the
 * rest of that transaction, which the hold no longer covers.  Restored rows are those the
 * restoring transaction wrote: restore in one transaction.  One of
 * another installation written by an earlier transaction came through
 * pg_upgrade, which keeps transaction ids: it only takes this
 * installation's name.  (Comparing the writing transactions alone would
 * take a transaction that changed the extension's row and moved the
 * cursor for a restore.)
 */
#define CURSOR_SQL \
	"WITH made AS (" \
	"  INSERT INTO %1$s.webhook_fanout_cursor (tick_id, done, installation) VALUES (0, '1:1:', %2$s)" \
	"  ON CONFLICT DO NOTHING RETURNING 1" \
	"), first AS (" \
	"  UPDATE %1$s.webhook_events e SET txid = '1'" \
	"   WHERE e.txid > '1' AND EXISTS (SELECT FROM made)" \
	"), k AS (" \
	"  SELECT k.xmin, k.xmin = (SELECT x.xmin FROM pg_extension x WHERE x.extname = 'webhook') AS restored" \
	"    FROM %1$s.webhook_fanout_cursor k WHERE k.installation IS DISTINCT FROM %2$s" \
	"), held AS (" \
	"  DELETE FROM %1$s.webhook_deliveries d USING k" \
	"   WHERE k.restored AND d.status = 'pending' AND d.attempts = 0 AND d.ordering_key IS NOT NULL" \
	"     AND " HELD("d") \
	"  RETURNING d.event_id" \
	"), stamp AS (" \
	"  UPDATE %1$s.webhook_events e" \
	"     SET txid = CASE WHEN %1$s.webhook_fanned_out(e.txid, e.id)" \
	"                          AND e.id <> ALL (ARRAY(SELECT held.event_id FROM held)) THEN '0'::xid8" \
	"                     ELSE '1'::xid8 END" \
	"    FROM k WHERE k.restored AND e.xmin = k.xmin" \
	"), unset AS (" \
	"  DELETE FROM %1$s.webhook_fanout_aside a WHERE EXISTS (SELECT FROM k WHERE k.restored)" \
	")" \
	"UPDATE %1$s.webhook_fanout_cursor c" \
	"   SET installation = %2$s," \
	"       tick_id = CASE WHEN k.restored THEN 0 ELSE c.tick_id END," \
	"       done = CASE WHEN k.restored THEN '1:1:' ELSE c.done END," \
	"       upto = CASE WHEN k.restored THEN NULL ELSE c.upto END," \
	"       next_id = CASE WHEN k.restored THEN NULL ELSE c.next_id END," \
	"       hi_id = CASE WHEN k.restored THEN NULL ELSE c.hi_id END" \
	"  FROM k" \
	" RETURNING k.restored"

/*
 * Prepares one statement, %1$s standing for the quoted extension schema.
 * The plan is generic, made once: these statements run every cycle, and
 * planning one costs more than running it for a few rows.  Each is written
 * so that its plan cannot depend on the tables' statistics (see LEASE):
 * rows are found through indexes by key, never by a join the planner
 * could turn into a scan once a table grows.
 */
static SPIPlanPtr
prepare(const char *name, const char *fmt, const char *schema, int nargs, Oid *argtypes)
{
	char	   *sql = psprintf(fmt, schema);
	SPIPlanPtr	plan;

	/* webhook_statement(): the shipped text, as PREPARE would take it */
	if (describing != NULL)
	{
		if (strcmp(describing, name) == 0)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			appendStringInfo(&buf, "PREPARE %s", quote_identifier(name));
			for (int i = 0; i < nargs; i++)
				appendStringInfo(&buf, "%s%s", i == 0 ? "(" : ", ", format_type_be(argtypes[i]));
			appendStringInfo(&buf, "%s AS %s", nargs > 0 ? ")" : "", sql);
			described = buf.data;
		}
		return NULL;
	}
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "webhook: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "webhook: SPI_keepplan failed");
	pfree(sql);
	return plan;
}

static void
prepare_all(Oid ext)
{
	const char *schema;
	Oid			nsp;
	Oid			claim_types[7] = {INT4OID, INT8OID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
		INT4OID, INT4ARRAYOID};
	Oid			record_types[16] = {INT8ARRAYOID, INT4ARRAYOID,
		INT8ARRAYOID, INT2ARRAYOID, FLOAT8ARRAYOID, INT8ARRAYOID,
		INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID,
		INT4ARRAYOID, BOOLARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Oid			sweep_types[2] = {BOOLOID, INT4ARRAYOID};
	int			rc;
	bool		isnull;

	queue_forget_plans();

	rc = SPI_execute_with_args("SELECT extnamespace FROM pg_catalog.pg_extension WHERE oid = $1",
							   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(ext)},
							   NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "webhook: extension %u not found", ext);
	nsp = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	schema = quote_identifier(get_namespace_name(nsp));

	plan_fanout = prepare("fanout", FANOUT_SQL, schema, 1, (Oid[]) {INT4OID});
	plan_tick = prepare("tick", TICK_SQL, schema, 0, NULL);
	plan_window = prepare("open_window", WINDOW_SQL, schema, 0, NULL);
	plan_aside = prepare("fanout_aside", ASIDE_SQL, schema, 1, (Oid[]) {INT4OID});
	fanout_lock_key = get_relname_relid("webhook_events", nsp);

	/* NULL ages (retention 0) keep rows for ever */
	plan_purge = prepare("purge", "SELECT deliveries + dead_letters + attempts + events"
						 "  FROM %1$s.webhook_purge_step("
						 "         nullif(make_interval(secs => $1), '0'::interval),"
						 "         nullif(make_interval(secs => $2), '0'::interval), $3)",
						 schema, 3, (Oid[]) {FLOAT8OID, FLOAT8OID, INT4OID});

	/*
	 * The three claims share their shape.  Per endpoint, at most SLOTS
	 * requests: the batch size ($1) while active, one probe while its
	 * circuit is open, never more than max_in_flight minus what the worker
	 * holds ($3/$4: endpoint ids and held requests), nor more than its
	 * rate limit's budget ($5, NULL: none).  Only the endpoints of the
	 * shares this worker serves are looked at (OWN: $6 the number of
	 * workers, $7 the shares), and of those only the ones with waiting
	 * deliveries (WAITING), so that a claim costs the endpoints that have
	 * work, not every endpoint (a thousand idle ones cost a millisecond
	 * and a half at every claim), each looked up by key (ENDPOINT_OF).
	 * An open circuit whose
	 * cool-down ended gets one probe (PROBE): a due retry when it has one,
	 * since a receiver that refuses first attempts and accepts retries
	 * fails every fresh probe and so would stay shut for ever.  Every
	 * claim returns the columns queue_claim reads (CLAIM_OUTPUT).
	 */
#define SHARE(id, n) "mod(mod(" id ", " n ") + " n ", " n ")"
/* endpoint e is in the shares s of n workers */
#define OWNED(e, n, s) SHARE(e ".id", n) " = ANY (" s ")"
#define OWN(e) OWNED(e, "$6", "$7")
/*
 * e: the endpoint of w.id, if in the shares s of n workers.  A lateral
 * probe by key (OFFSET 0 keeps it one), never a join: a plan made while
 * the table was small hashed that join over every endpoint (3 ms at each
 * claim and look-up with 5,000 idle endpoints).
 */
#define ENDPOINT_OF(w, n, s) \
	" CROSS JOIN LATERAL (" \
	"    SELECT e.* FROM %1$s.webhook_endpoints e WHERE e.id = " w ".id AND " OWNED("e", n, s) " OFFSET 0) e"
/*
 * The endpoints with deliveries waiting (due or not): a skip scan of the
 * due index, one probe per such endpoint.
 */
#define WAITING \
	"waiting(id) AS (" \
	"  (SELECT x.endpoint_id FROM %1$s.webhook_deliveries x WHERE x.status = 'pending'" \
	"    ORDER BY x.endpoint_id LIMIT 1)" \
	"  UNION ALL" \
	"  SELECT (SELECT x.endpoint_id FROM %1$s.webhook_deliveries x" \
	"           WHERE x.status = 'pending' AND x.endpoint_id > w.id" \
	"           ORDER BY x.endpoint_id LIMIT 1)" \
	"    FROM waiting w WHERE w.id IS NOT NULL" \
	")"
#define PROBE(cond) \
	"WITH RECURSIVE probe AS (" \
	"  UPDATE %1$s.webhook_endpoints p" \
	"     SET circuit_until = now() + make_interval(secs => p.circuit_cooldown)" \
	"   WHERE p.state = 'circuit_open' AND p.circuit_until <= now() AND " OWN("p") " AND " cond \
	"  RETURNING p.id" \
	"), " WAITING
#define LIMITS \
	"  FROM waiting wt" ENDPOINT_OF("wt", "$6", "$7") \
	"  LEFT JOIN unnest($3, $4, $5) AS l(id, n, budget) ON l.id = e.id"
#define SLOTS \
	"greatest(0, least(CASE WHEN e.state = 'active' THEN $1 ELSE 1 END," \
	"                  e.max_in_flight - coalesce(l.n, 0), coalesce(l.budget, $1)))"
	/*
	 * The lease, and reading what was claimed, are written so that no
	 * join order is left to the planner: the queue tables are often
	 * vacuumed while empty, and a plan made from those statistics would
	 * walk the whole table once per claimed row.  The claimed rows are
	 * found by primary key (= ANY, never a status test, which would tempt
	 * the planner into a partial index), and events and endpoints are
	 * looked up per row (OFFSET 0 keeps those lookups from being flattened
	 * into joins).  Every claimed row was locked by the claim itself with
	 * SKIP LOCKED, so a claim never waits for a row (and so can never
	 * deadlock with webhook_delete_endpoint, which locks deliveries first).
	 */
#define LEASE \
	"  UPDATE %1$s.webhook_deliveries d" \
	"     SET status = 'in_flight', attempts = d.attempts + 1, lease_token = $2," \
	"         lease_until = now() + interval '5 min'" \
	"                     + (SELECT t.timeout FROM %1$s.webhook_endpoints t WHERE t.id = d.endpoint_id)" \
	"   WHERE d.id = ANY (ARRAY(SELECT c.id FROM c))" \
	"  RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.batch_id"
#define CLAIM_OUTPUT \
	" SELECT u.id, u.endpoint_id, u.event_id, u.attempts, ev.type," \
	"        to_char(ev.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')," \
	"        ev.data::text, e.format, coalesce(e.source, current_database())," \
	"        CASE WHEN e.format = 'batch' THEN u.batch_id END," \
	"        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), e.batch_size," \
	"        e.batch_items = 'data'" \
	"   FROM u CROSS JOIN LATERAL (SELECT x.type, x.occurred_at, x.data FROM %1$s.webhook_events x" \
	"                                WHERE x.id = u.event_id OFFSET 0) ev" \
	"   CROSS JOIN LATERAL (SELECT y.format, y.source, y.batch_size, y.batch_items" \
	"                         FROM %1$s.webhook_endpoints y WHERE y.id = u.endpoint_id OFFSET 0) e"

	/*
	 * The probe first looks for a due retry (r, through the retry index);
	 * only an endpoint without one gets the oldest due delivery instead.
	 */
	plans_claim[CLAIM_PLAIN] = prepare("claim_plain",
									   PROBE("p.format <> 'batch' AND NOT p.ordered")
									   ", r AS ("
									   "  SELECT e.id AS ep, x.id" LIMITS
									   "  CROSS JOIN LATERAL ("
									   "    SELECT x.id FROM %1$s.webhook_deliveries x"
									   "     WHERE x.endpoint_id = e.id AND x.status = 'pending'"
									   "       AND x.attempts > 0 AND x.next_attempt_at <= now()"
									   "     ORDER BY x.next_attempt_at"
									   "     LIMIT " SLOTS
									   "     FOR UPDATE SKIP LOCKED) x"
									   "  WHERE e.id IN (SELECT id FROM probe)"
									   "), c AS ("
									   "  SELECT y.id FROM ("
									   "    SELECT r.id FROM r"
									   "    UNION ALL"
									   "    SELECT d.id" LIMITS
									   "    CROSS JOIN LATERAL ("
									   "      SELECT x.id FROM %1$s.webhook_deliveries x"
									   "       WHERE x.endpoint_id = e.id AND x.status = 'pending'"
									   "         AND x.next_attempt_at <= now()"
									   "       ORDER BY x.next_attempt_at"
									   "       LIMIT greatest(0, " SLOTS " - (SELECT count(*) FROM r WHERE r.ep = e.id))"
									   "       FOR UPDATE SKIP LOCKED) d"
									   "    WHERE e.format <> 'batch' AND NOT e.ordered"
									   "      AND (e.state = 'active' OR e.id IN (SELECT id FROM probe))"
									   "  ) y"
									   "  LIMIT $1"
									   "), u AS (" LEASE ")" CLAIM_OUTPUT,
									   schema, 7, claim_types);

	/*
	 * Batches: up to batch_size deliveries per request.  A batch that
	 * failed is claimed whole through its first delivery (batch_id = its
	 * id), so its retries carry the same events under the same id; a
	 * delivery whose batch's first one is no longer waiting (replayed
	 * alone) goes on its own.  Each of those is one request of SLOTS; the
	 * rest of SLOTS is filled with new deliveries, which queue_claim cuts
	 * into batches.  A new batch is named (batch_id) when its outcome is
	 * recorded, in the same update (naming it at the claim was a second
	 * update of every row, as costly as the claim itself), or when its
	 * lease is recovered (plan_name_recovered).
	 */
	plans_claim[CLAIM_BATCH] = prepare("claim_batch",
									   PROBE("p.format = 'batch'")
									   ", old AS ("
									   "  SELECT e.id AS ep, x.id, x.batch_id" LIMITS
									   "  CROSS JOIN LATERAL ("
									   "    SELECT x.id, x.batch_id FROM %1$s.webhook_deliveries x"
									   "     WHERE x.endpoint_id = e.id AND x.status = 'pending'"
									   "       AND x.next_attempt_at <= now() AND x.batch_id IS NOT NULL"
									   "       AND (x.batch_id = x.id"
									   "            OR (SELECT b.status FROM %1$s.webhook_deliveries b WHERE b.id = x.batch_id)"
									   "               IS DISTINCT FROM 'pending')"
									   "     ORDER BY x.next_attempt_at"
									   "     LIMIT " SLOTS
									   "     FOR UPDATE SKIP LOCKED) x"
									   "  WHERE e.format = 'batch'"
									   "    AND (e.state = 'active' OR e.id IN (SELECT id FROM probe))"
									   "), new AS ("
									   "  SELECT x.id" LIMITS
									   "  CROSS JOIN LATERAL ("
									   "    SELECT x.id FROM %1$s.webhook_deliveries x"
									   "     WHERE x.endpoint_id = e.id AND x.status = 'pending'"
									   "       AND x.next_attempt_at <= now() AND x.batch_id IS NULL"
									   "     ORDER BY x.next_attempt_at"
									   "     LIMIT greatest(0, " SLOTS " - (SELECT count(*) FROM old o WHERE o.ep = e.id))"
									   "           * e.batch_size"
									   "     FOR UPDATE SKIP LOCKED) x"
									   "  WHERE e.format = 'batch'"
									   "    AND (e.state = 'active' OR e.id IN (SELECT id FROM probe))"
									   "), c AS ("
									   "  SELECT o.id FROM old o"
									   "  UNION ALL"
									   "  SELECT n.id FROM new n"
									   "  UNION ALL"
									   /* the rest of each batch being retried */
									   "  SELECT f.id FROM old o CROSS JOIN LATERAL ("
									   "    SELECT f.id FROM %1$s.webhook_deliveries f"
									   "     WHERE f.batch_id = o.batch_id AND f.id <> o.id AND f.status = 'pending'"
									   "       AND o.batch_id = o.id"
									   "     FOR UPDATE SKIP LOCKED) f"
									   "), u AS (" LEASE ")" CLAIM_OUTPUT
									   " ORDER BY u.endpoint_id, u.batch_id NULLS LAST, u.id",
									   schema, 7, claim_types);

	/*
	 * Ordered endpoints: only the first unfinished delivery of each
	 * ordering key in commit order, (tick_id, event_id), may go, and only
	 * once it is due.  The keys are walked with a recursive skip scan of
	 * the ordering index (one probe per key), stopping as soon as enough
	 * heads are found.  A transaction set aside is fanned out beside the
	 * windows after it, so a later event's delivery may be made before
	 * those of earlier events of its key in that transaction: a head
	 * waits while it is HELD, so that those deliveries are made, and come
	 * first in its line, before it goes.
	 */
	plans_claim[CLAIM_ORDERED] = prepare("claim_ordered",
										 PROBE("p.ordered")
										 ", heads AS ("
										 "  SELECT h.id" LIMITS
										 "  CROSS JOIN LATERAL ("
										 "    WITH RECURSIVE k AS ("
										 "      (SELECT x.ordering_key, x.tick_id, x.event_id, x.id, x.status, x.next_attempt_at"
										 "         FROM %1$s.webhook_deliveries x"
										 "        WHERE x.endpoint_id = e.id AND x.ordering_key IS NOT NULL"
										 "          AND x.status IN ('pending', 'in_flight')"
										 "        ORDER BY x.ordering_key, x.tick_id NULLS FIRST, x.event_id LIMIT 1)"
										 "      UNION ALL"
										 "      SELECT n.* FROM k CROSS JOIN LATERAL ("
										 "        SELECT x.ordering_key, x.tick_id, x.event_id, x.id, x.status, x.next_attempt_at"
										 "          FROM %1$s.webhook_deliveries x"
										 "         WHERE x.endpoint_id = e.id AND x.ordering_key > k.ordering_key"
										 "           AND x.status IN ('pending', 'in_flight')"
										 "         ORDER BY x.ordering_key, x.tick_id NULLS FIRST, x.event_id LIMIT 1) n"
										 "    )"
										 "    SELECT k.id FROM k"
										 "     WHERE k.status = 'pending' AND k.next_attempt_at <= now()"
										 "       AND NOT " HELD("k")
										 /* a replayed earlier event never overtakes one in flight */
										 "       AND NOT EXISTS (SELECT 1 FROM %1$s.webhook_deliveries y"
										 "                        WHERE y.endpoint_id = e.id AND y.ordering_key = k.ordering_key"
										 "                          AND y.status = 'in_flight')"
										 "     LIMIT " SLOTS ") h"
										 "  WHERE e.ordered"
										 "    AND (e.state = 'active' OR e.id IN (SELECT id FROM probe))"
										 "  LIMIT $1"
										 "), c AS ("
										 /* locked without waiting, as every claim does */
										 "  SELECT d.id FROM %1$s.webhook_deliveries d"
										 "   WHERE d.id = ANY (ARRAY(SELECT h.id FROM heads h))"
										 "     AND d.lease_token IS NULL AND d.finished_at IS NULL"
										 "   FOR UPDATE SKIP LOCKED"
										 "), u AS (" LEASE ")" CLAIM_OUTPUT,
										 schema, 7, claim_types);

	/*
	 * Outcomes.  Per delivery, $1 its id (in ascending order) and $2 its
	 * request (a position in the other arrays); per request, $3 the lease
	 * token, $4 the new status (0 pending, 1 delivered, 2 dead), $5 the
	 * delay before a retry, $6 the name of a new batch (0: none) and $7-$16
	 * its webhook_attempts row.
	 *
	 * The deliveries are updated without a join.  Joined to the unnested
	 * arrays, the generic plan (made for ten elements, whatever the
	 * statistics) could materialize the rows found by id and test each one
	 * against every element: the outcomes of a few thousand batched
	 * deliveries took a second.  Instead each row finds its position in $1
	 * by binary search, width_bucket(id, $1) (the ids are distinct), so the
	 * plan is one index scan by = ANY.  The arrays read per row hold
	 * fixed-size elements and no NULLs, so reading one is a jump, not a
	 * walk from the first element; the error text (a walk) is read only for
	 * failed requests.
	 */
#define REQ(arr) "(" arr ")[($2)[width_bucket(d.id, $1)]]"
	plan_record = prepare("record",
						  "WITH u AS ("
						  "  UPDATE %1$s.webhook_deliveries d"
						  "     SET status = CASE " REQ("$4") " WHEN 0 THEN 'pending'"
						  "                                  WHEN 1 THEN 'delivered' ELSE 'dead' END,"
						  "         next_attempt_at = CASE WHEN " REQ("$4") " = 0"
						  "              THEN now() + make_interval(secs => " REQ("$5") ")"
						  "              ELSE d.next_attempt_at END,"
						  "         lease_token = NULL, lease_until = NULL,"
						  "         last_status = nullif(" REQ("$12") ", 0),"
						  "         last_error = CASE WHEN NOT " REQ("$13") " THEN " REQ("$14") " END,"
						  "         finished_at = CASE WHEN " REQ("$4") " <> 0 THEN now() END,"
						  /* a new batch is named here, for its retries; a named one keeps its name */
						  "         batch_id = coalesce(d.batch_id, nullif(" REQ("$6") ", 0))"
						  "   WHERE d.id = ANY ($1) AND ($1)[width_bucket(d.id, $1)] = d.id"
						  "     AND d.lease_token = " REQ("$3")
						  "  RETURNING d.id"
						  ")"
						  " INSERT INTO %1$s.webhook_attempts"
						  "   (endpoint_id, delivery_id, delivery_ids, attempt, started_at, duration_ms,"
						  "    status_code, ok, error, response_body)"
						  " SELECT a.endpoint_id, a.delivery_id, a.ids::int8[], a.attempt, a.started_at,"
						  "        a.duration_ms, nullif(a.code, 0), a.ok, a.err, a.body"
						  "   FROM unnest($7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
						  "     AS a(endpoint_id, delivery_id, attempt, started_at, duration_ms,"
						  "          code, ok, err, body, ids)"
						  /* not for deliveries deleted meanwhile: nothing would ever purge it */
						  /* (OFFSET 0: a probe per attempt, never a join over all deliveries) */
						  "  WHERE EXISTS (SELECT 1 FROM %1$s.webhook_deliveries x WHERE x.id = a.delivery_id OFFSET 0)",
						  schema, 16, record_types);
#undef REQ

	/*
	 * Rows to be recorded are locked first, in id order: anyone else who
	 * locks several deliveries (webhook_delete_endpoint) does so in the same
	 * order, so no deadlock is possible.
	 */
	plan_lock = prepare("lock_rows", "SELECT 1 FROM %1$s.webhook_deliveries d"
						" WHERE d.id = ANY ($1) ORDER BY d.id FOR UPDATE",
						schema, 1, (Oid[]) {INT8ARRAYOID});

	/*
	 * The sweeps return leases that expired, and with $1 (at a worker's
	 * start) those that the workers of the shares in $2 held: a worker
	 * stamps its share in the top bits of each lease token (from
	 * QUEUE_TOKEN_SHIFT up), so a worker that starts again takes back what
	 * it left in flight, never what another worker has.
	 */
#define LEASED_BY(d) "($1 AND " d ".lease_token >> " CppAsString2(QUEUE_TOKEN_SHIFT) " = ANY ($2))"

	/*
	 * A new batch is named when its outcome is recorded; one whose lease
	 * ended first (the worker stopped while it was in flight) is named
	 * here, before it goes back to pending, with the cut queue_claim made:
	 * its claim's new deliveries of the endpoint in id order, batch_size at
	 * a time.  Its retry carries the same events under the same webhook-id.
	 */
	plan_name_recovered = prepare("name_recovered",
								  "WITH b AS MATERIALIZED ("
								  "  SELECT r.id, min(r.id) OVER (PARTITION BY r.endpoint_id, r.lease_token, r.chunk) AS leader"
								  "          FROM (SELECT x.id, x.endpoint_id, x.lease_token,"
								  "                       (row_number() OVER (PARTITION BY x.endpoint_id, x.lease_token ORDER BY x.id) - 1)"
								  "                       / (SELECT e.batch_size FROM %1$s.webhook_endpoints e WHERE e.id = x.endpoint_id) AS chunk"
								  "                  FROM %1$s.webhook_deliveries x"
								  "                 WHERE x.status = 'in_flight' AND x.batch_id IS NULL"
								  "                   AND (" LEASED_BY("x") " OR x.lease_until < now())"
								  "                   AND (SELECT e.format FROM %1$s.webhook_endpoints e WHERE e.id = x.endpoint_id) = 'batch'"
								  "               ) r"
								  ")"
								  "UPDATE %1$s.webhook_deliveries d SET batch_id = b.leader"
								  "  FROM b"
								  /* found by key, whatever join a plan made on small tables picks */
								  " WHERE d.id = b.id AND d.id = ANY (ARRAY(SELECT b.id FROM b))",
								  schema, 2, sweep_types);

	plan_recover = prepare("recover",
						   "UPDATE %1$s.webhook_deliveries"
						   "   SET status = 'pending', lease_token = NULL, lease_until = NULL,"
						   "       next_attempt_at = now()"
						   " WHERE status = 'in_flight' AND (" LEASED_BY("webhook_deliveries") " OR lease_until < now())",
						   schema, 2, sweep_types);

	/*
	 * Deliveries of an ordered endpoint without a key (fanned out while a
	 * direct UPDATE made it ordered) would never be claimed: they join
	 * the line of their event's key.  Bounded work per sweep.
	 */
	plan_repair = prepare("repair",
						  "UPDATE %1$s.webhook_deliveries d"
						  "   SET ordering_key = %1$s.webhook_line_key((SELECT ev.ordering_key"
						  "                                                FROM %1$s.webhook_events ev"
						  "                                               WHERE ev.id = d.event_id))"
						  " WHERE d.id = ANY (ARRAY("
						  "         SELECT x.id FROM %1$s.webhook_deliveries x"
						  "          WHERE x.endpoint_id = ANY (ARRAY(SELECT e.id FROM %1$s.webhook_endpoints e"
						  "                                            WHERE e.ordered))"
						  "            AND x.status IN ('pending', 'in_flight') AND x.ordering_key IS NULL"
						  "          LIMIT 10000))",
						  schema, 0, NULL);

	plan_endpoints = prepare("endpoints", ENDPOINT_SELECT, schema, 0, NULL);
	/*
	 * When the next delivery comes due, or an open circuit's next probe:
	 * one probe of the due index per active endpoint with deliveries
	 * waiting (WAITING: their number, not the backlog's), of the shares
	 * this worker serves, each looked up by key (ENDPOINT_OF).
	 */
	plan_next_due = prepare("next_due", "WITH RECURSIVE " WAITING " SELECT least("
							"  (SELECT min(n.t) FROM waiting wt" ENDPOINT_OF("wt", "$1", "$2")
							"     CROSS JOIN LATERAL ("
							"       SELECT x.next_attempt_at AS t FROM %1$s.webhook_deliveries x"
							"        WHERE x.endpoint_id = e.id AND x.status = 'pending' AND x.next_attempt_at > now()"
							"        ORDER BY x.next_attempt_at LIMIT 1) n"
							"    WHERE e.state = 'active'),"
							"  (SELECT min(e.circuit_until) FROM %1$s.webhook_endpoints e"
							"    WHERE e.state = 'circuit_open' AND e.circuit_until > now()"
							"      AND " OWNED("e", "$1", "$2") "))",
							schema, 2, (Oid[]) {INT4OID, INT4ARRAYOID});

	/*
	 * The endpoints found by key (= ANY) whatever join a plan made while
	 * the table was small picks (it hashed the arrays and walked every
	 * endpoint).
	 */
	plan_health = prepare("health",
						  "UPDATE %1$s.webhook_endpoints e"
						  "   SET consecutive_failures = u.cf, failing_since = u.fs"
						  "  FROM unnest($1, $2, $3) AS u(id, cf, fs)"
						  " WHERE e.id = u.id AND e.id = ANY ($1)",
						  schema, 3, (Oid[]) {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID});

	plan_circuit = prepare("circuit",
						   "UPDATE %1$s.webhook_endpoints"
						   "   SET circuit_cooldown = $2, circuit_until = now() + make_interval(secs => $2)"
						   " WHERE id = $1 AND state = $3",
						   schema, 3, (Oid[]) {INT8OID, INT4OID, TEXTOID});
	plan_state = prepare("set_state", "SELECT %1$s.webhook_set_state($1, $2, $3, $4)",
						 schema, 4, (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTOID});

	plan_dead = prepare("dead",
						"SELECT pg_catalog.pg_notify('webhook_alerts',"
						"         pg_catalog.json_build_object('delivery_id', u.id, 'endpoint_id', u.ep,"
						"           'event_id', u.ev, 'to', 'dead', 'reason', u.err)::text)"
						"  FROM unnest($1, $2, $3, $4) AS u(id, ep, ev, err)",
						schema, 4, (Oid[]) {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID});
	ext_oid = ext;
}

/*
 * SQL: webhook_statement(name) returns "PREPARE name(types) AS <sql>" for
 * the statement of the worker called name, as this library prepares it for
 * the installation in this database: the isolation specs run it.
 */
Datum
webhook_statement(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			ext = get_extension_oid("webhook", false);
	MemoryContext callercxt = CurrentMemoryContext;
	char	   *result;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_statement: SPI_connect failed");
	describing = name;
	described = NULL;
	PG_TRY();
	{
		prepare_all(ext);
	}
	PG_FINALLY();
	{
		describing = NULL;
		ext_oid = InvalidOid;	/* nothing was prepared */
	}
	PG_END_TRY();
	if (described == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the worker has no statement \"%s\"", name)));
	result = MemoryContextStrdup(callercxt, described);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* The version of installation ext (pg_extension.extversion), palloc'd. */
static char *
extension_version(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Is installation ext of the version this library serves?  Otherwise it
 * says so in one LOG line per version found, and the worker waits: its
 * statements are written for this version's tables, and ALTER EXTENSION
 * webhook UPDATE brings the schema to it.
 */
static bool
version_served(Oid ext)
{
	static char logged[NAMEDATALEN] = "";
	char	   *version = extension_version(ext);

	if (version != NULL && strcmp(version, WEBHOOK_VERSION) == 0)
	{
		logged[0] = '\0';
		return true;
	}
	if (strcmp(logged, version ? version : "?") != 0)
	{
		ereport(LOG,
				(errmsg("webhook: the extension in database \"%s\" is version %s, the library serves %s; waiting for ALTER EXTENSION webhook UPDATE",
						get_database_name(MyDatabaseId), version ? version : "?", WEBHOOK_VERSION)));
		strlcpy(logged, version ? version : "?", sizeof(logged));
	}
	/* prepared for another version's tables, if at all */
	queue_forget_plans();
	return false;
}

/*
 * When the next pending delivery of an active endpoint comes due, or the
 * next probe of an open circuit, after now; 0 when none will.  In a unit
 * of work.
 */
TimestampTz
queue_next_due(void)
{
	bool		isnull;
	Datum		d;
	Datum		args[2] = {Int32GetDatum(served.workers), shares_array(served.shares)};

	run_plan(plan_next_due, args, SPI_OK_SELECT, "finding the next due delivery");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * Starts a unit of work: transaction, SPI, snapshot, and returns
 * QUEUE_READY.  Otherwise the transaction is already closed again:
 * QUEUE_ABSENT when the extension is not installed in this database,
 * QUEUE_OTHER_VERSION when not in the version this library serves
 * (version_served),
 * QUEUE_BUSY while another transaction is dropping it.  May ERROR; the
 * caller aborts the transaction then.
 *
 * The unit of work holds a share lock on the extension, as a statement
 * holds one on the tables it reads: a DROP EXTENSION waits for the end of
 * this short transaction, and the worker never waits for a DROP (which
 * may yet roll back) nor runs into the tables it is removing.  The lock
 * is taken with LockAcquire, the lock manager's long-standing entry point,
 * rather than a newer lmgr.c helper that an older 15.x minor release might
 * not have.
 */
QueueStatus
queue_begin(void)
{
	Oid			ext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ext = get_extension_oid("webhook", true);
	for (int tries = 0; OidIsValid(ext); tries++)
	{
		LOCKTAG		tag;
		LockAcquireResult res;
		Oid			now_ext;

		SET_LOCKTAG_OBJECT(tag, MyDatabaseId, ExtensionRelationId, ext, 0);
		res = LockAcquire(&tag, AccessShareLock, false, true);
		if (res == LOCKACQUIRE_NOT_AVAIL)
		{
			CommitTransactionCommand();
			return QUEUE_BUSY;
		}
		/* a DROP (and a new CREATE) may have committed before the lock */
		if (res != LOCKACQUIRE_ALREADY_CLEAR)
			AcceptInvalidationMessages();
		InvalidateCatalogSnapshot();
		now_ext = get_extension_oid("webhook", true);
		if (now_ext == ext)
			break;
		ext = tries == 0 ? now_ext : InvalidOid;
	}
	if (!OidIsValid(ext))
	{
		if (OidIsValid(ext_oid))
		{
			/* dropped: the kept plans point at tables that are gone */
			queue_forget_plans();
		}
		CommitTransactionCommand();
		return QUEUE_ABSENT;
	}
	if (!version_served(ext))
	{
		CommitTransactionCommand();
		return QUEUE_OTHER_VERSION;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (ext != ext_oid)
		prepare_all(ext);
	pgstat_report_activity(STATE_RUNNING, "webhook worker");
	return QUEUE_READY;
}

/* Ends the unit of work begun by queue_begin. */
void
queue_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Returns in-flight deliveries whose lease ended to pending, and if all
 * those leased by the workers of the given shares (bit k: share k);
 * returns how many.  With repair, deliveries of ordered endpoints are
 * given their line's key (see plan_repair), *repaired of them.
 */
int64
queue_recover_leases(bool all, uint32 shares, bool repair, int64 *repaired)
{
	Datum		args[2] = {BoolGetDatum(all), shares_array(shares)};
	int64		n;

	run_plan(plan_name_recovered, args, SPI_OK_UPDATE, "naming recovered batches");
	run_plan(plan_recover, args, SPI_OK_UPDATE, "lease recovery");
	n = (int64) SPI_processed;
	*repaired = 0;
	if (repair)
	{
		run_plan(plan_repair, NULL, SPI_OK_UPDATE, "repairing ordering keys");
		*repaired = (int64) SPI_processed;
	}
	return n;
}

/*
 * One bounded retention step (at most limit rows of each kind); returns the
 * number of rows deleted.
 */
int64
queue_purge(int retention_s, int dead_retention_s, int limit)
{
	bool		isnull;
	int			rc = SPI_execute_plan(plan_purge,
									  (Datum[]) {Float8GetDatum(retention_s),
										  Float8GetDatum(dead_retention_s), Int32GetDatum(limit)},
									  NULL, false, 1);

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "webhook: purge failed: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * One fan-out at a time (the worker's, its helper's, one by hand): two
 * running at once could each take an event of one ordering key, and the
 * later event's delivery could be created first.  The lock is the
 * transaction-level advisory lock pg_advisory_xact_lock(key, 1) takes, key
 * being the OID of webhook_events.  Without wait, false at once while
 * another transaction holds it.
 */
static bool
fanout_lock(Oid key, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) key, 1, 2);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Reads a fan-out statement's result: returns how many events it took,
 * sets *made to the kinds of claim besides the plain one (which runs at
 * every claim cycle) that may find the deliveries it made, one bit
 * (1 << ClaimKind) each, *more to whether more may wait, and *aside to
 * whether a transaction is set aside.
 */
static int64
fanout_result(int rc, uint32 *made, bool *more, bool *aside)
{
	bool		isnull;

	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "webhook: fan-out failed: %s", SPI_result_code_string(rc));
	*made = 0;
	/* columns 2 and 3, in ClaimKind order */
	for (int kind = CLAIM_BATCH; kind <= CLAIM_ORDERED; kind++)
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1 + kind, &isnull)))
			*made |= 1 << kind;
	*more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	*aside = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Runs CURSOR_SQL for the extension in schema (quoted). */
static void
fanout_cursor(const char *schema)
{
	char	   *installation = psprintf("'" UINT64_FORMAT "/%u/%u'", GetSystemIdentifier(),
										MyDatabaseId, get_extension_oid("webhook", false));
	char	   *sql = psprintf(CURSOR_SQL, schema, installation);
	int			rc = SPI_execute(sql, false, 0);
	bool		isnull;

	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "webhook: reading the fan-out cursor failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(LOG,
				(errmsg("webhook: the fan-out starts again from the restored events not yet fanned out")));
	pfree(sql);
	pfree(installation);
}

/* Runs TICK_SQL; returns whether a window waits. */
static bool
tick(SPIPlanPtr plan)
{
	bool		isnull;

	if (SPI_execute_plan(plan, NULL, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "webhook: the tick failed");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Opens the next window if none is open, and takes the next step of it,
 * then steps of the transactions set aside, in ASIDE_SQL's order (see
 * fanout_result for *made and *more): up to limit events in all, half of
 * them for each while one was set aside at the last step (with a limit of
 * one, a step of each in turn), so that neither waits for the other.  The
 * step's walk of the primary key
 * must be an index scan, whatever the statistics when its plan is made:
 * planned on an empty table, a bitmap scan and a sort of the rest of the
 * window came out, which reads the whole window again at every step.
 */
static int64
window_step(SPIPlanPtr window, SPIPlanPtr step, SPIPlanPtr aside, int limit, uint32 *made,
			bool *more)
{
	static bool aside_waits = true;
	static bool aside_turn = false;
	int			main_limit = limit;
	int			nest;
	int64		n = 0;

	nest = NewGUCNestLevel();
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	run_plan(window, NULL, SPI_OK_UPDATE, "opening a window");
	if (aside_waits)
	{
		/* half each; one event a step: in turn */
		aside_turn = !aside_turn;
		main_limit = limit >= 2 ? limit / 2 : (aside_turn ? 0 : 1);
	}
	if (main_limit > 0)
		n = fanout_result(SPI_execute_plan(step, (Datum[]) {Int32GetDatum(main_limit)}, NULL, false, 1),
						  made, more, &aside_waits);
	else
	{
		*made = 0;
		*more = true;			/* the windows' turn comes next */
	}
	/*
	 * The transactions set aside, statement after statement (each takes
	 * several, see ASIDE_SQL), until the limit is reached.  A statement
	 * that took nothing (its transactions' events were deleted) ends the
	 * turn.
	 */
	while (aside_waits && n < limit)
	{
		uint32		made_aside;
		bool		more_aside;
		int64		got;

		got = fanout_result(SPI_execute_plan(aside, (Datum[]) {Int32GetDatum(limit - n)}, NULL,
											 false, 1),
							&made_aside, &more_aside, &aside_waits);
		n += got;
		*made |= made_aside;
		*more |= more_aside;
		if (got == 0)
			break;
	}
	AtEOXact_GUC(true, nest);
	return n;
}

/*
 * Takes a tick if one is due, and fans out up to limit events of the next
 * window; returns how many it took (see fanout_result for *made and
 * *more).  With wait, waits for a fan-out running elsewhere to commit;
 * without (the worker, whose transaction may hold row locks), returns -1
 * at once.
 */
int64
queue_fanout(int limit, bool wait, uint32 *made, bool *more)
{
	*made = 0;
	*more = false;
	if (!fanout_lock(fanout_lock_key, wait))
		return -1;
	if (!cursor_checked)
	{
		fanout_cursor(quote_identifier(get_namespace_name(get_rel_namespace(fanout_lock_key))));
		cursor_checked = true;
	}
	if (!tick(plan_tick))
		return 0;
	return window_step(plan_window, plan_fanout, plan_aside, limit, made, more);
}

/*
 * webhook_fanout(lim, wait): the same, by hand, window after window, up to
 * lim events in all.  The statements are prepared for each call and freed
 * after it, whatever happens: such calls are rare, and a kept plan would
 * outlive a DROP EXTENSION.  The function's SET search_path applies while it runs.
 */
PG_FUNCTION_INFO_V1(webhook_fanout);
Datum
webhook_fanout(PG_FUNCTION_ARGS)
{
	int32		limit = PG_GETARG_INT32(0);
	bool		wait = PG_GETARG_BOOL(1);
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			events = get_relname_relid("webhook_events", nsp);
	const char *schema;
	SPIPlanPtr	ticker;
	SPIPlanPtr	window;
	SPIPlanPtr	step;
	SPIPlanPtr	aside;
	int64		n = 0;
	uint32		made;
	bool		more;

	if (limit < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lim must not be negative")));
	if (!OidIsValid(events))
		elog(ERROR, "webhook: table webhook_events is missing");
	/* the schema of 0.1.0, whose worker is waiting for the update too */
	if (!OidIsValid(get_relname_relid("webhook_fanout_cursor", nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the webhook extension is older than its library"),
				 errhint("Run ALTER EXTENSION webhook UPDATE.")));
	if (limit == 0)
		PG_RETURN_INT64(0);
	if (!fanout_lock(events, wait))
		PG_RETURN_INT64(-1);
	schema = quote_identifier(get_namespace_name(nsp));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "webhook_fanout: SPI_connect failed");
	fanout_cursor(schema);
	ticker = prepare("tick", TICK_SQL, schema, 0, NULL);
	window = prepare("open_window", WINDOW_SQL, schema, 0, NULL);
	step = prepare("fanout", FANOUT_SQL, schema, 1, (Oid[]) {INT4OID});
	aside = prepare("fanout_aside", ASIDE_SQL, schema, 1, (Oid[]) {INT4OID});
	PG_TRY();
	{
		if (tick(ticker))
			do
				n += window_step(window, step, aside, limit - n, &made, &more);
			while (more && n < limit);
	}
	PG_FINALLY();
	{
		SPI_freeplan(ticker);
		SPI_freeplan(window);
		SPI_freeplan(step);
		SPI_freeplan(aside);
	}
	PG_END_TRY();
	SPI_finish();
	/* what it made may be for any kind of claim: the worker looks for all */
	if (n > 0)
		webhook_arm_wake(false, true);
	PG_RETURN_INT64(n);
}

/* Appends a datum to an array being built in CurrentMemoryContext. */
#define ACC(st, d, isnull, type) \
	((st) = accumArrayResult((st), (d), (isnull), (type), CurrentMemoryContext))


/* Runs a kept plan; any result code but expected is an ERROR naming what. */
static void
run_plan(SPIPlanPtr plan, Datum *args, int expected, const char *what)
{
	int			rc = SPI_execute_plan(plan, args, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "webhook: %s failed: %s", what, SPI_result_code_string(rc));
}

/*
 * Finishes the n arrays built in a[] into args[] (which consumes the build
 * states: do it once) and runs plan with them.
 */
static void
run_plan_arrays(SPIPlanPtr plan, ArrayBuildState **a, Datum *args, int n, int expected,
				const char *what)
{
	for (int i = 0; i < n; i++)
		args[i] = makeArrayResult(a[i], CurrentMemoryContext);
	run_plan(plan, args, expected, what);
}

/* A batch ends before its body would grow past this (many large events). */
#define MAX_BATCH_BYTES (64 * 1024 * 1024)

/*
 * Ends a job's body (the batch envelope's tail) and hands it to the job.  A
 * batch's webhook-id names its first event and a digest of all of them:
 * the same on every retry (the same events), never the same for a batch
 * carrying other events (a replayed delivery travels in a new batch).
 */
static void
finish_body(Job *job, StringInfo body, const BodyShape *shape, const char *delivered_at)
{
	if (shape->format == FORMAT_BATCH)
	{
		MemoryContext old = MemoryContextSwitchTo(job->cxt);
		char		digest[17];
		unsigned char *ids = palloc(8 * job->ndeliveries);

		/* big-endian, so that the id does not depend on the machine */
		for (int i = 0; i < job->ndeliveries; i++)
			for (int b = 0; b < 8; b++)
				ids[8 * i + b] = (unsigned char) ((uint64) job->event_ids[i] >> (56 - 8 * b));
		sign_digest_hex(ids, 8 * job->ndeliveries, digest);
		snprintf(job->msg_id, sizeof(job->msg_id), "msg_batch_" INT64_FORMAT "_%s",
				 job->event_ids[0], digest);
		message_end(body, shape, delivered_at);
		MemoryContextSwitchTo(old);
	}
	job->body = body->data;
	job->bodylen = body->len;
}

/*
 * Claims due deliveries of active endpoints under lease token token:
 * kind selects which (see ClaimKind), limit bounds the requests per
 * endpoint, held the worker's per-endpoint counts and budgets.  Returns a
 * list of jobs, one per request, each in its own memory context (a child
 * of parent, so it outlives the transaction), and sets *nclaimed to their
 * number.  The job's body is built here, in its endpoint's format.
 */
Job *
queue_claim(ClaimKind kind, int limit, int64 token, HTAB *held, HTAB *endpoints,
			MemoryContext parent, int *nclaimed)
{
	Job		   *head = NULL;
	Job		  **tail = &head;
	Job		   *job = NULL;
	int64		job_batch = 0;
	BodyShape	shape = {FORMAT_STANDARD, false, false, NULL};
	StringInfoData body;
	char	   *delivered_at = NULL;
	char		item_id[40];
	int			njobs = 0;
	int			room = 0;
	ArrayBuildState *a[3] = {0};
	Datum		args[7];
	HASH_SEQ_STATUS seq;
	HeldCount  *h;
	int			nestlevel;

	/* what the worker holds, and may still send, per endpoint */
	a[0] = initArrayResult(INT8OID, CurrentMemoryContext, false);
	a[1] = initArrayResult(INT4OID, CurrentMemoryContext, false);
	a[2] = initArrayResult(INT4OID, CurrentMemoryContext, false);
	hash_seq_init(&seq, held);
	while ((h = hash_seq_search(&seq)) != NULL)
	{
		if (h->count <= 0 && h->budget < 0)
			continue;
		accumArrayResult(a[0], Int64GetDatum(h->endpoint_id), false, INT8OID, CurrentMemoryContext);
		accumArrayResult(a[1], Int32GetDatum(h->count), false, INT4OID, CurrentMemoryContext);
		accumArrayResult(a[2], Int32GetDatum(h->budget), h->budget < 0, INT4OID, CurrentMemoryContext);
	}
	args[0] = Int32GetDatum(limit);
	args[1] = Int64GetDatum(token);
	for (int i = 0; i < 3; i++)
		args[2 + i] = makeArrayResult(a[i], CurrentMemoryContext);
	args[5] = Int32GetDatum(served.workers);
	args[6] = shares_array(served.shares);
	/*
	 * The claims take the oldest due deliveries in the order their index
	 * gives: planned with sorts allowed, a generic plan made again from
	 * statistics taken while few deliveries waited could instead read all
	 * of an endpoint's waiting deliveries through (endpoint_id, status)
	 * and sort them, at every claim (seen after an ANALYZE between two
	 * benchmark runs: 132,600 rows read and sorted on disk per claim).  So
	 * they are planned, whenever that happens, with enable_sort off, as a
	 * function's SET clause would do it: undone at the end, or by the
	 * abort.  Not for the worker's other statements: lease recovery, for
	 * one, rightly sorts the few rows in flight rather than walking a
	 * whole index in order.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	run_plan(plans_claim[kind], args, SPI_OK_SELECT, "claim");
	AtEOXact_GUC(true, nestlevel);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		delivery_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		int64		endpoint_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		int64		event_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		int			attempt = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		bool		unbatched;	/* no batch_id: not (yet) in a batch */
		int64		batch_id = DatumGetInt64(SPI_getbinval(tup, desc, 10, &unbatched));
		PayloadFormat row_format = format_of(SPI_getvalue(tup, desc, 8));
		char	   *data = SPI_getvalue(tup, desc, 7);
		bool		new_job;
		MemoryContext old;

		/*
		 * One request per delivery, except in the batch format: a batch
		 * being retried is its rows with that batch_id; new deliveries of
		 * an endpoint (batch_id NULL, after the others) are cut into
		 * batches of batch_size.  No batch grows past MAX_BATCH_BYTES.
		 */
		if (job == NULL || job->endpoint_id != endpoint_id ||
			row_format != FORMAT_BATCH || shape.format != FORMAT_BATCH)
			new_job = true;
		else if (unbatched)
			new_job = !job->batch_new ||
				job->ndeliveries >= DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull));
		else
			new_job = job->batch_new || batch_id != job_batch;
		if (!new_job && body.len + strlen(data) > MAX_BATCH_BYTES)
			new_job = true;
		if (new_job)
		{
			/* a new request: close the previous one's body */
			MemoryContext cxt;

			if (job)
				finish_body(job, &body, &shape, delivered_at);
			cxt = AllocSetContextCreate(parent, "webhook job", ALLOCSET_SMALL_SIZES);
			old = MemoryContextSwitchTo(cxt);
			job = palloc0(sizeof(Job));
			job->cxt = cxt;
			job->endpoint_id = endpoint_id;
			job->lease_token = token;
			job->installation = ext_oid;
			shape.format = row_format;
			/* as the cache knows the endpoint (loaded this cycle if it changed) */
			{
				Endpoint   *ep = hash_search(endpoints, &endpoint_id, HASH_FIND, NULL);

				shape.text_body = ep != NULL && ep->text_body;
			}
			room = shape.format == FORMAT_BATCH ? 16 : 1;
			job->delivery_ids = palloc(sizeof(int64) * room);
			job->event_ids = palloc(sizeof(int64) * room);
			if (shape.format == FORMAT_BATCH)
			{
				shape.source = SPI_getvalue(tup, desc, 9);
				shape.batch_data = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
				delivered_at = SPI_getvalue(tup, desc, 11);
			}
			job_batch = unbatched ? 0 : batch_id;
			job->batch_new = shape.format == FORMAT_BATCH && unbatched;
			if (shape.format != FORMAT_BATCH)
				snprintf(job->msg_id, sizeof(job->msg_id), "msg_" INT64_FORMAT, event_id);
			initStringInfo(&body);
			message_begin(&body, &shape);
			*tail = job;
			tail = &job->next;
			njobs++;
		}
		else
			old = MemoryContextSwitchTo(job->cxt);

		if (job->ndeliveries == room)
		{
			room *= 2;
			job->delivery_ids = repalloc(job->delivery_ids, sizeof(int64) * room);
			job->event_ids = repalloc(job->event_ids, sizeof(int64) * room);
		}
		job->delivery_ids[job->ndeliveries] = delivery_id;
		job->event_ids[job->ndeliveries] = event_id;
		job->attempt = Max(job->attempt, attempt);
		snprintf(item_id, sizeof(item_id), "msg_" INT64_FORMAT, event_id);
		message_append_event(&body, &shape, job->ndeliveries == 0, item_id, SPI_getvalue(tup, desc, 5),
							 SPI_getvalue(tup, desc, 6), data);
		job->ndeliveries++;
		MemoryContextSwitchTo(old);
	}
	if (job)
		finish_body(job, &body, &shape, delivered_at);

	*nclaimed = njobs;
	return head;
}

/* A delivery whose outcome queue_record passes: its id and its request. */
typedef struct Outcome
{
	int64		id;
	int32		request;		/* 1-based, in the per-request arrays */
} Outcome;

static int
outcome_cmp(const void *a, const void *b)
{
	int64		x = ((const Outcome *) a)->id;
	int64		y = ((const Outcome *) b)->id;

	return (x > y) - (x < y);
}

/*
 * Writes the outcome of every job in the list: its deliveries' rows (only
 * where the lease token still matches) and one webhook_attempts row per
 * request.
 */
void
queue_record(Job *done)
{
	ArrayBuildState *a[16] = {0};
	Datum		args[16];
	Outcome    *out;
	int			nout = 0;
	int			nrequests = 0;
	int			cap = 0;

	for (Job *j = done; j != NULL; j = j->next)
		cap += j->ndeliveries;
	out = palloc(sizeof(Outcome) * Max(cap, 1));
	for (Job *j = done; j != NULL; j = j->next)
	{
		bool		is_batch = strncmp(j->msg_id, "msg_batch_", 10) == 0;
		int16		status;

		if (j->installation != ext_oid)
			continue;			/* claimed before a DROP EXTENSION */
		status = (int16) j->outcome;	/* the statement's codes: 0, 1, 2 */
		nrequests++;
		for (int k = 0; k < j->ndeliveries; k++)
			out[nout++] = (Outcome) {j->delivery_ids[k], nrequests};
		ACC(a[2], Int64GetDatum(j->lease_token), false, INT8OID);
		ACC(a[3], Int16GetDatum(status), false, INT2OID);
		ACC(a[4], Float8GetDatum(j->delay_s), false, FLOAT8OID);
		/* a batch is named by its first delivery */
		ACC(a[5], Int64GetDatum(is_batch ? j->delivery_ids[0] : 0), false, INT8OID);
		ACC(a[6], Int64GetDatum(j->endpoint_id), false, INT8OID);
		ACC(a[7], Int64GetDatum(j->delivery_ids[0]), false, INT8OID);
		ACC(a[8], Int32GetDatum(j->attempt), false, INT4OID);
		ACC(a[9], TimestampTzGetDatum(j->started), false, TIMESTAMPTZOID);
		ACC(a[10], Float8GetDatum(j->res.duration_ms), false, FLOAT8OID);
		ACC(a[11], Int32GetDatum(j->res.status), false, INT4OID);
		ACC(a[12], BoolGetDatum(j->res.ok), false, BOOLOID);
		ACC(a[13], j->res.error ? CStringGetTextDatum(j->res.error) : (Datum) 0,
			j->res.error == NULL, TEXTOID);
		ACC(a[14], j->response ? CStringGetTextDatum(j->response) : (Datum) 0,
			j->response == NULL, TEXTOID);
		if (is_batch)
		{
			/* a batch: every delivery it carried, as an int8[] literal */
			StringInfoData ids;

			initStringInfo(&ids);
			for (int k = 0; k < j->ndeliveries; k++)
				appendStringInfo(&ids, "%c" INT64_FORMAT, k ? ',' : '{', j->delivery_ids[k]);
			appendStringInfoChar(&ids, '}');
			ACC(a[15], CStringGetTextDatum(ids.data), false, TEXTOID);
		}
		else
			ACC(a[15], (Datum) 0, true, TEXTOID);
	}
	if (nout == 0)
		return;

	/* the statement finds each delivery's place by binary search in $1 */
	qsort(out, nout, sizeof(Outcome), outcome_cmp);
	for (int i = 0; i < nout; i++)
	{
		if (i > 0 && out[i].id == out[i - 1].id)
			elog(ERROR, "delivery " INT64_FORMAT " has two outcomes", out[i].id);
		ACC(a[0], Int64GetDatum(out[i].id), false, INT8OID);
		ACC(a[1], Int32GetDatum(out[i].request), false, INT4OID);
	}
	/* lock first (by $1, the ids), then record, with the same arguments */
	run_plan_arrays(plan_lock, a, args, 16, SPI_OK_SELECT, "locking deliveries");
	run_plan(plan_record, args, SPI_OK_INSERT, "recording outcomes");
}

/* Writes the counters of every endpoint whose counters changed. */
void
queue_write_health(HTAB *endpoints)
{
	ArrayBuildState *a[3] = {0};
	HASH_SEQ_STATUS seq;
	Endpoint   *ep;

	hash_seq_init(&seq, endpoints);
	while ((ep = hash_seq_search(&seq)) != NULL)
	{
		if (!ep->dirty)
			continue;
		ep->dirty = false;
		ACC(a[0], Int64GetDatum(ep->id), false, INT8OID);
		ACC(a[1], Int32GetDatum(ep->consecutive_failures), false, INT4OID);
		ACC(a[2], TimestampTzGetDatum(ep->failing_since), ep->failing_since == 0, TIMESTAMPTZOID);
	}
	if (a[0] != NULL)
		run_plan_arrays(plan_health, a, (Datum[3]) {0}, 3, SPI_OK_UPDATE, "writing endpoint health");
}

/*
 * Moves an endpoint from state from (what the decision was based on) to
 * state (webhook_set_state logs and announces it); nothing happens if it
 * is no longer in from, or gone.  For circuit_open, cooldown_s arms the
 * next probe.
 */
void
queue_set_state(int64 endpoint_id, EndpointState from, EndpointState state, const char *reason,
				int cooldown_s)
{
	Datum		from_name = CStringGetTextDatum(endpoint_state_name(from));

	if (state == EP_CIRCUIT_OPEN)
		run_plan(plan_circuit, (Datum[]) {Int64GetDatum(endpoint_id), Int32GetDatum(cooldown_s),
				 from_name},
				 SPI_OK_UPDATE, "arming the circuit breaker");
	run_plan(plan_state, (Datum[]) {Int64GetDatum(endpoint_id),
			 CStringGetTextDatum(endpoint_state_name(state)),
			 CStringGetTextDatum(reason), from_name},
			 SPI_OK_SELECT, "changing an endpoint's state");
}

/* The name the table uses for a DeliveryOutcome. */
const char *
outcome_name(DeliveryOutcome outcome)
{
	switch (outcome)
	{
		case OUTCOME_PENDING:
			return "pending";
		case OUTCOME_DELIVERED:
			return "delivered";
		case OUTCOME_DEAD:
			return "dead";
	}
	elog(ERROR, "webhook: unknown delivery outcome %d", (int) outcome);
	return NULL;				/* keep compiler quiet */
}

/* Announces every delivery of the list that went dead on webhook_alerts. */
void
queue_notify_dead(Job *done)
{
	ArrayBuildState *a[4] = {0};

	for (Job *j = done; j != NULL; j = j->next)
	{
		if (j->installation != ext_oid || j->outcome != OUTCOME_DEAD)
			continue;
		for (int k = 0; k < j->ndeliveries; k++)
		{
			ACC(a[0], Int64GetDatum(j->delivery_ids[k]), false, INT8OID);
			ACC(a[1], Int64GetDatum(j->endpoint_id), false, INT8OID);
			ACC(a[2], Int64GetDatum(j->event_ids[k]), false, INT8OID);
			ACC(a[3], j->res.error ? CStringGetTextDatum(j->res.error) : (Datum) 0,
				j->res.error == NULL, TEXTOID);
		}
	}
	if (a[0] != NULL)
		run_plan_arrays(plan_dead, a, (Datum[4]) {0}, 4, SPI_OK_SELECT, "announcing dead letters");
}

/*
 * Replaces the contents of the endpoints hash with the current settings;
 * strings are allocated in cxt, which the caller reset beforehand.
 */
void
queue_load_endpoints(HTAB *endpoints, MemoryContext cxt)
{
	HASH_SEQ_STATUS seq;
	Endpoint   *ep;

	hash_seq_init(&seq, endpoints);
	while ((ep = hash_seq_search(&seq)) != NULL)
		hash_search(endpoints, &ep->id, HASH_REMOVE, NULL);

	run_plan(plan_endpoints, NULL, SPI_OK_SELECT, "loading endpoints");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		MemoryContext old;

		ep = hash_search(endpoints, &id, HASH_ENTER, NULL);
		old = MemoryContextSwitchTo(cxt);
		endpoint_read(ep, tup, desc);
		MemoryContextSwitchTo(old);
	}
}
