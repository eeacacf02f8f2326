/*-------------------------------------------------------------------------
 * shim.c
 *	  PostgreSQL backend services for the fuzz targets: memory contexts,
 *	  StringInfo, ereport, the GUC the compiled files read, guards that
 *	  keep the process off the network, and stops for the row and catalog
 *	  readers linked in but never called.  The rules are in shim.h.
 *
 * Real PostgreSQL code is used wherever it exists outside the server
 * binary: pg_snprintf and pg_strcasecmp come from libpgport, the encoding
 * verifiers from libpgcommon, and pg_inet_net_pton from the server's own
 * bitcode (see the Makefile).  What is here replaces server internals
 * (mcxt.c, stringinfo.c's allocation, elog.c) with versions that make
 * AddressSanitizer and LeakSanitizer as sharp as possible.  Where a
 * definition's parameters differ between PostgreSQL majors
 * (appendBinaryStringInfo, CreateWaitEventSet), their types come from
 * ../src/compat.h.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "../src/compat.h"
#include "../src/webhook.h"
#include "shim.h"

TimestampTz shim_now = INT64CONST(780000000000000);	/* 2024-09-19 */
int			shim_encoding = PG_UTF8;

/* GUCs of webhook.c read by the compiled files; targets set them. */
bool		webhook_allow_http = false;

/* ---------------------------------------------------------------------
 * Memory: one context, every chunk a malloc block of its exact size.
 * ---------------------------------------------------------------------
 */
#define CHUNK_MAGIC UINT64CONST(0x57484b46555a5a5a)

typedef struct Chunk
{
	uint64		magic;
	struct Chunk *prev;
	struct Chunk *next;
	Size		size;
} Chunk;

StaticAssertDecl(sizeof(Chunk) % MAXIMUM_ALIGNOF == 0, "chunk header keeps alignment");

static Chunk chunks = {0, &chunks, &chunks, 0};	/* list sentinel */
static MemoryContextData fuzz_context;

MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;

static void shim_fail(const char *what, const char *detail) __attribute__((noreturn));

/* Prints why the process is stopping and aborts (a finding for libFuzzer). */
static void
shim_fail(const char *what, const char *detail)
{
	fprintf(stderr, "==shim== %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	fflush(stderr);
	abort();
}

/* Makes fuzz_context the current (and top) memory context. */
void
shim_init(void)
{
	memset(&fuzz_context, 0, sizeof(fuzz_context));
	fuzz_context.type = T_AllocSetContext;
	fuzz_context.isReset = true;
	fuzz_context.name = "fuzz";
	CurrentMemoryContext = &fuzz_context;
	TopMemoryContext = &fuzz_context;
}

/* palloc_extended: a new chunk of exactly size bytes, linked into the context. */
static void *
chunk_alloc(Size size, int flags)
{
	Chunk	   *c;

	if (CurrentMemoryContext == NULL)
		shim_fail("palloc before shim_init()", NULL);
	if (!((flags & MCXT_ALLOC_HUGE) ? AllocHugeSizeIsValid(size) : AllocSizeIsValid(size)))
	{
		char		buf[64];

		snprintf(buf, sizeof(buf), "%zu bytes", (size_t) size);
		shim_fail("ERROR: invalid memory alloc request size", buf);
	}
	c = malloc(sizeof(Chunk) + size);
	if (c == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		shim_fail("ERROR: out of memory", NULL);
	}
	c->magic = CHUNK_MAGIC;
	c->size = size;
	c->next = chunks.next;
	c->prev = &chunks;
	chunks.next->prev = c;
	chunks.next = c;
	fuzz_context.isReset = false;
	if (flags & MCXT_ALLOC_ZERO)
		memset(c + 1, 0, size);
	return c + 1;
}

/* The header of a live chunk; aborts for anything palloc did not return. */
static Chunk *
chunk_of(void *pointer, const char *caller)
{
	Chunk	   *c;

	if (pointer == NULL)
		shim_fail(caller, "NULL pointer");
	c = (Chunk *) pointer - 1;
	if (c->magic != CHUNK_MAGIC)
		shim_fail(caller, "pointer was not returned by palloc");
	return c;
}

void *
palloc(Size size)
{
	return chunk_alloc(size, 0);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, flags);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(size, MCXT_ALLOC_ZERO);
}

void
pfree(void *pointer)
{
	Chunk	   *c = chunk_of(pointer, "pfree");

	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->magic = 0;
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	Chunk	   *c = chunk_of(pointer, "repalloc");
	void	   *n = chunk_alloc(size, 0);

	memcpy(n, pointer, Min(size, c->size));
	pfree(pointer);
	return n;
}

char *
pstrdup(const char *in)
{
	return pnstrdup(in, strlen(in));
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = chunk_alloc(len + 1, 0);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	return pstrdup(string);
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	int			n;
	char	   *out;

	va_start(args, fmt);
	n = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (n < 0)
		shim_fail("ERROR: vsnprintf failed in psprintf", fmt);
	out = chunk_alloc((Size) n + 1, 0);
	va_start(args, fmt);
	vsnprintf(out, (size_t) n + 1, fmt, args);
	va_end(args);
	return out;
}

