/*-------------------------------------------------------------------------
 * compat.h
 *	  What differs between the PostgreSQL majors the extension builds
 *	  against, and the only place that tests PG_VERSION_NUM.
 *
 * Supported and tested: 15, 17 and 18.  16 lies between them: the guards
 * below give it the calls it has (each change is dated by the major that
 * made it), so it builds, but no test runs on it.
 *
 * Rules kept here:
 *	- Each wrapper is named for what the extension does with the call, takes
 *	  only the arguments the extension varies, and behaves the same on every
 *	  major: where a newer major added an option, the wrapper passes the
 *	  value that keeps the older behaviour.
 *	- Each block names the major that changed the call.
 *	- Callers include this header; webhook.h does not, so the pure files
 *	  (and the fuzz targets built from them) pull in only what they use.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_COMPAT_H
#define WEBHOOK_COMPAT_H

#include "postgres.h"

#include "catalog/dependency.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"

#if PG_VERSION_NUM < 150000
#error "webhook needs PostgreSQL 15 or later"
#endif

/*
 * Inserts the index entries of a row just written to rri's heap, as an
 * INSERT does (no ON CONFLICT, no arbiter indexes); returns the indexes
 * whose deferred unique checks must be rechecked.  PostgreSQL 16 added
 * onlySummarizing (for HOT updates; false for an insert).
 */
static inline List *
compat_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	return ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
}

/*
 * The sequence behind identity column attnum of rel; ERRORs if there is
 * none.  PostgreSQL 17 takes the relation instead of its OID (to find a
 * partition's sequence on its partitioned table).
 */
static inline Oid
compat_identity_sequence(Relation rel, AttrNumber attnum)
{
#if PG_VERSION_NUM >= 170000
	return getIdentitySequence(rel, attnum, false);
#else
	return getIdentitySequence(RelationGetRelid(rel), attnum, false);
#endif
}

/*
 * The OID of rel's primary key index, or InvalidOid when it has none or
 * its primary key is DEFERRABLE.  PostgreSQL 18 records deferrable primary
 * keys too and returns them when asked (deferrable_ok); no earlier major
 * returns them, so neither does this.
 */
static inline Oid
compat_primary_key_index(Relation rel)
{
#if PG_VERSION_NUM >= 180000
	return RelationGetPrimaryKeyIndex(rel, false);
#else
	return RelationGetPrimaryKeyIndex(rel);
#endif
}

/*
 * A WaitEventSet for nevents events that lives as long as the process and
 * is freed by nobody.  PostgreSQL 17 tracks wait event sets by resource
 * owner (NULL: the session) instead of allocating them in a given memory
 * context.  CompatWaitEventSetOwner is the type of that first argument, for
 * the fuzz shim, which defines CreateWaitEventSet.
 */
#if PG_VERSION_NUM >= 170000
typedef ResourceOwner CompatWaitEventSetOwner;
#define COMPAT_SESSION_WAIT_EVENT_SET_OWNER NULL
#else
typedef MemoryContext CompatWaitEventSetOwner;
#define COMPAT_SESSION_WAIT_EVENT_SET_OWNER TopMemoryContext
#endif

static inline WaitEventSet *
compat_session_wait_event_set(int nevents)
{
	return CreateWaitEventSet(COMPAT_SESSION_WAIT_EVENT_SET_OWNER, nevents);
}

/*
 * The type of appendBinaryStringInfo's data, for the fuzz shim, which
 * defines it: PostgreSQL 16 takes const void * instead of const char *.
 */
#if PG_VERSION_NUM >= 160000
typedef const void *CompatBinaryData;
#else
typedef const char *CompatBinaryData;
#endif

#endif							/* WEBHOOK_COMPAT_H */
