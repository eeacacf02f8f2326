/*-------------------------------------------------------------------------
 * sign.c
 *	  Message signing for every supported scheme, secret handling and
 *	  signature verification, all through OpenSSL.
 *
 * Schemes (webhook_endpoints.signing):
 *	  standard          webhook-signature: v1,<base64 HMAC-SHA256(key, id.ts.body)>
 *	                    with the key decoded from "whsec_<base64>"
 *	  standard-ed25519  webhook-signature: v1a,<base64 ed25519(id.ts.body)>
 *	                    with the key decoded from "whsk_<base64>"
 *	  hmac-sha256-hex   <header>: <prefix><hex HMAC-SHA256(secret, body)>
 *	  timestamped-hex   <header>: t=<ts>,v1=<hex HMAC-SHA256(secret, ts.body)>
 *	  none
 * The hex schemes key the HMAC with the secret string as given.  While old
 * secrets are still valid (rotation), one signature per key is sent, newest
 * first: space-separated, or as repeated v1= for timestamped-hex.
 *
 * Pure functions: no SPI, no shared state, no ERROR except palloc's
 * out-of-memory and sign_generate_secret's lack of random bytes.  OpenSSL
 * objects are freed before returning, or tied to a memory context's reset.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "utils/memutils.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_PREFIX_LEN 6
#define ED_SECRET_PREFIX "whsk_"
#define ED_PUBLIC_PREFIX "whpk_"
#define ED_PREFIX_LEN 5
#define MIN_KEY_LEN 24
#define ED_SEED_LEN 32
#define ED_SIG_LEN 64
#define MIN_TEXT_SECRET 8
#define MAX_TEXT_SECRET 1024

static const char *const scheme_names[] = {
	[SIGN_STANDARD] = "standard",
	[SIGN_HEX] = "hmac-sha256-hex",
	[SIGN_TIMESTAMPED] = "timestamped-hex",
	[SIGN_ED25519] = "standard-ed25519",
	[SIGN_NONE] = "none",
};

/* The scheme called name, or -1. */
int
sign_scheme(const char *name)
{
	for (int i = 0; i < (int) lengthof(scheme_names); i++)
		if (strcmp(name, scheme_names[i]) == 0)
			return i;
	return -1;
}

/*
 * Decodes strict base64 (whole quanta, padding only at the end) into out
 * (room for maxlen bytes).  Returns the decoded length or -1.
 */
static int
decode_base64(const char *in, unsigned char *out, int maxlen)
{
	size_t		len = strlen(in);
	unsigned char buf[(MAX_TEXT_SECRET / 4 + 1) * 3];
	int			n;
	int			pad = 0;

	/* EVP_DecodeBlock wants whole quanta and ignores nothing: check first */
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf))
		return -1;
	for (size_t i = 0; i < len; i++)
	{
		char		c = in[i];

		if (c == '=')
		{
			if (i < len - 2)
				return -1;
			pad++;
		}
		else if (pad > 0 ||
				 !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				   (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return -1;
	}
	n = EVP_DecodeBlock(buf, (const unsigned char *) in, (int) len);
	if (n < 0)
		return -1;
	n -= pad;					/* EVP_DecodeBlock counts padding as zeros */
	if (n > maxlen)
		return -1;
	memcpy(out, buf, n);
	return n;
}

/*
 * Decodes a "whsec_<base64>" secret into key (WEBHOOK_MAX_KEY_LEN bytes of
 * room).  Returns the key length, or -1 when the secret is malformed or the
 * key is not 24 to 64 bytes long.
 */
int
sign_decode_secret(const char *secret, unsigned char *key)
{
	int			n;

	if (strncmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0)
		return -1;
	n = decode_base64(secret + SECRET_PREFIX_LEN, key, WEBHOOK_MAX_KEY_LEN);
	return n < MIN_KEY_LEN ? -1 : n;
}

/* The ed25519 key of a 32-byte seed, or NULL. */
static EVP_PKEY *
ed25519_key(const unsigned char *seed)
{
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, ED_SEED_LEN);
}

/*
 * Decodes a "whsk_<base64>" key (a 32-byte seed, or 64 bytes of seed and
 * public key as libsodium writes them) into seed.  Returns false when it is
 * malformed or its public half does not belong to the seed.
 */