void
MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback *cb)
{
	if (context != &fuzz_context)
		shim_fail("MemoryContextRegisterResetCallback", "unknown context");
	cb->next = context->reset_cbs;
	context->reset_cbs = cb;
	context->isReset = false;
}

/* MemoryContextReset of the one context: callbacks newest first, then chunks. */
void
shim_reset(void)
{
	MemoryContextCallback *cb;

	CurrentMemoryContext = &fuzz_context;
	while ((cb = fuzz_context.reset_cbs) != NULL)
	{
		fuzz_context.reset_cbs = cb->next;
		cb->func(cb->arg);
	}
	while (chunks.next != &chunks)
		pfree(chunks.next + 1);
	fuzz_context.isReset = true;
}

bool
shim_is_palloc(const void *p)
{
	for (Chunk *c = chunks.next; c != &chunks; c = c->next)
		if ((const void *) (c + 1) == p)
			return true;
	return false;
}

/* ---------------------------------------------------------------------
 * StringInfo: PostgreSQL's contract, with exact-fit buffers.
 * ---------------------------------------------------------------------
 */
void
initStringInfo(StringInfo str)
{
	str->data = palloc(1);
	str->maxlen = 1;
	resetStringInfo(str);
}

StringInfo
makeStringInfo(void)
{
	StringInfo	res = palloc(sizeof(StringInfoData));

	initStringInfo(res);
	return res;
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

/* Room for needed more bytes and the NUL, and not one byte more. */
void
enlargeStringInfo(StringInfo str, int needed)
{
	Size		want;

	if (needed < 0 || ((Size) needed) >= (MaxAllocSize - (Size) str->len))
		shim_fail("ERROR: out of memory", "enlargeStringInfo beyond MaxAllocSize");
	want = (Size) str->len + needed + 1;
	if (want <= (Size) str->maxlen)
		return;
	str->data = repalloc(str->data, want);
	str->maxlen = (int) want;
}

int
appendStringInfoVA(StringInfo str, const char *fmt, va_list args)
{
	int			avail = str->maxlen - str->len;
	int			n = vsnprintf(str->data + str->len, (size_t) avail, fmt, args);

	if (n < 0)
		shim_fail("ERROR: vsnprintf failed in appendStringInfoVA", fmt);
	if (n < avail)
	{
		str->len += n;
		return 0;
	}
	str->data[str->len] = '\0';
	return n + 1;				/* what PostgreSQL's pvsnprintf asks for */
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	int			save_errno = errno;

	for (;;)
	{
		va_list		args;
		int			needed;

		errno = save_errno;
		va_start(args, fmt);
		needed = appendStringInfoVA(str, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(str, needed);
	}
}

void
appendBinaryStringInfoNT(StringInfo str, CompatBinaryData data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
}

void
appendBinaryStringInfo(StringInfo str, CompatBinaryData data, int datalen)
{
	appendBinaryStringInfoNT(str, data, datalen);
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, (int) strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	enlargeStringInfo(str, 1);
	str->data[str->len++] = ch;
	str->data[str->len] = '\0';
}

void
appendStringInfoSpaces(StringInfo str, int count)
{
	if (count <= 0)
		return;
	enlargeStringInfo(str, count);
	memset(str->data + str->len, ' ', count);
	str->len += count;
	str->data[str->len] = '\0';
}

/* ---------------------------------------------------------------------
 * ereport/elog: ERROR and above abort, the rest is discarded.
 * ---------------------------------------------------------------------
 */
sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

static int	err_level;
static char err_text[1024];

bool
errstart(int elevel, const char *domain)
{
	if (elevel < ERROR)
		return false;
	err_level = elevel;
	err_text[0] = '\0';
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	char		where[256];

	snprintf(where, sizeof(where), "%s raised in %s() at %s:%d: %s",
			 err_level >= FATAL ? "FATAL" : "ERROR", funcname ? funcname : "?",
			 filename, lineno, err_text);
	shim_fail(where, NULL);
}

int
errcode(int sqlerrcode)
{
	return 0;
}

#define KEEP_MESSAGE(fmt) \
	do { \
		va_list		args_; \
		va_start(args_, fmt); \
		vsnprintf(err_text, sizeof(err_text), fmt, args_); \
		va_end(args_); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	KEEP_MESSAGE(fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	KEEP_MESSAGE(fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	return 0;
}

int
errhint(const char *fmt,...)
{
	return 0;
}

void
pg_re_throw(void)
{
	shim_fail("pg_re_throw", "an ERROR escaped PG_TRY");
}

/* ---------------------------------------------------------------------
 * Clock, encoding, interrupts.
 * ---------------------------------------------------------------------
 */
TimestampTz
GetCurrentTimestamp(void)
{
	return shim_now;
}

int
GetDatabaseEncoding(void)
{
	return shim_encoding;
}

volatile sig_atomic_t InterruptPending = false;

void
ProcessInterrupts(void)
{
	shim_fail("ProcessInterrupts", "no interrupt can be pending in a fuzzer");
}

/* ---------------------------------------------------------------------
 * The worker's engine in http.c: only to link.
 * ---------------------------------------------------------------------
 */
struct Latch *MyLatch = NULL;

WaitEventSet *
CreateWaitEventSet(CompatWaitEventSetOwner owner, int nevents)
{
	shim_fail("CreateWaitEventSet", "the worker's engine is not fuzzed");
}

int
AddWaitEventToSet(WaitEventSet *set, uint32 events, pgsocket fd, Latch *latch,
				  void *user_data)
{
	shim_fail("AddWaitEventToSet", "the worker's engine is not fuzzed");
}

int
WaitEventSetWait(WaitEventSet *set, long timeout, WaitEvent *occurred_events,
				 int nevents, uint32 wait_event_info)
{
	shim_fail("WaitEventSetWait", "the worker's engine is not fuzzed");
}

void
ResetLatch(Latch *latch)
{
	shim_fail("ResetLatch", "the worker's engine is not fuzzed");
}

void
TimestampDifference(TimestampTz start_time, TimestampTz stop_time,
					long *secs, int *microsecs)
{
	shim_fail("TimestampDifference", "the worker's engine is not fuzzed");
}

/* ---------------------------------------------------------------------
 * No network: these replace libc's for the whole process (libcurl too).
 * ---------------------------------------------------------------------
 */
static int	armed_fd = -1;
static bool armed_taken = false;
static int	handed_fd = -1;		/* the armed descriptor once socket() gave it */

void
shim_arm_socket(int fd)
{
	armed_fd = fd;
	armed_taken = false;
}

bool
shim_disarm_socket(void)
{
	bool		taken = armed_taken;

	armed_fd = -1;
	armed_taken = false;
	handed_fd = -1;
	return taken;
}

/*
 * The armed socketpair end, once; anything else is a network access, but
 * for an IPv6 datagram socket: libcurl's probe of whether IPv6 works (which
 * newer libcurl runs at every transfer, even to 127.0.0.1) sends nothing,
 * and is told that IPv6 is not supported.
 */
int
socket(int domain, int type, int protocol)
{
	if ((domain == AF_INET || domain == AF_INET6) &&
		(type & SOCK_STREAM) == SOCK_STREAM && armed_fd >= 0 && !armed_taken)
	{
		armed_taken = true;
		handed_fd = armed_fd;
		return armed_fd;
	}
	if (domain == AF_INET6 && (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_DGRAM)
	{
		errno = EAFNOSUPPORT;
		return -1;
	}
	shim_fail("socket() called", "the fuzz targets must not use the network");
}

/* Connecting the socketpair end handed out succeeds at once: it is connected. */
int
connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	if (fd >= 0 && fd == handed_fd)
		return 0;
	shim_fail("connect() called", "the fuzz targets must not use the network");
}

int
getaddrinfo(const char *restrict node, const char *restrict service,
			const struct addrinfo *restrict hints, struct addrinfo **restrict res)
{
	shim_fail("getaddrinfo() called", node);
}

struct hostent *
gethostbyname(const char *name)
{
	shim_fail("gethostbyname() called", name);
}

/* ---------------------------------------------------------------------
 * Reading an endpoint from a row, and its request bodies: endpoint.c's
 * endpoint_read and message_* are linked in with the header builder they
 * sit beside, but no target reads rows or builds bodies; reaching one of
 * these is a bug in a harness.
 * ---------------------------------------------------------------------
 */
char *
SPI_getvalue(HeapTuple tuple, TupleDesc tupdesc, int fnumber)
{
	shim_fail("SPI_getvalue() called", "no target reads rows");
}

Datum
SPI_getbinval(HeapTuple tuple, TupleDesc tupdesc, int fnumber, bool *isnull)
{
	shim_fail("SPI_getbinval() called", "no target reads rows");
}

char *
text_to_cstring(const text *t)
{
	shim_fail("text_to_cstring() called", "no target reads rows");
}

void
get_typlenbyvalalign(Oid typid, int16 *typlen, bool *typbyval, char *typalign)
{
	shim_fail("get_typlenbyvalalign() called", "no target reads the catalog");
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	shim_fail("pg_detoast_datum() called", "no target reads rows");
}

void
deconstruct_array(ArrayType *array, Oid elmtype, int elmlen, bool elmbyval, char elmalign,
				  Datum **elemsp, bool **nullsp, int *nelemsp)
{
	shim_fail("deconstruct_array() called", "no target reads rows");
}

void
escape_json(StringInfo buf, const char *str)
{
	shim_fail("escape_json() called", "no target builds bodies");
}

Datum
jsonb_in(PG_FUNCTION_ARGS)
{
	shim_fail("jsonb_in() called", "no target builds bodies");
}

bool
JsonbExtractScalar(JsonbContainer *jbc, JsonbValue *res)
{
	shim_fail("JsonbExtractScalar() called", "no target builds bodies");
}

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	shim_fail("DirectFunctionCall1Coll() called", "no target calls SQL functions");
}
