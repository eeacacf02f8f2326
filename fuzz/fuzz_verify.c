/*-------------------------------------------------------------------------
 * fuzz_verify.c
 *	  Signature header parsing in src/sign.c: sign_verify with arbitrary
 *	  secrets, message ids, timestamps, bodies and webhook-signature headers.
 *
 * Input fields: flags, secret, msg_id, header, ts (8 bytes), key bytes
 * (64), then the body (the rest).  Flags steer the input towards the
 * interesting paths:
 *	  bit 0      the secret is replaced by a valid one made from the key
 *	             bytes, of kind whsec_/whsk_ (seed)/whsk_ (seed+public)/whpk_
 *	             chosen by bits 1-2
 *	  bit 3      a signature made by sign_message for that key is inserted
 *	             into the header (at a position chosen by bits 4-7)
 *
 * Invariants: sign_verify answers exactly what the oracle answers (a
 * space-separated entry "v1,<base64 of 32 bytes>" equal to the HMAC for a
 * whsec_, or "v1a,<base64 of 64 bytes>" that OpenSSL verifies for a
 * whsk_/whpk_); a header holding sign_message's signature verifies, one
 * holding it for another body or timestamp does not.  Never crashes.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "../src/webhook.h"
#include "common.h"
#include "shim.h"

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	return 0;
}

/* What sign_verify must answer, computed without src/sign.c. */
static bool
oracle_verify(const char *secret, const char *msg_id, int64 ts, const char *body,
			  size_t bodylen, const char *header)
{
	uint8_t		key[64];
	uint8_t		pub[32];
	uint8_t		mac[32];
	int			keylen;
	char		kind = oracle_secret(secret, key, &keylen, pub);
	char	   *head = fz_printf("%s." INT64_FORMAT ".", msg_id, ts);
	size_t		headlen = strlen(head);
	const char *p = header;

	if (kind == 0 || headlen >= 160)
		return false;
	if (kind == 's')
		oracle_hmac(key, keylen, head, headlen, body, bodylen, mac);

	while (*p)
	{
		const char *end = strchr(p, ' ');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		uint8_t		got[64];

		if (kind == 's' && len >= 3 && strncmp(p, "v1,", 3) == 0)
		{
			if (oracle_b64_decode(p + 3, len - 3, got, 64) == 32 && memcmp(got, mac, 32) == 0)
				return true;
		}
		else if (kind != 's' && len >= 4 && strncmp(p, "v1a,", 4) == 0)
		{
			if (oracle_b64_decode(p + 4, len - 4, got, 64) == 64 &&
				oracle_ed25519_verify(pub, got, head, headlen, body, bodylen))
				return true;
		}
		p += len;
		while (*p == ' ')
			p++;
	}
	return false;
}

/* The header with sig inserted as an entry before entry number at. */
static char *
insert_entry(const char *header, const char *sig, int at)
{
	const char *p = header;

	for (int i = 0; i < at && *p; i++)
	{
		const char *sp = strchr(p, ' ');

		p = sp ? sp + 1 : p + strlen(p);
	}
	return fz_printf("%.*s%s%s%s", (int) (p - header), header,
					 (p > header && p[-1] != ' ') ? " " : "", sig, *p ? " " : "");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzIn		in = {data, size};
	uint8_t		flags = in_byte(&in);
	char	   *secret = in_str(&in, 2048);
	char	   *msg_id = in_str(&in, 200);
	char	   *header = in_str(&in, 8192);
	int64		ts = (int64) in_u64(&in);
	uint8_t		raw[64];
	const char *body;
	size_t		bodylen;
	bool		got;
	bool		expected;

	in_fill(&in, raw, sizeof(raw));
	body = (const char *) in.p;
	bodylen = in.n;

	if (flags & 1)
	{
		static const char kinds[] = {'s', 'k', 'k', 'p'};
		int			k = (flags >> 1) & 3;

		secret = make_secret(kinds[k], raw, k == 0 ? 24 + raw[63] % 41 : k == 2 ? 64 : 32);
	}

	if (flags & 8)
	{
		/* a genuine signature of this message, by a signing key */
		char		kind = (flags & 1) ? "skkp"[(flags >> 1) & 3] : 0;
		int			scheme = kind == 's' ? SIGN_STANDARD : SIGN_ED25519;
		const char *signer = kind == 'p' ? make_secret('k', raw, 32) : secret;
		SignKey		k;
		StringInfoData sig;
		StringInfoData other;

		if (kind != 0 && sign_prepare_key(scheme, signer, &k))
		{
			initStringInfo(&sig);
			initStringInfo(&other);
			if (sign_message(scheme, &k, 1, NULL, msg_id, ts, body, bodylen, &sig) &&
				sign_message(scheme, &k, 1, NULL, msg_id, ts + 1, body, bodylen, &other))
			{
				char	   *with = insert_entry(header, sig.data, flags >> 4);
				char	   *stale = insert_entry(header, other.data, flags >> 4);

				FZ_CHECK(sign_verify(secret, msg_id, ts, body, bodylen, with),
						 "genuine signature not verified: secret %s header %s", secret, with);
				FZ_CHECK(sign_verify(secret, msg_id, ts, body, bodylen, stale) ==
						 sign_verify(secret, msg_id, ts, body, bodylen, header),
						 "a signature of another timestamp changed the answer: %s", stale);
			}
		}
	}

	got = sign_verify(secret, msg_id, ts, body, bodylen, header);
	expected = oracle_verify(secret, msg_id, ts, body, bodylen, header);
	FZ_CHECK(got == expected, "sign_verify(secret %s, msg_id %s, ts " INT64_FORMAT
			 ", header %s) = %d, oracle %d", secret, msg_id, ts, header, got, expected);

	shim_reset();
	fz_end();
	return 0;
}
