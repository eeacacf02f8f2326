/*-------------------------------------------------------------------------
 * http.c
 *	  HTTP POSTs through libcurl: the per-request setup shared by the worker
 *	  and webhook_test, and the worker's multi-handle engine.
 *
 * Rules kept here:
 *	- No SPI, no transactions.  Nothing called from a libcurl callback may
 *	  ERROR (a longjmp through libcurl corrupts it): callbacks only copy into
 *	  preallocated buffers and read static data.
 *	- Every handle: CURLOPT_NOSIGNAL, http/https only, no redirects, connect
 *	  and total timeouts, the connected address checked against the
 *	  destination policy in the open-socket callback (so DNS cannot bypass
 *	  it), the response body kept up to a cap and the transfer aborted soon
 *	  after it.
 *	- The engine waits on one WaitEventSet holding the process latch, the
 *	  postmaster-death event and an epoll descriptor that follows libcurl's
 *	  sockets, so latch, interrupts and sockets are all serviced at once.
 *	- Memory malloc'd by libcurl (handles, header lists) is freed explicitly
 *	  by the owner of the HttpRequest.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "compat.h"
#include "http.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Keep reading this much past the cap before aborting a response. */
#define DISCARD_SLACK (64 * 1024)

static bool curl_initialized = false;

/* Initializes libcurl once per process; ERRORs if it cannot. */
void
http_global_init(void)
{
	if (curl_initialized)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");
	curl_initialized = true;
}

/* libcurl write callback: keep up to the cap, then discard, then abort. */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *r = (HttpRequest *) userdata;
	size_t		n = size * nmemb;

	if (r->resp_len < r->resp_cap)
	{
		size_t		take = Min(n, r->resp_cap - r->resp_len);

		memcpy(r->resp + r->resp_len, ptr, take);
		r->resp_len += take;
		if (take < n)
			r->truncated = true;
	}
	else if (n > 0)
		r->truncated = true;
	r->resp_seen += n;
	if (r->resp_seen > r->resp_cap + DISCARD_SLACK)
		return 0;				/* abort: CURLE_WRITE_ERROR */
	return n;
}

/* libcurl open-socket callback: the address policy, at connect time. */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HttpRequest *r = (HttpRequest *) clientp;

	if (!destination_address_allowed(&address->addr))
	{
		r->refused = true;
		if (address->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) &address->addr)->sin_addr,
					  r->refused_addr, sizeof(r->refused_addr));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &address->addr)->sin6_addr,
					  r->refused_addr, sizeof(r->refused_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/* Appends one header line; false when libcurl is out of memory. */
static bool
append_header(struct curl_slist **list, const char *line)
{
	struct curl_slist *next = curl_slist_append(*list, line);

	if (next == NULL)
		return false;
	*list = next;
	return true;
}

/*
 * Builds the request headers: content type (application/json unless the
 * endpoint's headers give one), user agent, webhook-id and
 * webhook-timestamp, the signature line ("Name: value", or NULL for none)
 * and the endpoint's own "Name: value" headers.  Returns a libcurl list the
 * caller frees with curl_slist_free_all, or NULL when libcurl is out of
 * memory.
 */
struct curl_slist *
http_build_headers(const char *msg_id, int64 ts, const char *sigline,
				   char **custom, int ncustom)
{
	struct curl_slist *list = NULL;
	char		buf[256];
	bool		typed = false;
	bool		ok;

	/* an endpoint may set its own Content-Type among its headers */
	for (int i = 0; i < ncustom; i++)
		typed |= pg_strncasecmp(custom[i], "Content-Type:", 13) == 0;
	ok = (typed || append_header(&list, "Content-Type: application/json")) &&
		append_header(&list, "User-Agent: " WEBHOOK_USER_AGENT) &&
		append_header(&list, "Expect:");	/* no 100-continue round trip */
	snprintf(buf, sizeof(buf), "webhook-id: %s", msg_id);
	ok = ok && append_header(&list, buf);
	snprintf(buf, sizeof(buf), "webhook-timestamp: " INT64_FORMAT, ts);
	ok = ok && append_header(&list, buf);
	if (sigline)
		ok = ok && append_header(&list, sigline);
	for (int i = 0; ok && i < ncustom; i++)
		ok = append_header(&list, custom[i]);
	if (!ok)
	{
		curl_slist_free_all(list);
		return NULL;
	}
	return list;
}

/*
 * Prepares r->easy (created if NULL, else reset) for one POST.  url, body
 * and headers must stay valid until the transfer is finished; resp must
 * have room for respcap bytes.
 */
void
http_request_setup(HttpRequest *r, const char *url, const char *body, size_t bodylen,
				   struct curl_slist *headers, long timeout_ms, char *resp, size_t respcap)
{
	CURL	   *easy = r->easy;

	if (easy == NULL)
		easy = curl_easy_init();
	else
		curl_easy_reset(easy);
	if (easy == NULL)
		elog(ERROR, "could not create a libcurl handle");
	r->easy = easy;
	r->headers = headers;
	r->resp = resp;
	r->resp_cap = respcap;
	r->resp_len = 0;
	r->resp_seen = 0;
	r->truncated = false;
	r->refused = false;
	r->refused_addr[0] = '\0';
	r->errbuf[0] = '\0';
	r->timeout_ms = timeout_ms;

	curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, webhook_allow_http ? "http,https" : "https");
	/* never a proxy from the server's environment: the address check is ours */
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) bodylen);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, NULL);
}

