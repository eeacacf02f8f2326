/*-------------------------------------------------------------------------
 * fuzz_headers.c
 *	  Request header building: endpoint_headers (src/endpoint.c), which
 *	  signs with every still-valid secret, and http_build_headers
 *	  (src/http.c), which lays out the header lines.  http.c is compiled
 *	  whole; the shim supplies the worker-engine functions it references.
 *
 * Input fields: scheme, number of secrets, expiry byte (bit i: secret i
 * has expired), kind byte (bit i: secret i is made valid from 32 input
 * bytes instead of taken as text), ts (8 bytes), msg_id, signature header
 * name, signature prefix, the secrets, the number of custom headers and
 * the headers, then the body (the rest).
 *
 * Invariants: the list holds exactly Content-Type, User-Agent, Expect,
 * webhook-id, webhook-timestamp, the signature line (unless the scheme is
 * none) and the custom headers in order, each byte for byte; the
 * signature line has one signature per unexpired key, newest first, each
 * one the oracle's (standard and ed25519 ones are also checked with
 * sign_verify), and none made with an expired key; an endpoint with no
 * usable key gets no list at all rather than unsigned requests.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "../src/webhook.h"
#include "../src/http.h"
#include "../src/endpoint.h"
#include "common.h"
#include "shim.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	http_global_init();
	return 0;
}

/* Is the entry at index i of list exactly want? */
static const struct curl_slist *
expect_line(const struct curl_slist *l, const char *want)
{
	FZ_CHECK(l != NULL, "header list ends before \"%s\"", want);
	FZ_CHECK(strcmp(l->data, want) == 0, "header \"%s\", expected \"%s\"", l->data, want);
	return l->next;
}

