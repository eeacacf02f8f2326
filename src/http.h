/*-------------------------------------------------------------------------
 * http.h
 *	  libcurl transfers (http.c).  Included only where libcurl is used.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_HTTP_H
#define WEBHOOK_HTTP_H

#include <netinet/in.h>
#include <curl/curl.h>

#include "webhook.h"

/* One POST in progress.  The owner keeps url, body and resp alive. */
typedef struct HttpRequest
{
	CURL	   *easy;
	struct curl_slist *headers;
	long		timeout_ms;
	char	   *resp;			/* response body buffer, resp_cap bytes */
	size_t		resp_cap;
	size_t		resp_len;
	size_t		resp_seen;		/* bytes received, kept or not */
	bool		truncated;
	bool		refused;		/* the destination policy refused an address */
	char		refused_addr[INET6_ADDRSTRLEN];
	char		errbuf[CURL_ERROR_SIZE];
	void	   *owner;
} HttpRequest;

extern void http_global_init(void);
extern struct curl_slist *http_build_headers(const char *msg_id, int64 ts,
											 const char *sigline,
											 char **custom, int ncustom);
extern void http_request_setup(HttpRequest *r, const char *url, const char *body,
							   size_t bodylen, struct curl_slist *headers,
							   long timeout_ms, char *resp, size_t respcap);
extern void http_request_result(HttpRequest *r, CURLcode code, HttpResult *res);
extern char *http_response_text(HttpRequest *r);

extern void http_engine_init(int max_connections);
extern void http_engine_configure(int max_connections);
extern void http_engine_forget_connections(void);
extern void http_engine_add(HttpRequest *r);
extern void http_engine_kick(void);
extern int	http_engine_running(void);
extern int	http_engine_wait(long timeout_ms, HttpRequest **done, CURLcode *codes,
							 int maxdone, bool *latch_set);
extern void http_engine_shutdown(void);
extern CURLcode http_perform_sync(HttpRequest *r);

#endif							/* WEBHOOK_HTTP_H */
