/*-------------------------------------------------------------------------
 * fuzz_secret.c
 *	  Secret decoding in src/sign.c: sign_decode_secret, sign_valid_secret
 *	  for every scheme, sign_prepare_key, sign_public_key, sign_scheme, and
 *	  what a prepared key signs (sign_message, checked with sign_verify and
 *	  with the oracles of common.c).
 *
 * Input fields: flags, secret, msg_id, prefix, ts (8 bytes), then the
 * body (the rest).  When flags & 1 the secret is replaced by a valid one
 * built from the first bytes of the body (kind chosen by flags >> 1), so
 * that the signing paths are reached from the first run.
 *
 * Invariants: each function agrees with the oracle on which secrets are
 * valid and what key they decode to; a prepared key signs exactly what the
 * oracle computes; a whsk_ that validates gives a whpk_ that verifies its
 * signatures, and both verify through sign_verify.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "../src/webhook.h"
#include "common.h"
#include "shim.h"

static const char *const schemes[] = {"standard", "hmac-sha256-hex", "timestamped-hex",
"standard-ed25519", "none"};

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();

	/* generated secrets must be valid (random: checked once, not fuzzed) */
	for (int s = 0; s < 2; s++)
	{
		int			scheme = s == 0 ? SIGN_STANDARD : SIGN_ED25519;
		char	   *secret = sign_generate_secret(scheme);

		FZ_CHECK(sign_valid_secret(secret, scheme), "generated %s", secret);
	}
	shim_reset();
	return 0;
}