/* The signature of one key under scheme, as the oracle computes it. */
static char *
oracle_signature(int scheme, const char *secret, const char *prefix, const char *msg_id,
				 int64 ts, const char *body, size_t bodylen)
{
	uint8_t		key[64];
	uint8_t		pub[32];
	uint8_t		mac[32];
	int			keylen;
	char	   *head = fz_printf("%s." INT64_FORMAT ".", msg_id, ts);
	char	   *tshead = fz_printf(INT64_FORMAT ".", ts);

	switch (scheme)
	{
		case SIGN_STANDARD:
			oracle_secret(secret, key, &keylen, pub);
			oracle_hmac(key, keylen, head, strlen(head), body, bodylen, mac);
			return fz_printf("v1,%s", oracle_b64_encode(mac, 32));
		case SIGN_HEX:
			oracle_hmac((const uint8_t *) secret, strlen(secret), "", 0, body, bodylen, mac);
			return fz_printf("%s%s", prefix ? prefix : "", oracle_hex(mac, 32));
		case SIGN_TIMESTAMPED:
			oracle_hmac((const uint8_t *) secret, strlen(secret), tshead, strlen(tshead),
						body, bodylen, mac);
			return fz_printf(",v1=%s", oracle_hex(mac, 32));
	}
	return NULL;				/* ed25519 is checked by verifying */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzIn		in = {data, size};
	int			scheme = in_byte(&in) % 5;
	int			nsecrets = in_byte(&in) % (MAX_SIGN_KEYS + 1);
	uint16_t	expired = in_u16(&in);
	uint16_t	made = in_u16(&in);
	int64		ts = (int64) in_u64(&in);
	char	   *msg_id = in_str(&in, 300);
	char	   *sig_header = in_str(&in, 200);
	char	   *sig_prefix = in_str(&in, 120);
	char	   *secrets[MAX_SIGN_KEYS];
	bool		live[MAX_SIGN_KEYS];
	int			nheaders;
	char	  **headers;
	const char *body;
	size_t		bodylen;
	Endpoint	ep;
	struct curl_slist *list = NULL;
	bool		ok;
	int			nlive = 0;
	bool		long_head;

	memset(&ep, 0, sizeof(ep));
	ep.signing = scheme;
	ep.sig_header = fz_printf("%s: ", sig_header);
	ep.sig_prefix = sig_prefix[0] ? sig_prefix : NULL;
	for (int i = 0; i < nsecrets; i++)
	{
		char	   *secret;

		if (made & (1 << i))
		{
			uint8_t		raw[64];

			in_fill(&in, raw, sizeof(raw));
			secret = scheme == SIGN_ED25519 ? make_secret('k', raw, 32) :
				make_secret('s', raw, 24 + raw[63] % 41);
			if (scheme == SIGN_HEX || scheme == SIGN_TIMESTAMPED)
				secret += 6;	/* text secrets: the base64 alone */
		}
		else
			secret = in_str(&in, 1100);
		/* what queue.c's endpoint_read keeps: the secrets that prepare */
		if (!sign_prepare_key(scheme, secret, &ep.keys[ep.nkeys]))
		{
			if (i == 0)
				break;			/* the current secret is unusable */
			continue;
		}
		/* the current secret never expires; an old one at its expiry time */
		live[ep.nkeys] = i == 0 || !(expired & (1 << i));
		ep.keys[ep.nkeys].expires = i == 0 ? 0 :
			live[ep.nkeys] ? shim_now + 1 + i : shim_now - (expired >> 12);
		secrets[ep.nkeys] = secret;
		nlive += live[ep.nkeys];
		ep.nkeys++;
	}
	nheaders = in_byte(&in) % 8;
	headers = fz_alloc(sizeof(char *) * (nheaders + 1));
	for (int i = 0; i < nheaders; i++)
		headers[i] = in_str(&in, 4200);
	ep.headers = headers;
	ep.nheaders = nheaders;
	body = (const char *) in.p;
	bodylen = in.n;
	long_head = strlen(fz_printf("%s." INT64_FORMAT ".", msg_id, ts)) >= 160;

	ok = endpoint_headers(&ep, msg_id, ts, body, bodylen, &list);
	FZ_CHECK(ok == (list != NULL), "endpoint_headers returned %d with list %p", ok, list);
	if (scheme != SIGN_NONE && nlive == 0)
		FZ_CHECK(!ok, "no usable key, yet headers were built");
	else if ((scheme == SIGN_STANDARD || scheme == SIGN_ED25519) && long_head)
		FZ_CHECK(!ok, "signed with an over-long msg_id");
	else
		FZ_CHECK(ok, "endpoint_headers failed (scheme %d, %d live keys)", scheme, nlive);

	if (ok)
	{
		const struct curl_slist *l = list;
		char	   *id_line = fz_printf("webhook-id: %s", msg_id);

		if (strlen(id_line) > 255)
			id_line[255] = '\0';	/* http_build_headers' line buffer */
		l = expect_line(l, "Content-Type: application/json");
		l = expect_line(l, "User-Agent: " WEBHOOK_USER_AGENT);
		l = expect_line(l, "Expect:");
		l = expect_line(l, id_line);
		l = expect_line(l, fz_printf("webhook-timestamp: " INT64_FORMAT, ts));
		if (scheme != SIGN_NONE)
		{
			const char *line;
			const char *value;
			int			k = 0;

			FZ_CHECK(l != NULL, "no signature line");
			line = l->data;
			if (scheme == SIGN_STANDARD || scheme == SIGN_ED25519)
			{
				FZ_CHECK(strncmp(line, "webhook-signature: ", 19) == 0, "signature line %s", line);
				value = line + 19;
			}
			else
			{
				FZ_CHECK(strncmp(line, ep.sig_header, strlen(ep.sig_header)) == 0,
						 "signature line %s for header %s", line, ep.sig_header);
				value = line + strlen(ep.sig_header);
			}
			if (scheme == SIGN_TIMESTAMPED)
			{
				char	   *t = fz_printf("t=" INT64_FORMAT, ts);

				FZ_CHECK(strncmp(value, t, strlen(t)) == 0, "timestamped line %s", value);
				value += strlen(t);
			}
			for (int i = 0; i < ep.nkeys; i++)
			{
				char	   *want;
				size_t		len;

				if (!live[i])
					continue;
				if (scheme == SIGN_ED25519)
				{
					len = strcspn(value, " ");
					want = fz_printf("%.*s", (int) len, value);
					FZ_CHECK(sign_verify(secrets[i], msg_id, ts, body, bodylen, want),
							 "signature %d (%s) does not verify under %s", k, want, secrets[i]);
				}
				else
				{
					want = oracle_signature(scheme, secrets[i], ep.sig_prefix, msg_id, ts,
											body, bodylen);
					len = strlen(want);
					FZ_CHECK(strncmp(value, want, len) == 0,
							 "signature %d: %s, expected %s", k, value, want);
					if (scheme == SIGN_STANDARD)
						FZ_CHECK(sign_verify(secrets[i], msg_id, ts, body, bodylen, want),
								 "own signature %s not verified", want);
				}
				value += len;
				if (++k < nlive && scheme != SIGN_TIMESTAMPED)
				{
					FZ_CHECK(*value == ' ', "signatures not space-separated: %s", line);
					value++;
				}
			}
			FZ_CHECK(*value == '\0', "signature line has more than %d signatures: %s", k, line);

			/* an expired key's signature is not in the line */
			for (int i = 0; i < ep.nkeys && scheme == SIGN_STANDARD; i++)
			{
				bool		shared = false;

				if (live[i])
					continue;
				/* HMAC pads keys with zeros: such keys are the same key */
				for (int j = 0; j < ep.nkeys; j++)
				{
					uint8_t		a[64] = {0};
					uint8_t		b[64] = {0};

					memcpy(a, ep.keys[i].key, ep.keys[i].keylen);
					memcpy(b, ep.keys[j].key, ep.keys[j].keylen);
					shared |= live[j] && memcmp(a, b, 64) == 0;
				}
				if (!shared)
					FZ_CHECK(!sign_verify(secrets[i], msg_id, ts, body, bodylen, line + 19),
							 "expired key %s still signs", secrets[i]);
			}
			l = l->next;
		}
		for (int i = 0; i < nheaders; i++)
			l = expect_line(l, headers[i]);
		FZ_CHECK(l == NULL, "extra header line %s", l->data);
	}
	curl_slist_free_all(list);

	/* http_build_headers alone, without a signature line */
	list = http_build_headers(msg_id, ts, NULL, headers, nheaders);
	FZ_CHECK(list != NULL, "http_build_headers failed");
	{
		int			n = 0;

		for (struct curl_slist *l = list; l; l = l->next)
			n++;
		FZ_CHECK(n == 5 + nheaders, "%d lines for %d custom headers", n, nheaders);
	}
	curl_slist_free_all(list);

	shim_reset();
	fz_end();
	return 0;
}