static bool
decode_ed25519_secret(const char *secret, unsigned char *seed)
{
	unsigned char raw[2 * ED_SEED_LEN];
	int			n;

	if (strncmp(secret, ED_SECRET_PREFIX, ED_PREFIX_LEN) != 0)
		return false;
	n = decode_base64(secret + ED_PREFIX_LEN, raw, sizeof(raw));
	if (n != ED_SEED_LEN && n != 2 * ED_SEED_LEN)
		return false;
	if (n == 2 * ED_SEED_LEN)
	{
		EVP_PKEY   *pk = ed25519_key(raw);
		unsigned char pub[ED_SEED_LEN];
		size_t		publen = sizeof(pub);
		bool		ok = pk != NULL &&
			EVP_PKEY_get_raw_public_key(pk, pub, &publen) == 1 &&
			publen == ED_SEED_LEN &&
			CRYPTO_memcmp(pub, raw + ED_SEED_LEN, ED_SEED_LEN) == 0;

		EVP_PKEY_free(pk);
		if (!ok)
			return false;
	}
	memcpy(seed, raw, ED_SEED_LEN);
	return true;
}

/* Is secret usable with scheme? */
bool
sign_valid_secret(const char *secret, int scheme)
{
	unsigned char key[WEBHOOK_MAX_KEY_LEN];
	size_t		len;

	switch (scheme)
	{
		case SIGN_STANDARD:
			return sign_decode_secret(secret, key) > 0;
		case SIGN_ED25519:
			return decode_ed25519_secret(secret, key);
		case SIGN_HEX:
		case SIGN_TIMESTAMPED:
		case SIGN_NONE:
			len = strlen(secret);
			if (len < MIN_TEXT_SECRET || len > MAX_TEXT_SECRET)
				return false;
			for (const char *p = secret; *p; p++)
				if ((unsigned char) *p < ' ' || *p == 0x7f)
					return false;
			return true;
	}
	return false;
}

/* Frees an EVP_PKEY when the memory context holding its SignKey goes. */
static void
free_pkey(void *arg)
{
	EVP_PKEY_free((EVP_PKEY *) arg);
}

/*
 * Prepares k to sign with secret under scheme, allocating in the current
 * memory context (an ed25519 key is freed with it).  Returns false when the
 * secret does not suit the scheme.
 */
bool
sign_prepare_key(int scheme, const char *secret, SignKey *k)
{
	memset(k, 0, sizeof(*k));
	switch (scheme)
	{
		case SIGN_STANDARD:
			k->key = palloc(WEBHOOK_MAX_KEY_LEN);
			k->keylen = sign_decode_secret(secret, k->key);
			return k->keylen > 0;
		case SIGN_ED25519:
			{
				unsigned char seed[ED_SEED_LEN];
				MemoryContextCallback *cb;

				if (!decode_ed25519_secret(secret, seed))
					return false;
				k->pkey = ed25519_key(seed);
				OPENSSL_cleanse(seed, sizeof(seed));
				if (k->pkey == NULL)
					return false;
				cb = palloc(sizeof(MemoryContextCallback));
				cb->func = free_pkey;
				cb->arg = k->pkey;
				MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
				return true;
			}
		case SIGN_HEX:
		case SIGN_TIMESTAMPED:
			if (!sign_valid_secret(secret, scheme))
				return false;
			k->key = (unsigned char *) pstrdup(secret);
			k->keylen = (int) strlen(secret);
			return true;
		case SIGN_NONE:
			return true;
	}
	return false;
}

/*
 * HMAC-SHA256 of head followed by body under key into mac (32 bytes).
 * Returns false if OpenSSL fails.
 */
static bool
hmac_sha256(const unsigned char *key, int keylen, const char *head, size_t headlen,
			const char *body, size_t bodylen, unsigned char *mac)
{
	static EVP_MAC *hmac = NULL;
	size_t		maclen = 0;
	EVP_MAC_CTX *ctx;
	OSSL_PARAM	params[2];
	bool		ok;

	if (hmac == NULL)
		hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
	ok = ctx != NULL &&
		EVP_MAC_init(ctx, key, keylen, params) &&
		EVP_MAC_update(ctx, (const unsigned char *) head, headlen) &&
		EVP_MAC_update(ctx, (const unsigned char *) body, bodylen) &&
		EVP_MAC_final(ctx, mac, &maclen, 32) && maclen == 32;
	EVP_MAC_CTX_free(ctx);
	return ok;
}

