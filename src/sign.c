/*-------------------------------------------------------------------------
 * sign.c
 *	  Message signing: Standard Webhooks HMAC-SHA256 signatures and secret
 *	  handling, all through OpenSSL.
 *
 * Pure functions: no SPI, no shared state, no ERROR except palloc's
 * out-of-memory.  Safe to call from the worker, a backend or libFuzzer.
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define SECRET_PREFIX "whsec_"
#define SECRET_PREFIX_LEN 6
#define MIN_KEY_LEN 24

/*
 * Decodes a "whsec_<base64>" secret into key (WEBHOOK_MAX_KEY_LEN bytes of
 * room).  Returns the key length, or -1 when the secret is malformed or the
 * key is not 24 to 64 bytes long.
 */
int
sign_decode_secret(const char *secret, unsigned char *key)
{
	size_t		len;
	unsigned char buf[(WEBHOOK_MAX_KEY_LEN / 3 + 2) * 3 + 4];
	int			n;
	int			pad = 0;

	if (strncmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0)
		return -1;
	secret += SECRET_PREFIX_LEN;
	len = strlen(secret);
	/* EVP_DecodeBlock wants whole quanta and ignores nothing: check first */
	if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(buf))
		return -1;
	for (size_t i = 0; i < len; i++)
	{
		char		c = secret[i];

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
	n = EVP_DecodeBlock(buf, (const unsigned char *) secret, (int) len);
	if (n < 0)
		return -1;
	n -= pad;					/* EVP_DecodeBlock counts padding as zeros */
	if (n < MIN_KEY_LEN || n > WEBHOOK_MAX_KEY_LEN)
		return -1;
	memcpy(key, buf, n);
	return n;
}

/*
 * Writes the Standard Webhooks signature "v1,<base64 HMAC-SHA256(key,
 * msg_id.ts.body)>" into out (SIGN_STANDARD_LEN bytes).
 */
void
sign_standard(const unsigned char *key, int keylen, const char *msg_id,
			  int64 ts, const char *body, size_t bodylen, char *out)
{
	static EVP_MAC *hmac = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t		maclen = 0;
	char		prefix[128];
	int			plen;
	EVP_MAC_CTX *ctx;
	OSSL_PARAM	params[2];
	bool		ok;

	plen = snprintf(prefix, sizeof(prefix), "%s." INT64_FORMAT ".", msg_id, ts);
	if (plen < 0 || plen >= (int) sizeof(prefix))
		plen = 0;				/* msg ids are short; cannot happen */

	if (hmac == NULL)
		hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
	ok = ctx != NULL &&
		EVP_MAC_init(ctx, key, keylen, params) &&
		EVP_MAC_update(ctx, (const unsigned char *) prefix, plen) &&
		EVP_MAC_update(ctx, (const unsigned char *) body, bodylen) &&
		EVP_MAC_final(ctx, mac, &maclen, sizeof(mac));
	EVP_MAC_CTX_free(ctx);
	if (!ok)
	{
		out[0] = '\0';
		return;
	}
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *) out + 3, mac, (int) maclen);
}

/*
 * Returns a new palloc'd secret: "whsec_" + base64 of 32 random bytes.
 * ERRORs if OpenSSL cannot produce random bytes.
 */
char *
sign_generate_secret(void)
{
	unsigned char raw[32];
	char	   *out = palloc(SECRET_PREFIX_LEN + 44 + 1);

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a secret")));
	memcpy(out, SECRET_PREFIX, SECRET_PREFIX_LEN);
	EVP_EncodeBlock((unsigned char *) out + SECRET_PREFIX_LEN, raw, sizeof(raw));
	return out;
}
