/*-------------------------------------------------------------------------
 * common.c
 *	  Input fields, invariant checks and oracles shared by the fuzz
 *	  targets (see common.h).  The oracles are deliberately written apart
 *	  from src/: base64 and hex by hand, HMAC and ed25519 through other
 *	  OpenSSL entry points than sign.c uses.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "common.h"

/* --- input fields ----------------------------------------------------- */

uint8_t
in_byte(FuzzIn *in)
{
	uint8_t		b;

	if (in->n == 0)
		return 0;
	b = in->p[0];
	in->p++;
	in->n--;
	return b;
}

uint16_t
in_u16(FuzzIn *in)
{
	uint16_t	v = in_byte(in);

	return v | (uint16_t) (in_byte(in) << 8);
}

uint64_t
in_u64(FuzzIn *in)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t) in_byte(in) << (8 * i);
	return v;
}

char *
in_str(FuzzIn *in, size_t max)
{
	const uint8_t *end = memchr(in->p, '\0', in->n);
	size_t		len = end ? (size_t) (end - in->p) : in->n;
	char	   *s = fz_alloc(Min(len, max) + 1);

	memcpy(s, in->p, Min(len, max));
	s[Min(len, max)] = '\0';
	in->p += len + (end ? 1 : 0);
	in->n -= len + (end ? 1 : 0);
	return s;
}

const uint8_t *
in_bytes(FuzzIn *in, size_t n, size_t *got)
{
	const uint8_t *p = in->p;

	*got = Min(n, in->n);
	in->p += *got;
	in->n -= *got;
	return p;
}

void
in_fill(FuzzIn *in, uint8_t *out, size_t n)
{
	size_t		got;
	const uint8_t *p = in_bytes(in, n, &got);

	memcpy(out, p, got);
	memset(out + got, 0, n - got);
}

/* --- harness memory ----------------------------------------------------- */

typedef struct FzBlock
{
	struct FzBlock *next;
	max_align_t align[];
} FzBlock;

static FzBlock *fz_blocks = NULL;

void *
fz_alloc(size_t n)
{
	FzBlock    *b = malloc(sizeof(FzBlock) + n);

	if (b == NULL)
		abort();
	b->next = fz_blocks;
	fz_blocks = b;
	return b->align;
}

char *
fz_strdup(const char *s)
{
	size_t		len = strlen(s);
	char	   *out = fz_alloc(len + 1);

	memcpy(out, s, len + 1);
	return out;
}

char *
fz_printf(const char *fmt,...)
{
	va_list		args;
	int			n;
	char	   *out;

	va_start(args, fmt);
	n = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	out = fz_alloc((size_t) n + 1);
	va_start(args, fmt);
	vsnprintf(out, (size_t) n + 1, fmt, args);
	va_end(args);
	return out;
}

void
fz_end(void)
{
	while (fz_blocks)
	{
		FzBlock    *next = fz_blocks->next;

		free(fz_blocks);
		fz_blocks = next;
	}
}

void
fz_fail(const char *file, int line, const char *cond, const char *fmt,...)
{
	va_list		args;

	fprintf(stderr, "==fuzz== invariant broken at %s:%d: %s\n==fuzz== ", file, line, cond);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n");
	fflush(stderr);
	abort();
}

/* --- oracles ------------------------------------------------------------ */

static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
oracle_b64_decode(const char *s, size_t len, uint8_t *out, int maxout)
{
	int			n = 0;

	if (len == 0 || len % 4 != 0)
		return -1;
	for (size_t q = 0; q < len; q += 4)
	{
		bool		last = q + 4 == len;
		int			v[4];
		int			have = 4;

		for (int i = 0; i < 4; i++)
		{
			v[i] = b64_value(s[q + i]);
			if (v[i] < 0)
			{
				/* '=' only in the last quantum, as its last one or two */
				if (s[q + i] != '=' || !last || i < 2)
					return -1;
				if (have == 4)
					have = i;
				v[i] = 0;
			}
			else if (have != 4)
				return -1;		/* data after padding */
		}
		{
			uint32_t	bits = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 |
				(uint32_t) v[2] << 6 | (uint32_t) v[3];
			uint8_t		bytes[3] = {bits >> 16, (bits >> 8) & 0xFF, bits & 0xFF};
			int			k = have - 1;	/* 4 chars: 3 bytes, 3: 2, 2: 1 */

			for (int i = 0; i < k; i++)
			{
				if (n >= maxout)
					return -1;
				out[n++] = bytes[i];
			}
		}
	}
	return n;
}