/*
 * The delay the final response's Retry-After asks for, in seconds, or -1
 * when it has none, asks for none or cannot be read.  Read as libcurl 7.88
 * reads it for CURLINFO_RETRY_AFTER (the last such header; a number of
 * seconds, else an HTTP date less the current time), but from the header
 * itself: newer libcurl (8.14 of Debian 13, 8.23 of unstable) caps that
 * figure at six hours, while webhook.max_retry_after allows up to 30 days.
 * Never ERRORs.
 */
static int64
response_retry_after(CURL *easy)
{
	struct curl_header *h;
	const char *v;
	char	   *end;
	long long	n = 0;

	if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK ||
		(h->amount > 1 &&
		 curl_easy_header(easy, "Retry-After", h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK))
		return -1;
	v = h->value;				/* without the blanks around it */
	if (*v != '-' && !isspace((unsigned char) *v))
	{
		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno == ERANGE || end == v)
			n = 0;
	}
	if (n == 0)
	{
		time_t		date = curl_getdate(v, NULL);

		if (date != -1)
			n = (long long) date - (long long) time(NULL);
	}
	return n > 0 ? (int64) n : -1;
}

/*
 * Classifies a finished transfer into res.  2xx is success; any other
 * status, a timeout, a refused destination or a transport error is a
 * failure with a short error text (palloc'd in the current context).
 */
void
http_request_result(HttpRequest *r, CURLcode code, HttpResult *res)
{
	long		status = 0;
	curl_off_t	total_us = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &total_us);

	res->status = (int) status;
	res->duration_ms = total_us / 1000.0;
	res->retry_after = response_retry_after(r->easy);
	res->error = NULL;
	res->truncated = r->truncated;

	/* A response cut short by our own cap still counts by its status. */
	if (code == CURLE_WRITE_ERROR && r->resp_seen > r->resp_cap)
		code = CURLE_OK;

	if (code != CURLE_OK)
	{
		res->ok = false;
		if (r->refused)
			res->error = psprintf("destination address %s is not allowed", r->refused_addr);
		else if (code == CURLE_OPERATION_TIMEDOUT)
			res->error = psprintf("timeout after %ld ms", r->timeout_ms);
		else
			res->error = psprintf("%s%s%s", curl_easy_strerror(code),
								  r->errbuf[0] ? ": " : "", r->errbuf);
		if (status == 0)
			res->status = 0;
		return;
	}
	res->ok = status >= 200 && status < 300;
	if (status >= 300 && status < 400)
		res->error = psprintf("redirect (HTTP %ld) not followed", status);
	else if (!res->ok)
		res->error = psprintf("HTTP %ld", status);
}

