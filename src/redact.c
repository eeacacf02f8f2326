/*-------------------------------------------------------------------------
 * redact.c
 *	  Keeps secrets and payloads passed to the extension's functions out of
 *	  the server log when a call fails.
 *
 * With log_min_error_statement at its default (error), PostgreSQL logs the
 * text of every statement that fails, and a call such as
 * webhook_update_endpoint(1, url => 'ftp://...', secret => 'whsec_...')
 * carries a secret in it.  An emit_log_hook marks such a report so that
 * its STATEMENT line is left out (edata->hide_stmt); the message, detail
 * and context of the extension's own errors, which never hold an
 * argument's value, are logged as usual.  An input function's data
 * exception may quote the value (below): its detail is replaced in the
 * log only, and its context is dropped for the client too (a report has
 * no context for the log alone).
 * A report's statement is hidden when:
 *
 *	- the statement's text names an object of the extension (an identifier
 *	  starting with "webhook_"): a direct call, whatever fails in it, even
 *	  an argument that did not parse, and a direct write to its tables; or
 *	- the error left one of the extension's functions (called through a
 *	  wrapper of the application's, say), or the report was made while one
 *	  ran.  A function hook (needs_fmgr_hook/fmgr_hook) follows calls of
 *	  the extension's functions; the capture triggers are left out, as they
 *	  run inside the application's own statements.
 *
 * A constraint violation on one of the extension's tables is logged with
 * its DETAIL replaced (edata->detail_log): "Failing row contains (...)"
 * would show a secret; the client still receives the full detail.  And
 * statement logging (log_statement, log_min_duration_statement) logs a
 * statement that names the extension's objects without its text and
 * parameters.  The log hook runs in the report's own memory context.
 *
 * The hooks never ERROR and the log hook reads no catalog (it may run in
 * an aborted transaction).
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static emit_log_hook_type prev_emit_log_hook = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;

/* Calls of the extension's functions under way, and an error that left one. */
static int	depth = 0;
static bool error_left_ours = false;

/* fmgr_hook's per-FmgrInfo state (its Datum arg) */
#define HOOK_UNKNOWN 0
#define HOOK_OURS 1
#define HOOK_OTHER 2

/*
 * Does q name an object of the extension: an identifier starting with
 * "webhook_", in any case (unquoted names are folded), not inside a longer
 * one?
 */
static bool
names_extension(const char *q)
{
	for (const char *p = q; *p; p++)
	{
		unsigned char before = p == q ? ' ' : (unsigned char) p[-1];

		if ((*p == 'w' || *p == 'W') && pg_strncasecmp(p, "webhook_", 8) == 0 &&
			!(before == '_' || before == '$' || (before >= '0' && before <= '9') ||
			  (before >= 'A' && before <= 'Z') || (before >= 'a' && before <= 'z') ||
			  before >= 0x80))
			return true;
	}
	return false;
}

/*
 * Is fn_oid a function of this extension whose calls are followed?  Every
 * function of the extension but SQL-language ones (followed, they would
 * no longer be inlined) and the capture triggers.  Runs in a transaction.
 */
static bool
followed_function(Oid fn_oid)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		result = false;

	if (fn_oid < FirstNormalObjectId)
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (strncmp(NameStr(proc->proname), "webhook_", 8) == 0 &&
		proc->prolang != SQLlanguageId &&
		strcmp(NameStr(proc->proname), "webhook_capture") != 0 &&
		strcmp(NameStr(proc->proname), "webhook_capture_flush") != 0)
	{
		Oid			ext = get_extension_oid("webhook", true);

		result = OidIsValid(ext) && getExtensionOfObject(ProcedureRelationId, fn_oid) == ext;
	}
	ReleaseSysCache(tup);
	return result;
}

static bool
redact_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return followed_function(fn_oid);
}

static void
redact_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, arg);
	/* every SECURITY DEFINER or SET function comes here: ours only */
	if (*arg == (Datum) HOOK_UNKNOWN)
		*arg = (Datum) (followed_function(flinfo->fn_oid) ? HOOK_OURS : HOOK_OTHER);
	if (*arg != (Datum) HOOK_OURS)
		return;
	switch (event)
	{
		case FHET_START:
			depth++;
			break;
		case FHET_END:
			depth--;
			break;
		case FHET_ABORT:
			/* unwinding: the report is made once the error is caught */
			depth--;
			error_left_ours = true;
			break;
	}
}

/*
 * A report of PostgreSQL's statement logging (log_statement,
 * log_min_duration_statement): its message quotes the statement, its
 * detail the parameters.
 */
static bool
statement_report(const ErrorData *edata)
{
	const char *id = edata->message_id;

	return id != NULL && edata->elevel == LOG &&
		(strncmp(id, "statement: ", 11) == 0 || strncmp(id, "duration: ", 10) == 0 ||
		 strncmp(id, "execute ", 8) == 0);
}

static void
redact_emit_log(ErrorData *edata)
{
	bool		names_ours = debug_query_string != NULL && names_extension(debug_query_string);

	bool		sensitive = depth > 0 || error_left_ours || names_ours;

	if (sensitive)
		edata->hide_stmt = true;
	/*
	 * An input function's error quotes the value it could not read, in its
	 * detail and context ("JSON data, line 1: ..."): an auth object or a
	 * header value that was not valid JSON.  (The extension's own errors,
	 * invalid_parameter_value, never quote a secret.)
	 */
	if (sensitive && edata->elevel >= ERROR &&
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION &&
		edata->sqlerrcode != ERRCODE_INVALID_PARAMETER_VALUE)
	{
		if (edata->detail != NULL)
			edata->detail_log = pstrdup("The detail is not logged: it may quote a secret.");
		edata->context = NULL;
	}
	if (edata->elevel >= ERROR)
		error_left_ours = false;
	/* the statement as logged: keep what precedes it, drop it and its parameters */
	if (names_ours && statement_report(edata) && edata->message != NULL)
	{
		size_t		len = strlen(edata->message);
		size_t		qlen = strlen(debug_query_string);
		size_t		keep = len >= qlen && strcmp(edata->message + len - qlen, debug_query_string) == 0 ?
			len - qlen : 0;

		edata->message = psprintf("%.*s[not logged: it names objects of the webhook extension, and may hold secrets]",
								  (int) keep, edata->message);
		if (edata->detail != NULL)
			edata->detail_log = pstrdup("The parameters are not logged.");
	}
	if (edata->table_name != NULL && edata->detail != NULL && edata->detail_log == NULL &&
		strncmp(edata->table_name, "webhook_", 8) == 0)
		edata->detail_log = pstrdup("The row is not logged: it may hold secrets.");
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* An error caught and rolled back was never reported: forget it left ours. */
static void
redact_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid,
			   void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		error_left_ours = false;
}

static void
redact_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT)
	{
		error_left_ours = false;
		depth = 0;
	}
}

/* Installs the hooks; called from _PG_init. */
void
redact_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_emit_log;
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = redact_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = redact_fmgr_hook;
	RegisterXactCallback(redact_xact, NULL);
	RegisterSubXactCallback(redact_subxact, NULL);
}