char *
oracle_b64_encode(const uint8_t *raw, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char	   *out = fz_alloc((len + 2) / 3 * 4 + 1);
	size_t		o = 0;

	for (size_t i = 0; i < len; i += 3)
	{
		uint32_t	bits = (uint32_t) raw[i] << 16;
		size_t		k = Min(len - i, 3);

		if (k > 1)
			bits |= (uint32_t) raw[i + 1] << 8;
		if (k > 2)
			bits |= raw[i + 2];
		out[o++] = alphabet[bits >> 18];
		out[o++] = alphabet[(bits >> 12) & 63];
		out[o++] = k > 1 ? alphabet[(bits >> 6) & 63] : '=';
		out[o++] = k > 2 ? alphabet[bits & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

char *
oracle_hex(const uint8_t *raw, size_t len)
{
	char	   *out = fz_alloc(2 * len + 1);

	for (size_t i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	out[2 * len] = '\0';
	return out;
}

void
oracle_hmac(const uint8_t *key, size_t keylen, const char *head, size_t headlen,
			const char *body, size_t bodylen, uint8_t *mac)
{
	char	   *msg = fz_alloc(headlen + bodylen + 1);
	size_t		maclen = 0;

	memcpy(msg, head, headlen);
	memcpy(msg + headlen, body, bodylen);
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen,
				  (const unsigned char *) msg, headlen + bodylen, mac, 32, &maclen) == NULL ||
		maclen != 32)
		fz_fail(__FILE__, __LINE__, "EVP_Q_mac", "OpenSSL failed");
}

void
oracle_ed25519_public(const uint8_t *seed, uint8_t *pub)
{
	EVP_PKEY   *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	size_t		len = 32;

	if (pk == NULL || EVP_PKEY_get_raw_public_key(pk, pub, &len) != 1 || len != 32)
		fz_fail(__FILE__, __LINE__, "ed25519 public key", "OpenSSL failed");
	EVP_PKEY_free(pk);
}

bool
oracle_ed25519_verify(const uint8_t *pub, const uint8_t *sig, const char *head,
					  size_t headlen, const char *body, size_t bodylen)
{
	EVP_PKEY   *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char	   *msg = fz_alloc(headlen + bodylen + 1);
	bool		ok;

	memcpy(msg, head, headlen);
	memcpy(msg + headlen, body, bodylen);
	ok = pk != NULL && ctx != NULL &&
		EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
		EVP_DigestVerify(ctx, sig, 64, (const unsigned char *) msg, headlen + bodylen) == 1;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

char
oracle_secret(const char *secret, uint8_t *key, int *len, uint8_t *pub)
{
	uint8_t		raw[1100];
	int			n;

	*len = 0;
	if (strncmp(secret, "whsec_", 6) == 0)
	{
		/* the base64 of the key: 24 to 64 bytes */
		n = oracle_b64_decode(secret + 6, strlen(secret + 6), raw, sizeof(raw));
		if (n < 24 || n > 64)
			return 0;
		memcpy(key, raw, n);
		*len = n;
		return 's';
	}
	if (strncmp(secret, "whsk_", 5) == 0)
	{
		/* a seed, or a seed followed by its own public key */
		n = oracle_b64_decode(secret + 5, strlen(secret + 5), raw, sizeof(raw));
		if (n != 32 && n != 64)
			return 0;
		oracle_ed25519_public(raw, pub);
		if (n == 64 && memcmp(pub, raw + 32, 32) != 0)
			return 0;
		memcpy(key, raw, 32);
		*len = 32;
		return 'k';
	}
	if (strncmp(secret, "whpk_", 5) == 0)
	{
		n = oracle_b64_decode(secret + 5, strlen(secret + 5), raw, sizeof(raw));
		if (n != 32)
			return 0;
		memcpy(pub, raw, 32);
		memcpy(key, raw, 32);
		*len = 32;
		return 'p';
	}
	return 0;
}

bool
oracle_text_secret(const char *secret)
{
	size_t		len = strlen(secret);

	if (len < 8 || len > 1024)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) secret[i] < 0x20 || (unsigned char) secret[i] == 0x7f)
			return false;
	return true;
}

char *
make_secret(char kind, const uint8_t *raw, int len)
{
	uint8_t		buf[64];

	switch (kind)
	{
		case 's':
			return fz_printf("whsec_%s", oracle_b64_encode(raw, len));
		case 'k':
			memcpy(buf, raw, 32);
			if (len == 64)
				oracle_ed25519_public(raw, buf + 32);
			return fz_printf("whsk_%s", oracle_b64_encode(buf, len == 64 ? 64 : 32));
		default:
			oracle_ed25519_public(raw, buf);
			return fz_printf("whpk_%s", oracle_b64_encode(buf, 32));
	}
}
