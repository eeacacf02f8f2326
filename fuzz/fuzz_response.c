/*-------------------------------------------------------------------------
 * fuzz_response.c
 *	  What a receiver sends back, through src/http.c: libcurl parses the
 *	  response (status line, Retry-After, chunked bodies), and our code
 *	  captures the body up to a cap (write_cb), classifies the outcome and
 *	  bounds Retry-After (http_request_result), and turns the captured bytes
 *	  into text valid in the database encoding (http_response_text).
 *
 * No network: the shim's socket() hands libcurl one end of a socketpair,
 * into which a thread of ours writes the response and then ends it; the
 * URL's host is the literal 127.0.0.1 (no name to resolve), allowed by
 * webhook.allowed_networks unless the input asks for it to be refused, and
 * the shim's connect() succeeds on that descriptor only.  Nothing is set
 * on the handle beyond what http_request_setup sets.
 *
 * Input fields: flags, cap (2 bytes), encoding, status (2), Retry-After
 * kind, Retry-After number (8), repeat, chunk size, Retry-After text, then
 * the payload (the rest).
 *	  flags bit 0   raw: the payload is the whole response, as is
 *	  flags bit 1   refuse the address (no allowed network)
 *	  flags bit 2   chunked transfer encoding
 *	  flags bit 3   no Content-Length: the body ends when the stream does
 * Otherwise the response is built: "HTTP/1.1 <200..599>", an optional
 * Retry-After (none, a number of seconds, the text field, or a date in the
 * future), and a body of the payload repeated (up to 200 kB).
 *
 * Invariants: the captured body is exactly the first cap bytes of the
 * body sent, truncated is set iff more came; the status, success and error
 * text follow the status; Retry-After is -1 or positive, equal to the
 * number sent; the text is NUL-free, valid in the encoding, and differs
 * from the bytes only by '?'; a refused address opens no socket; every
 * descriptor is closed.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../src/webhook.h"
#include "../src/http.h"
#include "common.h"
#include "mb/pg_wchar.h"
#include "shim.h"

#define MAX_BODY (200 * 1024)

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	http_global_init();
	webhook_allow_http = true;
	return 0;
}

/* What the receiver's side of the socketpair sends, from its own thread. */
typedef struct Writer
{
	int			fd;
	const char *data;
	size_t		len;
} Writer;

/*
 * Sends the whole response, then ends the stream.  Stops early when
 * libcurl closes its end (it may stop reading before the end, and never
 * reads at all when the address is refused).
 */