/* ed25519 signature (64 bytes) of head followed by body. */
static bool
ed25519_sign(EVP_PKEY *pkey, const char *head, size_t headlen, const char *body,
			 size_t bodylen, unsigned char *sig)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t		siglen = ED_SIG_LEN;
	char	   *msg = palloc(headlen + bodylen + 1);	/* ed25519 is one-shot */
	bool		ok;

	memcpy(msg, head, headlen);
	memcpy(msg + headlen, body, bodylen);
	ok = ctx != NULL &&
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) msg, headlen + bodylen) == 1 &&
		siglen == ED_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	pfree(msg);
	return ok;
}

static void
append_base64(StringInfo out, const unsigned char *raw, int len)
{
	enlargeStringInfo(out, (len + 2) / 3 * 4 + 1);
	out->len += EVP_EncodeBlock((unsigned char *) out->data + out->len, raw, len);
	out->data[out->len] = '\0';
}

static void
append_hex(StringInfo out, const unsigned char *raw, int len)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < len; i++)
	{
		appendStringInfoChar(out, digits[raw[i] >> 4]);
		appendStringInfoChar(out, digits[raw[i] & 15]);
	}
}

/*
 * Appends to out the signature header value of a message under every key
 * (newest first), for scheme; prefix is the hex scheme's prefix or NULL.
 * Returns false if OpenSSL failed (out then holds nothing usable).
 */
bool
sign_message(int scheme, const SignKey *keys, int nkeys, const char *prefix,
			 const char *msg_id, int64 ts, const char *body, size_t bodylen, StringInfo out)
{
	char		head[160];
	int			headlen = 0;
	unsigned char mac[ED_SIG_LEN];

	if (scheme == SIGN_STANDARD || scheme == SIGN_ED25519)
		headlen = snprintf(head, sizeof(head), "%s." INT64_FORMAT ".", msg_id, ts);
	else if (scheme == SIGN_TIMESTAMPED)
	{
		headlen = snprintf(head, sizeof(head), INT64_FORMAT ".", ts);
		appendStringInfo(out, "t=" INT64_FORMAT, ts);
	}
	if (headlen < 0 || headlen >= (int) sizeof(head))
		return false;			/* msg ids are short; cannot happen */

	for (int i = 0; i < nkeys; i++)
	{
		const SignKey *k = &keys[i];

		switch (scheme)
		{
			case SIGN_STANDARD:
				if (!hmac_sha256(k->key, k->keylen, head, headlen, body, bodylen, mac))
					return false;
				appendStringInfoString(out, i > 0 ? " v1," : "v1,");
				append_base64(out, mac, 32);
				break;
			case SIGN_ED25519:
				if (!ed25519_sign(k->pkey, head, headlen, body, bodylen, mac))
					return false;
				appendStringInfoString(out, i > 0 ? " v1a," : "v1a,");
				append_base64(out, mac, ED_SIG_LEN);
				break;
			case SIGN_HEX:
				if (!hmac_sha256(k->key, k->keylen, "", 0, body, bodylen, mac))
					return false;
				if (i > 0)
					appendStringInfoChar(out, ' ');
				if (prefix)
					appendStringInfoString(out, prefix);
				append_hex(out, mac, 32);
				break;
			case SIGN_TIMESTAMPED:
				if (!hmac_sha256(k->key, k->keylen, head, headlen, body, bodylen, mac))
					return false;
				appendStringInfoString(out, ",v1=");
				append_hex(out, mac, 32);
				break;
			default:
				break;
		}
	}
	return true;
}

/*
 * Writes into out (17 bytes) the first 8 bytes of the SHA-256 of data, in
 * hex; all zeros if OpenSSL fails.
 */
void
sign_digest_hex(const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	StringInfoData buf;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
		memset(md, 0, 8);
	initStringInfo(&buf);
	append_hex(&buf, md, 8);
	memcpy(out, buf.data, 17);
	pfree(buf.data);
}

/*
 * Returns a new palloc'd secret for scheme: "whsec_" + base64 of 32 random
 * bytes, or for standard-ed25519 "whsk_" + base64 of a new key (seed and
 * public key).  ERRORs if OpenSSL cannot produce random bytes.
 */
