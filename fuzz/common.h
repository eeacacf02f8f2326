/*-------------------------------------------------------------------------
 * common.h
 *	  What every fuzz target shares: reading fields out of the fuzzer's
 *	  bytes, checking invariants, and reference implementations ("oracles")
 *	  written independently of src/ to compare its answers with.
 *
 * Inputs are read as a sequence of fields: single bytes, little-endian
 * integers, and strings that end at the next NUL byte (or at the end of the
 * input).  A missing field reads as zero or as the empty string, so every
 * byte string is a valid input; seed files are these fields written one
 * after another (fuzz/README.md shows how).
 *
 * Memory handed out here (fz_*) is malloc'd and freed by fz_end(), which
 * each target calls after every input together with shim_reset().
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_FUZZ_COMMON_H
#define WEBHOOK_FUZZ_COMMON_H

#include "postgres.h"

#include <stddef.h>
#include <stdint.h>

typedef struct FuzzIn
{
	const uint8_t *p;
	size_t		n;
} FuzzIn;

extern uint8_t in_byte(FuzzIn *in);
extern uint16_t in_u16(FuzzIn *in);
extern uint64_t in_u64(FuzzIn *in);
/* The next NUL-terminated field (at most max bytes kept), fz-allocated. */
extern char *in_str(FuzzIn *in, size_t max);
/* Up to n raw bytes; *got tells how many were there. */
extern const uint8_t *in_bytes(FuzzIn *in, size_t n, size_t *got);
/* n bytes, zero-filled past the end of the input, into out. */
extern void in_fill(FuzzIn *in, uint8_t *out, size_t n);

/* Freed by fz_end(). */
extern void *fz_alloc(size_t n);
extern char *fz_strdup(const char *s);
extern char *fz_printf(const char *fmt,...) pg_attribute_printf(1, 2);
extern void fz_end(void);

/* Stops with a message when an invariant does not hold. */
#define FZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)
extern void fz_fail(const char *file, int line, const char *cond, const char *fmt,...)
			pg_attribute_printf(4, 5) __attribute__((noreturn));

/* --- oracles ---------------------------------------------------------- */

/*
 * Decodes base64 the way the extension promises to accept it: a non-empty
 * run of whole 4-character quanta of the standard alphabet, with one or two
 * '=' only at the very end (unused low bits are ignored).  Returns the
 * number of bytes, -1 if malformed or longer than maxout.
 */
extern int	oracle_b64_decode(const char *s, size_t len, uint8_t *out, int maxout);
/* Standard padded base64 of raw (fz-allocated). */
extern char *oracle_b64_encode(const uint8_t *raw, size_t len);
/* Lower-case hex of raw (fz-allocated). */
extern char *oracle_hex(const uint8_t *raw, size_t len);
/* HMAC-SHA256 through OpenSSL's one-shot EVP_Q_mac (not sign.c's path). */
extern void oracle_hmac(const uint8_t *key, size_t keylen, const char *head, size_t headlen,
						const char *body, size_t bodylen, uint8_t *mac);
/* The ed25519 public key of a 32-byte seed. */
extern void oracle_ed25519_public(const uint8_t *seed, uint8_t *pub);
/* Does sig (64 bytes) verify head||body under the 32-byte public key? */
extern bool oracle_ed25519_verify(const uint8_t *pub, const uint8_t *sig, const char *head,
								  size_t headlen, const char *body, size_t bodylen);

/*
 * The key material a secret stands for under the Standard Webhooks rules:
 * whsec_ (24..64 bytes, kind 's'), whsk_ (32-byte seed, or seed and its own
 * public key, kind 'k'), whpk_ (32-byte public key, kind 'p').  Returns the
 * kind, or 0 when the secret is none of those; *len gets the key length
 * (the seed's for whsk_, whose public key goes to pub).
 */
extern char oracle_secret(const char *secret, uint8_t *key, int *len, uint8_t *pub);
/* Is secret a valid text secret (hex, timestamped-hex and none schemes)? */
extern bool oracle_text_secret(const char *secret);

/* A valid secret of kind 's', 'k' or 'p' built from 32..64 bytes (fz-allocated). */
extern char *make_secret(char kind, const uint8_t *raw, int len);

#endif							/* WEBHOOK_FUZZ_COMMON_H */
