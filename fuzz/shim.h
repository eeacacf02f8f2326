/*-------------------------------------------------------------------------
 * shim.h
 *	  The few PostgreSQL backend services the extension's pure C files need,
 *	  provided outside a server so that src/sign.c, src/destination.c,
 *	  src/endpoint.c and src/http.c are compiled unmodified into libFuzzer
 *	  targets (see fuzz/README.md).
 *
 * Rules kept by the shim (shim.c):
 *	- palloc and friends: every chunk is its own malloc block of exactly
 *	  the requested size, so AddressSanitizer sees an overflow by one byte.
 *	  All chunks belong to one context (CurrentMemoryContext, also
 *	  TopMemoryContext); shim_reset() runs its reset callbacks (newest
 *	  first, as PostgreSQL does) and frees every chunk still allocated, so
 *	  leaks of malloc'd memory (OpenSSL, libcurl) stand out to LeakSanitizer.
 *	- StringInfo buffers grow to exactly what enlargeStringInfo was asked
 *	  for (PostgreSQL doubles them): writing past the space reserved is an
 *	  ASan report instead of going unnoticed.
 *	- ereport/elog at ERROR or above print the message and abort(): the
 *	  functions under test promise not to ERROR on any input.  Lower levels
 *	  are discarded.
 *	- The process must never touch the network: socket(), connect(),
 *	  getaddrinfo() and gethostbyname() are replaced by versions that abort,
 *	  except that socket() hands out, once, the descriptor a target armed
 *	  with shim_arm_socket() (one end of a socketpair, for fuzz_response),
 *	  and connect() on that descriptor succeeds; an IPv6 datagram socket
 *	  (libcurl's probe of whether IPv6 works) fails with EAFNOSUPPORT.
 *	- Functions of the worker's engine in http.c (wait sets, latches,
 *	  interrupts) exist only to link; calling one aborts.
 *-------------------------------------------------------------------------
 */
#ifndef WEBHOOK_FUZZ_SHIM_H
#define WEBHOOK_FUZZ_SHIM_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* What GetCurrentTimestamp() returns; targets set it. */
extern TimestampTz shim_now;

/* What GetDatabaseEncoding() returns (a server encoding); targets set it. */
extern int	shim_encoding;

/* Sets up the memory context; call once, from LLVMFuzzerInitialize. */
extern void shim_init(void);

/* Resets the context (callbacks, then chunks); call after every input. */
extern void shim_reset(void);

/* Is p a live chunk returned by palloc and friends? */
extern bool shim_is_palloc(const void *p);

/*
 * The next socket() call for a TCP stream gets fd (once), and connect() on
 * it succeeds without doing anything: fd must be connected already.
 */
extern void shim_arm_socket(int fd);

/* Disarms; returns whether socket() handed the armed descriptor out. */
extern bool shim_disarm_socket(void);

#endif							/* WEBHOOK_FUZZ_SHIM_H */