/* Makes text valid in the database encoding: bad bytes and NULs become '?'. */
static char *
sanitize(const char *s, size_t len)
{
	char	   *out = palloc(len + 1);
	int			enc = GetDatabaseEncoding();
	size_t		i = 0;

	while (i < len)
	{
		int			l;

		if (s[i] == '\0')
			l = -1;
		else if (IS_HIGHBIT_SET(s[i]))
			l = pg_encoding_verifymbchar(enc, s + i, (int) (len - i));
		else
			l = 1;
		if (l <= 0)
		{
			out[i] = '?';
			l = 1;
		}
		else
			memcpy(out + i, s + i, l);
		i += l;
	}
	out[len] = '\0';
	return out;
}

/*
 * The captured response body as text valid in the database encoding
 * (palloc'd), or NULL when the body was empty.
 */
char *
http_response_text(HttpRequest *r)
{
	if (r->resp_len == 0)
		return NULL;
	return sanitize(r->resp, r->resp_len);
}

/* ---------------------------------------------------------------------
 * The worker's engine: one multi handle, many transfers in flight.
 * ---------------------------------------------------------------------
 */
static CURLM *multi = NULL;
static int	epfd = -1;
static WaitEventSet *wes = NULL;
static TimestampTz timer_deadline = -1;	/* -1: no libcurl timer */
static bool kicked = false;		/* finished transfers may wait uncollected */
static int	running = 0;
static int	engine_max_connections = 0;
static bool pool_stale = false;	/* cached connections predate the rules */

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0)
		(void) epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_deadline = -1;
	else
		timer_deadline = GetCurrentTimestamp() + (TimestampTz) timeout_ms * 1000;
	return 0;
}

/* Creates the multi handle (and with it an empty connection cache). */
static void
create_multi(void)
{
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	http_engine_configure(engine_max_connections);
	timer_deadline = -1;
	pool_stale = false;
}

/* Creates the multi handle, its epoll set and the WaitEventSet. */
void
http_engine_init(int max_connections)
{
	http_global_init();
	engine_max_connections = max_connections;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		elog(ERROR, "epoll_create1 failed: %m");
	create_multi();

	wes = compat_session_wait_event_set(3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, epfd, NULL, NULL);
}

/* Applies connection limits (after a configuration reload too). */
void
http_engine_configure(int max_connections)
{
	engine_max_connections = max_connections;
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_connections);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) max_connections);
}

/*
 * Destination rules changed (webhook.allowed_networks, webhook.allow_http):
 * a cached keep-alive connection was checked under the old rules when it
 * was opened, and reusing it would skip the connect-time check.  Drop the
 * cache now if nothing is in flight; otherwise every new transfer opens a
 * fresh (checked) connection until the engine is idle and the cache can
 * be dropped.
 */
void
http_engine_forget_connections(void)
{
	if (running == 0)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
		create_multi();
	}
	else
		pool_stale = true;
}

/* Starts a transfer prepared with http_request_setup. */
void
http_engine_add(HttpRequest *r)
{
	CURLMcode	rc;

	if (pool_stale)
		curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, 1L);
	rc = curl_multi_add_handle(multi, r->easy);

	if (rc != CURLM_OK)
		elog(ERROR, "curl_multi_add_handle failed: %s", curl_multi_strerror(rc));
	running++;
}

/*
 * Runs libcurl's timer if it is due.  Transfers just added are due at once:
 * this sends their requests (on a kept-alive connection) or starts their
 * connections without waiting for the next wait.
 */