/* Checks the header sign_message wrote for one key against the oracles. */
static void
check_signature(int scheme, const char *secret, const char *prefix, const char *msg_id,
				int64 ts, const char *body, size_t bodylen, const char *header)
{
	uint8_t		key[64];
	uint8_t		pub[32];
	uint8_t		mac[32];
	int			keylen;
	char		kind = oracle_secret(secret, key, &keylen, pub);
	char	   *head = fz_printf("%s." INT64_FORMAT ".", msg_id, ts);
	char	   *tshead = fz_printf(INT64_FORMAT ".", ts);
	char	   *expected;

	switch (scheme)
	{
		case SIGN_STANDARD:
			oracle_hmac(key, keylen, head, strlen(head), body, bodylen, mac);
			expected = fz_printf("v1,%s", oracle_b64_encode(mac, 32));
			FZ_CHECK(strcmp(header, expected) == 0, "%s != %s", header, expected);
			FZ_CHECK(sign_verify(secret, msg_id, ts, body, bodylen, header),
					 "own signature %s not verified", header);
			break;
		case SIGN_ED25519:
			{
				uint8_t		sig[64];
				char	   *pubkey = sign_public_key(secret);

				FZ_CHECK(kind == 'k', "ed25519 key from %s", secret);
				FZ_CHECK(strncmp(header, "v1a,", 4) == 0 &&
						 oracle_b64_decode(header + 4, strlen(header + 4), sig, 64) == 64 &&
						 oracle_ed25519_verify(pub, sig, head, strlen(head), body, bodylen),
						 "signature %s does not verify under %s", header, secret);
				FZ_CHECK(pubkey != NULL, "no public key for %s", secret);
				FZ_CHECK(strcmp(pubkey, make_secret('p', key, 32)) == 0,
						 "public key %s of %s", pubkey, secret);
				FZ_CHECK(sign_verify(secret, msg_id, ts, body, bodylen, header),
						 "whsk_ does not verify its own signature %s", header);
				FZ_CHECK(sign_verify(pubkey, msg_id, ts, body, bodylen, header),
						 "whpk_ %s does not verify signature %s", pubkey, header);
			}
			break;
		case SIGN_HEX:
			oracle_hmac((const uint8_t *) secret, strlen(secret), "", 0, body, bodylen, mac);
			expected = fz_printf("%s%s", prefix ? prefix : "", oracle_hex(mac, 32));
			FZ_CHECK(strcmp(header, expected) == 0, "%s != %s", header, expected);
			break;
		case SIGN_TIMESTAMPED:
			oracle_hmac((const uint8_t *) secret, strlen(secret), tshead, strlen(tshead),
						body, bodylen, mac);
			expected = fz_printf("t=" INT64_FORMAT ",v1=%s", ts, oracle_hex(mac, 32));
			FZ_CHECK(strcmp(header, expected) == 0, "%s != %s", header, expected);
			break;
		case SIGN_NONE:
			FZ_CHECK(header[0] == '\0', "scheme none wrote %s", header);
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzIn		in = {data, size};
	uint8_t		flags = in_byte(&in);
	char	   *secret = in_str(&in, 2048);
	char	   *msg_id = in_str(&in, 200);
	char	   *prefix = in_str(&in, 120);
	int64		ts = (int64) in_u64(&in);
	const char *body = (const char *) in.p;
	size_t		bodylen = in.n;
	uint8_t		key[64];
	uint8_t		pub[32];
	int			keylen;
	char		kind;
	bool		valid[5];
	bool		long_head = strlen(fz_printf("%s." INT64_FORMAT ".", msg_id, ts)) >= 160;

	if (flags & 1)
	{
		static const char kinds[] = {'s', 'k', 'k', 'p'};
		uint8_t		raw[64];
		int			k = (flags >> 1) & 3;
		int			len = k == 0 ? 24 + (flags >> 3) % 41 : k == 2 ? 64 : 32;

		memset(raw, 0, sizeof(raw));
		memcpy(raw, body, Min(bodylen, sizeof(raw)));
		secret = make_secret(kinds[k], raw, len);
	}
	kind = oracle_secret(secret, key, &keylen, pub);

	/* sign_scheme: exactly the five names */
	{
		int			s = sign_scheme(secret);

		FZ_CHECK(s >= -1 && s <= SIGN_NONE, "sign_scheme(%s) = %d", secret, s);
		FZ_CHECK(s == -1 || strcmp(schemes[s], secret) == 0, "sign_scheme(%s) = %d", secret, s);
		for (int i = 0; i <= SIGN_NONE; i++)
			FZ_CHECK(s == i || strcmp(schemes[i], secret) != 0, "sign_scheme(%s) missed", secret);
	}

	/* sign_decode_secret: the key bytes of a valid whsec_, else -1 */
	{
		unsigned char got[WEBHOOK_MAX_KEY_LEN];
		int			n = sign_decode_secret(secret, got);

		if (kind == 's')
			FZ_CHECK(n == keylen && memcmp(got, key, n) == 0,
					 "sign_decode_secret(%s) = %d, oracle %d", secret, n, keylen);
		else
			FZ_CHECK(n == -1, "sign_decode_secret(%s) = %d, expected -1", secret, n);
	}

	/* sign_valid_secret, for every scheme and a few that do not exist */
	valid[SIGN_STANDARD] = kind == 's';
	valid[SIGN_ED25519] = kind == 'k';
	valid[SIGN_HEX] = valid[SIGN_TIMESTAMPED] = valid[SIGN_NONE] = oracle_text_secret(secret);
	for (int s = 0; s <= SIGN_NONE; s++)
		FZ_CHECK(sign_valid_secret(secret, s) == valid[s],
				 "sign_valid_secret(%s, %s) = %d", secret, schemes[s], !valid[s]);
	FZ_CHECK(!sign_valid_secret(secret, -1) && !sign_valid_secret(secret, SIGN_NONE + 1) &&
			 !sign_valid_secret(secret, SIGN_NONE + 1 + flags * 1000), "unknown scheme accepted %s", secret);

	/* sign_public_key: whsk_ only */
	{
		char	   *pk = sign_public_key(secret);

		FZ_CHECK((pk != NULL) == (kind == 'k'), "sign_public_key(%s) = %s", secret,
				 pk ? pk : "NULL");
		if (pk)
			FZ_CHECK(shim_is_palloc(pk) && strcmp(pk, make_secret('p', key, 32)) == 0,
					 "sign_public_key(%s) = %s", secret, pk);
	}

	/* sign_prepare_key, and what the key signs */
	for (int s = 0; s <= SIGN_NONE; s++)
	{
		SignKey		k;
		StringInfoData out;
		bool		ok = sign_prepare_key(s, secret, &k);
		bool		signed_ok;
		const char *pfx = (flags & 0x80) ? prefix : NULL;

		FZ_CHECK(ok == (s == SIGN_NONE || valid[s]),
				 "sign_prepare_key(%s, %s) = %d", schemes[s], secret, ok);
		FZ_CHECK(!sign_prepare_key(-1, secret, &k) && !sign_prepare_key(SIGN_NONE + 1, secret, &k),
				 "sign_prepare_key accepted an unknown scheme");
		ok = sign_prepare_key(s, secret, &k);
		if (!ok)
			continue;
		initStringInfo(&out);
		signed_ok = sign_message(s, &k, 1, pfx, msg_id, ts, body, bodylen, &out);
		if ((s == SIGN_STANDARD || s == SIGN_ED25519) && long_head)
		{
			FZ_CHECK(!signed_ok, "sign_message signed with an over-long msg_id");
			continue;
		}
		FZ_CHECK(signed_ok, "sign_message(%s) failed", schemes[s]);
		FZ_CHECK((int) strlen(out.data) == out.len, "StringInfo length");
		check_signature(s, secret, pfx, msg_id, ts, body, bodylen, out.data);
	}

	shim_reset();
	fz_end();
	return 0;
}