static void *
writer_main(void *arg)
{
	Writer	   *w = arg;
	size_t		off = 0;

	while (off < w->len)
	{
		ssize_t		n = send(w->fd, w->data + off, w->len - off, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		off += n;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

/* The response being written: a doubling buffer (StringInfo is exact-fit here). */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_append(Buf *b, const char *data, size_t len)
{
	if (b->len + len + 1 > b->cap)
	{
		b->cap = Max(2 * b->cap, b->len + len + 1);
		b->data = realloc(b->data, b->cap);
		if (b->data == NULL)
			abort();
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

static void buf_printf(Buf *b, const char *fmt,...) pg_attribute_printf(2, 3);

static void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		args;
	char		line[512];
	int			n;

	va_start(args, fmt);
	n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n < 0 || n >= (int) sizeof(line))
		abort();
	buf_append(b, line, n);
}

/* An IMF-fixdate for t, as a Retry-After date. */
static char *
http_date(time_t t)
{
	struct tm	tm;
	char		buf[64];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	return fz_strdup(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzIn		in = {data, size};
	uint8_t		flags = in_byte(&in);
	size_t		cap = in_u16(&in) % 4097;
	int			enc = in_byte(&in) % (PG_ENCODING_BE_LAST + 1);
	int			status = 200 + in_u16(&in) % 400;
	int			retry_kind = in_byte(&in) % 4;
	uint64_t	retry_num = in_u64(&in);
	int			repeat = 1 + in_byte(&in);
	int			chunk = 1 + in_byte(&in);
	char	   *retry_text = in_str(&in, 200);
	bool		raw = flags & 1;
	bool		refuse = flags & 2;
	bool		chunked = flags & 4;
	bool		until_eof = (flags & 8) && !chunked;
	Buf			msg = {NULL, 0, 0};
	char	   *body = NULL;
	size_t		bodylen = 0;
	int64		want_retry = -1;
	time_t		date_delta = 0;
	int			sv[2];
	Writer		writer;
	pthread_t	thread;
	HttpRequest r;
	HttpResult	res;
	CURLcode	code;
	struct curl_slist *headers;
	bool		taken;
	char	   *text;

	shim_encoding = enc;

	/* the response */
	if (raw)
		buf_append(&msg, (const char *) in.p, in.n);
	else
	{
		bodylen = Min(in.n * repeat, MAX_BODY);
		body = fz_alloc(bodylen + 1);
		for (size_t i = 0; i < bodylen; i++)
			body[i] = in.p[i % in.n];
		buf_printf(&msg, "HTTP/1.1 %d Whatever\r\n", status);
		switch (retry_kind)
		{
			case 1:
				retry_num %= UINT64CONST(1000000000000);
				buf_printf(&msg, "Retry-After: " UINT64_FORMAT "\r\n", retry_num);
				want_retry = retry_num > 0 ? (int64) retry_num : -1;
				break;
			case 2:
				/* any value, on one line */
				for (char *c = retry_text; *c; c++)
					if (*c == '\r' || *c == '\n')
						*c = ' ';
				buf_printf(&msg, "Retry-After:%s\r\n", retry_text);
				break;
			case 3:
				date_delta = 10 + retry_num % 1000000;
				buf_printf(&msg, "Retry-After: %s\r\n", http_date(time(NULL) + date_delta));
				break;
		}
		if (chunked)
		{
			buf_printf(&msg, "Transfer-Encoding: chunked\r\n\r\n");
			for (size_t off = 0; off < bodylen; off += chunk)
			{
				size_t		n = Min((size_t) chunk, bodylen - off);

				buf_printf(&msg, "%zx\r\n", n);
				buf_append(&msg, body + off, n);
				buf_printf(&msg, "\r\n");
			}
			buf_printf(&msg, "0\r\n\r\n");
		}
		else
		{
			if (until_eof)
				buf_printf(&msg, "Connection: close\r\n\r\n");
			else
				buf_printf(&msg, "Content-Length: %zu\r\n\r\n", bodylen);
			buf_append(&msg, body, bodylen);
		}
	}

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	writer.fd = sv[1];
	writer.data = msg.data ? msg.data : "";
	writer.len = msg.len;
	if (pthread_create(&thread, NULL, writer_main, &writer) != 0)
		abort();

	destination_reset_networks();
	if (!refuse && !destination_parse_networks("127.0.0.1/32", NULL))
		abort();

	/* the request, exactly as webhook_test makes it */
	memset(&r, 0, sizeof(r));
	headers = http_build_headers("msg_2Ld0Gkz0aYdhZPQk4BXIU6", 1714000000, NULL, NULL, 0);
	FZ_CHECK(headers != NULL, "http_build_headers failed");
	http_request_setup(&r, "http://127.0.0.1:9/hook", "{}", 2, headers, 10000,
					   palloc(cap), cap);
	shim_arm_socket(sv[0]);
	code = http_perform_sync(&r);
	taken = shim_disarm_socket();
	http_request_result(&r, code, &res);
	text = http_response_text(&r);
	curl_easy_cleanup(r.easy);
	curl_slist_free_all(headers);

	/* descriptors: libcurl closed its end if it took it */
	if (taken)
		FZ_CHECK(fcntl(sv[0], F_GETFD) == -1, "libcurl left its socket open");
	else
		close(sv[0]);
	pthread_join(thread, NULL);
	close(sv[1]);
	free(msg.data);

	/* what holds for any response */
	FZ_CHECK(r.resp_len <= cap, "captured %zu bytes with a cap of %zu", r.resp_len, cap);
	FZ_CHECK(r.resp_seen >= r.resp_len, "seen %zu < kept %zu", r.resp_seen, r.resp_len);
	FZ_CHECK(res.truncated == (r.resp_seen > cap), "truncated %d, seen %zu, cap %zu",
			 res.truncated, r.resp_seen, cap);
	FZ_CHECK(res.retry_after == -1 || res.retry_after > 0, "retry_after " INT64_FORMAT,
			 res.retry_after);
	FZ_CHECK(res.status >= 0 && res.status <= 999, "status %d", res.status);
	FZ_CHECK(res.ok == (res.error == NULL), "ok %d with error %s", res.ok,
			 res.error ? res.error : "NULL");
	FZ_CHECK(!res.ok || (res.status >= 200 && res.status < 300), "ok with status %d", res.status);
	FZ_CHECK(res.error == NULL || shim_is_palloc(res.error), "error not palloc'd");
	if (r.resp_len == 0)
		FZ_CHECK(text == NULL, "text for an empty body");
	else
	{
		FZ_CHECK(text != NULL && shim_is_palloc(text), "no text for %zu bytes", r.resp_len);
		FZ_CHECK(strlen(text) == r.resp_len, "text of %zu bytes for %zu", strlen(text), r.resp_len);
		for (size_t i = 0; i < r.resp_len; i++)
			FZ_CHECK(text[i] == r.resp[i] || text[i] == '?', "byte %zu changed", i);
		FZ_CHECK(pg_encoding_verifymbstr(enc, text, (int) r.resp_len) == (int) r.resp_len,
				 "text invalid in encoding %d", enc);
	}

	if (refuse)
	{
		FZ_CHECK(!taken, "a socket was opened for a refused address");
		FZ_CHECK(!res.ok && res.status == 0 && res.error != NULL &&
				 strcmp(res.error, "destination address 127.0.0.1 is not allowed") == 0,
				 "refused: ok %d status %d error %s", res.ok, res.status,
				 res.error ? res.error : "NULL");
	}
	else if (!raw)
	{
		bool		bodyless = status == 204 || status == 304;
		size_t		kept = Min(bodylen, cap);

		FZ_CHECK(taken, "libcurl did not open its socket");
		FZ_CHECK(res.status == status, "status %d, sent %d (code %d, error %s)", res.status,
				 status, (int) code, res.error ? res.error : "NULL");
		FZ_CHECK(res.ok == (status < 300), "ok %d for status %d (code %d, error %s)", res.ok,
				 status, (int) code, res.error ? res.error : "NULL");
		if (!res.ok)
			FZ_CHECK(strcmp(res.error, status < 400 ?
							fz_printf("redirect (HTTP %d) not followed", status) :
							fz_printf("HTTP %d", status)) == 0,
					 "error %s for status %d", res.error, status);
		if (retry_kind == 1)
			FZ_CHECK(res.retry_after == want_retry, "Retry-After " INT64_FORMAT ", sent "
					 INT64_FORMAT, res.retry_after, want_retry);
		else if (retry_kind == 0)
			FZ_CHECK(res.retry_after == -1, "Retry-After " INT64_FORMAT " without the header",
					 res.retry_after);
		else if (retry_kind == 3)
			FZ_CHECK(res.retry_after >= date_delta - 5 && res.retry_after <= date_delta + 5,
					 "Retry-After " INT64_FORMAT " for a date %ld s ahead",
					 res.retry_after, (long) date_delta);
		if (!bodyless)
		{
			FZ_CHECK(r.resp_len == kept, "captured %zu of %zu bytes, cap %zu", r.resp_len,
					 bodylen, cap);
			FZ_CHECK(memcmp(r.resp, body, kept) == 0, "captured bytes differ from the body");
			FZ_CHECK(res.truncated == (bodylen > cap), "truncated %d for %zu bytes, cap %zu",
					 res.truncated, bodylen, cap);
		}
	}

	shim_reset();
	fz_end();
	return 0;
}