void
http_engine_kick(void)
{
	int			still;

	if (timer_deadline >= 0 && GetCurrentTimestamp() >= timer_deadline)
	{
		timer_deadline = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
		/* a transfer may have finished already: the next wait collects it */
		kicked = true;
	}
}

/* Number of transfers added and not yet returned as finished. */
int
http_engine_running(void)
{
	return running;
}

/*
 * Waits up to timeout_ms for the latch, a socket or libcurl's timer, drives
 * the transfers, and returns in done[] (up to maxdone) the finished ones
 * with their result codes.  *latch_set tells whether the latch fired (it has
 * been reset; the caller must look for new work).  Services interrupts.
 */
int
http_engine_wait(long timeout_ms, HttpRequest **done, CURLcode *codes, int maxdone,
				 bool *latch_set)
{
	WaitEvent	events[3];
	int			nev;
	int			ndone = 0;
	int			still;
	CURLMsg    *msg;
	int			msgs_left;

	*latch_set = false;
	if (timer_deadline >= 0)
	{
		long		secs;
		int			usecs;
		long		t;

		TimestampDifference(GetCurrentTimestamp(), timer_deadline, &secs, &usecs);
		t = secs * 1000 + (usecs + 999) / 1000;
		if (t < timeout_ms)
			timeout_ms = t;
	}
	if (timeout_ms < 0 || kicked)
		timeout_ms = 0;
	kicked = false;

	nev = WaitEventSetWait(wes, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < nev; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			*latch_set = true;
		}
		else if (events[i].events & WL_SOCKET_READABLE)
		{
			struct epoll_event ready[64];
			int			n = epoll_wait(epfd, ready, lengthof(ready), 0);

			for (int j = 0; j < n; j++)
			{
				int			flags = 0;

				if (ready[j].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
					flags |= CURL_CSELECT_IN;
				if (ready[j].events & EPOLLOUT)
					flags |= CURL_CSELECT_OUT;
				if (ready[j].events & EPOLLERR)
					flags |= CURL_CSELECT_ERR;
				curl_multi_socket_action(multi, ready[j].data.fd, flags, &still);
			}
		}
	}
	CHECK_FOR_INTERRUPTS();
	http_engine_kick();

	while (ndone < maxdone && (msg = curl_multi_info_read(multi, &msgs_left)) != NULL)
	{
		HttpRequest *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		codes[ndone] = msg->data.result;
		done[ndone++] = r;
		curl_multi_remove_handle(multi, msg->easy_handle);
		running--;
	}
	/* all finished transfers are collected, unless done[] is full */
	kicked = (ndone == maxdone);
	if (pool_stale && running == 0)
		http_engine_forget_connections();
	return ndone;
}

/* Releases the engine; in-flight transfers are abandoned (leases recover them). */
void
http_engine_shutdown(void)
{
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
}

/* ---------------------------------------------------------------------
 * One synchronous transfer from a backend (webhook_test).
 * ---------------------------------------------------------------------
 */

/*
 * Runs r to completion, servicing interrupts every 50 ms so that a cancel
 * or statement_timeout stops it.  The handles are released if it ERRORs.
 */
CURLcode
http_perform_sync(HttpRequest *r)
{
	CURLM	   *m = curl_multi_init();
	volatile CURLcode result = CURLE_FAILED_INIT;

	if (m == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	PG_TRY();
	{
		int			still = 1;

		curl_multi_add_handle(m, r->easy);
		while (still)
		{
			CURLMsg    *msg;
			int			left;

			if (curl_multi_perform(m, &still) != CURLM_OK)
				break;
			while ((msg = curl_multi_info_read(m, &left)) != NULL)
				if (msg->msg == CURLMSG_DONE)
					result = msg->data.result;
			if (!still)
				break;
			curl_multi_poll(m, NULL, 0, 50, NULL);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		curl_multi_remove_handle(m, r->easy);
		curl_multi_cleanup(m);
	}
	PG_END_TRY();
	return result;
}