char *
sign_generate_secret(int scheme)
{
	unsigned char raw[2 * ED_SEED_LEN];
	StringInfoData out;

	if (RAND_bytes(raw, ED_SEED_LEN) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a secret")));
	initStringInfo(&out);
	if (scheme == SIGN_ED25519)
	{
		EVP_PKEY   *pk = ed25519_key(raw);
		size_t		publen = ED_SEED_LEN;
		bool		ok = pk != NULL &&
			EVP_PKEY_get_raw_public_key(pk, raw + ED_SEED_LEN, &publen) == 1;

		EVP_PKEY_free(pk);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate an ed25519 key")));
		appendStringInfoString(&out, ED_SECRET_PREFIX);
		append_base64(&out, raw, 2 * ED_SEED_LEN);
	}
	else
	{
		appendStringInfoString(&out, SECRET_PREFIX);
		append_base64(&out, raw, ED_SEED_LEN);
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	return out.data;
}

/* The "whpk_" public key of a "whsk_" secret (palloc'd), or NULL. */
char *
sign_public_key(const char *secret)
{
	unsigned char seed[ED_SEED_LEN];
	unsigned char pub[ED_SEED_LEN];
	size_t		publen = sizeof(pub);
	EVP_PKEY   *pk;
	bool		ok;
	StringInfoData out;

	if (!decode_ed25519_secret(secret, seed))
		return NULL;
	pk = ed25519_key(seed);
	OPENSSL_cleanse(seed, sizeof(seed));
	ok = pk != NULL && EVP_PKEY_get_raw_public_key(pk, pub, &publen) == 1;
	EVP_PKEY_free(pk);
	if (!ok)
		return NULL;
	initStringInfo(&out);
	appendStringInfoString(&out, ED_PUBLIC_PREFIX);
	append_base64(&out, pub, ED_SEED_LEN);
	return out.data;
}

/*
 * Does header (space-separated "v1,<base64>" or "v1a,<base64>" entries)
 * hold a valid signature of msg_id.ts.body under secret?  A whsec_ secret
 * checks v1 entries, a whpk_ (or whsk_) key v1a entries.  Comparisons are
 * constant-time; the timestamp is the caller's to check.
 */
bool
sign_verify(const char *secret, const char *msg_id, int64 ts, const char *body,
			size_t bodylen, const char *header)
{
	unsigned char key[WEBHOOK_MAX_KEY_LEN];
	int			keylen = -1;
	EVP_PKEY   *pub = NULL;
	unsigned char expected[32];
	char		head[160];
	int			headlen = snprintf(head, sizeof(head), "%s." INT64_FORMAT ".", msg_id, ts);
	char	   *msg = NULL;
	char	   *copy;
	char	   *save = NULL;
	bool		found = false;

	if (headlen < 0 || headlen >= (int) sizeof(head))
		return false;
	if (strncmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) == 0)
	{
		keylen = sign_decode_secret(secret, key);
		if (keylen < 0 || !hmac_sha256(key, keylen, head, headlen, body, bodylen, expected))
			return false;
	}
	else if (strncmp(secret, ED_PUBLIC_PREFIX, ED_PREFIX_LEN) == 0)
	{
		unsigned char raw[ED_SEED_LEN];

		if (decode_base64(secret + ED_PREFIX_LEN, raw, sizeof(raw)) != ED_SEED_LEN)
			return false;
		pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, ED_SEED_LEN);
	}
	else if (strncmp(secret, ED_SECRET_PREFIX, ED_PREFIX_LEN) == 0)
	{
		unsigned char seed[ED_SEED_LEN];

		if (!decode_ed25519_secret(secret, seed))
			return false;
		pub = ed25519_key(seed);
		OPENSSL_cleanse(seed, sizeof(seed));
	}
	else
		return false;
	if (keylen < 0 && pub == NULL)
		return false;
	if (pub)
	{
		msg = palloc(headlen + bodylen + 1);
		memcpy(msg, head, headlen);
		memcpy(msg + headlen, body, bodylen);
	}

	copy = pstrdup(header);
	for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
	{
		unsigned char got[ED_SIG_LEN];

		if (keylen > 0 && strncmp(tok, "v1,", 3) == 0)
		{
			if (decode_base64(tok + 3, got, sizeof(got)) == 32 &&
				CRYPTO_memcmp(got, expected, 32) == 0)
				found = true;
		}
		else if (pub && strncmp(tok, "v1a,", 4) == 0)
		{
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();

			if (decode_base64(tok + 4, got, sizeof(got)) == ED_SIG_LEN && ctx &&
				EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
				EVP_DigestVerify(ctx, got, ED_SIG_LEN, (unsigned char *) msg,
								 headlen + bodylen) == 1)
				found = true;
			EVP_MD_CTX_free(ctx);
		}
	}
	EVP_PKEY_free(pub);
	OPENSSL_cleanse(key, sizeof(key));
	return found;
}
