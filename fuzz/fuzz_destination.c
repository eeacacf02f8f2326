/*-------------------------------------------------------------------------
 * fuzz_destination.c
 *	  URL and CIDR handling in src/destination.c: destination_parse_networks
 *	  on arbitrary lists, destination_address_allowed on arbitrary socket
 *	  addresses, destination_check_url on arbitrary and on constructed URLs.
 *
 * Input fields: flags, a network list, a URL, then structured bytes: up to
 * four networks (family, 16 address bytes, prefix length), then addresses
 * to probe until the input ends.
 *	  flags bit 0   webhook.allow_http
 *	  flags bits 1-3  how the constructed URL writes its host (see
 *	                  host_text)
 *
 * Each probe: a byte "how" (bit 0 IPv6, bit 1 http, bit 2 wrap an IPv4
 * address in an IPv6 form chosen by bits 3, 5 and 6 (see wrap_ipv4), bit 4
 * a port), then 4 or 16 address bytes.
 *
 * The rules (src/destination.c's table of special ranges): an address is
 * refused when it lies in a special-purpose range of either family, or is
 * an IPv6 address outside global unicast 2000::/3, unless it lies in
 * webhook.allowed_networks; IPv4-mapped addresses are judged as the IPv4
 * address they carry, NAT64 well-known-prefix addresses are allowed when
 * the IPv4 address they carry is in no special range (allowed networks do
 * not count for it), and every other IPv6 form that carries an IPv4
 * address (IPv4-compatible, SIIT, local-use NAT64, 6to4, Teredo) is
 * refused.  oracle_allowed() states them again with plain integer
 * arithmetic, IPv6 as "global unicast minus a few blocks" rather than
 * src/'s longest-prefix table, and is compared with
 * destination_address_allowed for every probe, for addresses just inside
 * and just outside every allowed network, and for literal hosts of URLs.
 *
 * No name is ever resolved: destination_check_url only parses (libcurl's
 * URL API) and compares names with "localhost"; the shim makes socket(),
 * connect(), getaddrinfo() and gethostbyname() abort, so a lookup would be
 * a crash, not network traffic.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <curl/curl.h>

#include "../src/webhook.h"
#include "common.h"
#include "shim.h"

typedef struct Net
{
	int			family;
	int			bits;
	uint8_t		addr[16];
} Net;

#define MAX_NETS 70

static Net	nets[MAX_NETS];		/* what the oracle believes is installed */
static int	nnets = 0;
static bool nets_complete = true;	/* false: some entries unknown to us */

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	shim_init();
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		abort();
	return 0;
}

static bool
in_prefix(const uint8_t *a, const uint8_t *b, int bits)
{
	for (int i = 0; i < bits; i++)
		if (((a[i / 8] >> (7 - i % 8)) & 1) != ((b[i / 8] >> (7 - i % 8)) & 1))
			return false;
	return true;
}

static bool
in_nets(int family, const uint8_t *addr)
{
	for (int i = 0; i < nnets; i++)
		if (nets[i].family == family && in_prefix(nets[i].addr, addr, nets[i].bits))
			return true;
	return false;
}

/* Refused IPv4 ranges, as (address, mask length) in host byte order. */
static bool
v4_reserved(const uint8_t *a)
{
	uint32_t	x = (uint32_t) a[0] << 24 | (uint32_t) a[1] << 16 | (uint32_t) a[2] << 8 | a[3];
	static const struct
	{
		uint32_t	net;
		int			len;
	}			r[] = {
		{0x00000000, 8},		/* this network */
		{0x0A000000, 8},		/* 10/8 */
		{0x64400000, 10},		/* 100.64/10 CGNAT */
		{0x7F000000, 8},		/* loopback */
		{0xA9FE0000, 16},		/* 169.254/16 link-local */
		{0xAC100000, 12},		/* 172.16/12 */
		{0xC0000000, 24},		/* 192.0.0/24 */
		{0xC0000200, 24},		/* 192.0.2/24 TEST-NET-1 */
		{0xC01FC400, 24},		/* 192.31.196/24 AS112 */
		{0xC034C100, 24},		/* 192.52.193/24 AMT */
		{0xC0586300, 24},		/* 192.88.99/24 6to4 relay anycast */
		{0xC0A80000, 16},		/* 192.168/16 */
		{0xC0AF3000, 24},		/* 192.175.48/24 AS112 direct delegation */
		{0xC6120000, 15},		/* 198.18/15 benchmarking */
		{0xC6336400, 24},		/* 198.51.100/24 TEST-NET-2 */
		{0xCB007100, 24},		/* 203.0.113/24 TEST-NET-3 */
		{0xE0000000, 3},		/* 224/4 multicast and 240/4 reserved */
	};

	for (int i = 0; i < (int) lengthof(r); i++)
		if ((x >> (32 - r[i].len)) == (r[i].net >> (32 - r[i].len)))
			return true;
	return false;
}

/* What the rules make of an IPv6 address, before allowed networks. */
typedef enum V6Kind
{
	V6_PLAIN,					/* global unicast: allowed */
	V6_REFUSED,
	V6_MAPPED,					/* judged as the IPv4 in its last 4 bytes */
	V6_NAT64					/* allowed if that IPv4 is not reserved */
} V6Kind;

static V6Kind
v6_kind(const uint8_t *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
	static const uint8_t as112[6] = {0x26, 0x20, 0x00, 0x4f, 0x80, 0x00};

	if (memcmp(a, mapped, 12) == 0)
		return V6_MAPPED;
	if (memcmp(a, nat64, 12) == 0)
		return V6_NAT64;

	/*
	 * Outside 2000::/3 everything is reserved or special: ::/128, ::1,
	 * ::/96, SIIT, 64:ff9b:1::/48, 100::/64, 5f00::/16, fc00::/7,
	 * fe80::/10, fec0::/10, ff00::/8 and unallocated space.
	 */
	if ((a[0] & 0xE0) != 0x20)
		return V6_REFUSED;
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 2)
		return V6_REFUSED;		/* 2001::/23, Teredo included */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return V6_REFUSED;		/* 2001:db8::/32 */
	if (a[0] == 0x20 && a[1] == 0x02)
		return V6_REFUSED;		/* 2002::/16 6to4 */
	if (memcmp(a, as112, 6) == 0)
		return V6_REFUSED;		/* 2620:4f:8000::/48 */
	if (a[0] == 0x3f && a[1] == 0xff && (a[2] & 0xF0) == 0)
		return V6_REFUSED;		/* 3fff::/20 */
	return V6_PLAIN;
}

/* The policy, restated: allowed networks first, then the reserved ranges. */
static bool
oracle_allowed(int family, const uint8_t *addr)
{
	if (in_nets(family, addr))
		return true;
	if (family == AF_INET)
		return !v4_reserved(addr);
	switch (v6_kind(addr))
	{
		case V6_PLAIN:
			return true;
		case V6_REFUSED:
			return false;
		case V6_MAPPED:
			return oracle_allowed(AF_INET, addr + 12);
		case V6_NAT64:
			return !v4_reserved(addr + 12);
	}
	abort();
}

/* destination_address_allowed on a sockaddr built from family and bytes. */
static bool
real_allowed(int family, const uint8_t *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(443);
		memcpy(&sin->sin_addr, addr, 4);
	}
	else
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(443);
		memcpy(&sin6->sin6_addr, addr, 16);
	}
	return destination_address_allowed((struct sockaddr *) &ss);
}

/*
 * Checks one address.  With every installed network known to the oracle
 * the answer must be the oracle's; otherwise unknown networks can only
 * allow more, so an address the oracle allows must still be allowed.
 */
static void
check_address(int family, const uint8_t *addr)
{
	bool		got = real_allowed(family, addr);
	bool		want = oracle_allowed(family, addr);
	char		text[INET6_ADDRSTRLEN];

	inet_ntop(family, addr, text, sizeof(text));
	if (nets_complete)
		FZ_CHECK(got == want, "destination_address_allowed(%s) = %d, oracle %d", text, got, want);
	else
		FZ_CHECK(got || !want, "destination_address_allowed(%s) refused, oracle allows", text);
}

/* Reads "addr[/bits]" written plainly (inet_pton syntax); false if not. */
static bool
plain_net(const char *text, Net *net)
{
	char		buf[128];
	char	   *slash;

	if (strlen(text) >= sizeof(buf))
		return false;
	strcpy(buf, text);
	memset(net, 0, sizeof(*net));
	net->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	net->bits = net->family == AF_INET ? 32 : 128;
	if ((slash = strchr(buf, '/')) != NULL)
	{
		int			bits = 0;

		*slash = '\0';
		if (slash[1] == '\0' || strlen(slash + 1) > 3)
			return false;
		for (char *d = slash + 1; *d; d++)
		{
			if (*d < '0' || *d > '9')
				return false;
			bits = bits * 10 + (*d - '0');
		}
		if (bits > net->bits)
			return false;
		net->bits = bits;
	}
	return inet_pton(net->family, buf, net->addr) == 1;
}

/*
 * destination_parse_networks on arbitrary text: checking never installs,
 * a refused list leaves the installed one alone, installing answers as
 * checking did, too long an entry or more than 64 entries are refused, and
 * a plainly written entry allows its own addresses.
 */
static void
check_list(const char *list)
{
	static const uint8_t lo1[4] = {127, 0, 0, 1};
	static const uint8_t lo2[4] = {127, 0, 0, 2};
	char	   *err = NULL;
	bool		ok;
	const char *p = list;
	int			entries = 0;
	bool		too_long = false;

	/* installed before: 127.0.0.1 only */
	destination_reset_networks();
	nnets = 0;
	nets_complete = true;
	FZ_CHECK(destination_parse_networks("127.0.0.1", NULL), "127.0.0.1 refused");

	ok = destination_parse_networks(list, &err);
	FZ_CHECK(ok == (err == NULL), "parse_networks(%s) = %d with message %s", list, ok,
			 err ? err : "NULL");
	free(err);
	FZ_CHECK(real_allowed(AF_INET, lo1) && !real_allowed(AF_INET, lo2),
			 "checking the list changed the installed one: %s", list);
	FZ_CHECK(destination_parse_networks(list, NULL) == ok,
			 "installing and checking disagree on %s", list);
	if (!ok)
		FZ_CHECK(real_allowed(AF_INET, lo1) && !real_allowed(AF_INET, lo2),
				 "a refused list changed the installed one: %s", list);

	while (*p)
	{
		size_t		len = strcspn(p, ", \t");
		char	   *item = fz_printf("%.*s", (int) len, p);

		p += len;
		p += strspn(p, ", \t");
		if (len == 0)
			continue;
		entries++;
		too_long |= len >= 128;
		if (nnets < MAX_NETS && plain_net(item, &nets[nnets]))
			nnets++;
		else
			nets_complete = false;
	}
	if (too_long || entries > 64)
		FZ_CHECK(!ok, "accepted %d entries (one too long: %d): %s", entries, too_long, list);
	if (!ok)
	{
		/* the oracle's view: 127.0.0.1 alone is still installed */
		memset(&nets[0], 0, sizeof(Net));
		nets[0].family = AF_INET;
		nets[0].bits = 32;
		memcpy(nets[0].addr, lo1, 4);
		nnets = 1;
		nets_complete = true;
		return;
	}
	for (int i = 0; i < nnets; i++)
		check_address(nets[i].family, nets[i].addr);
}

/* Installs up to four networks from structured bytes; the oracle knows them all. */
static void
install_nets(FuzzIn *in)
{
	static const char *const seps[] = {",", ", ", " ", "\t", ",,", " , "};
	int			count = in_byte(in) % 5;
	char	   *list = fz_strdup("");
	char	   *err = NULL;

	destination_reset_networks();
	nnets = 0;
	nets_complete = true;
	for (int i = 0; i < count; i++)
	{
		Net		   *n = &nets[nnets++];
		uint8_t		how = in_byte(in);
		char		text[INET6_ADDRSTRLEN];
		int			max;

		memset(n, 0, sizeof(*n));
		n->family = (how & 1) ? AF_INET6 : AF_INET;
		max = n->family == AF_INET ? 32 : 128;
		in_fill(in, n->addr, n->family == AF_INET ? 4 : 16);
		n->bits = in_byte(in) % (max + 1);
		inet_ntop(n->family, n->addr, text, sizeof(text));
		if ((how & 2) && n->bits == max)
			list = fz_printf("%s%s%s", list, i ? seps[(how >> 2) % lengthof(seps)] : "", text);
		else
			list = fz_printf("%s%s%s/%d", list, i ? seps[(how >> 2) % lengthof(seps)] : "",
							 text, n->bits);
	}
	FZ_CHECK(destination_parse_networks(list, &err), "canonical list refused: %s (%s)",
			 list, err ? err : "");
	FZ_CHECK(destination_parse_networks(list, NULL), "canonical list not installed: %s", list);
}

/* A host naming addr in one of the notations curl accepts. */
static const char *
host_text(int family, const uint8_t *a, int how)
{
	char		text[INET6_ADDRSTRLEN];
	uint32_t	x = (uint32_t) a[0] << 24 | (uint32_t) a[1] << 16 | (uint32_t) a[2] << 8 | a[3];

	inet_ntop(family, a, text, sizeof(text));
	if (family == AF_INET6)
	{
		char	   *full = fz_strdup("");

		switch (how)
		{
			case 1:
				return fz_printf("[%s%%25eth0]", text);
			case 2:				/* eight groups, zero-padded, upper case */
				for (int i = 0; i < 16; i += 2)
					full = fz_printf("%s%s%02X%02X", full, i ? ":" : "", a[i], a[i + 1]);
				return fz_printf("[%s]", full);
			case 3:				/* six groups and the last 32 bits dotted */
				for (int i = 0; i < 12; i += 2)
					full = fz_printf("%s%x:", full, a[i] << 8 | a[i + 1]);
				return fz_printf("[%s%u.%u.%u.%u]", full, a[12], a[13], a[14], a[15]);
			default:
				return fz_printf("[%s]", text);
		}
	}
	switch (how)
	{
		case 1:
			return fz_printf("%u", x);
		case 2:
			return fz_printf("0x%x", x);
		case 3:
			return fz_printf("0%o.0%o.0%o.0%o", a[0], a[1], a[2], a[3]);
		case 4:
			return fz_printf("%u.%u", a[0], x & 0xFFFFFF);
		case 5:
			return fz_printf("0x%x.%u.0%o.%u", a[0], a[1], a[2], a[3]);
		default:
			return fz_strdup(text);
	}
}

/*
 * Rewrites addr (an IPv4 address in its first 4 bytes) as an IPv6 address
 * that carries it: 0 IPv4-mapped, 1 NAT64 well-known prefix, 2 SIIT,
 * 3 IPv4-compatible, 4 local-use NAT64 (/96), 5 6to4 (bits 16-47),
 * 6 Teredo (server in bits 32-63, client inverted in the last 32),
 * 7 the NAT64 prefix with a non-zero byte before the IPv4 (no longer NAT64).
 */
static void
wrap_ipv4(uint8_t *addr, int kind)
{
	static const uint8_t prefixes[5][12] = {
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
		{0, 0x64, 0xff, 0x9b},
		{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
		{0},
		{0, 0x64, 0xff, 0x9b, 0, 1},
	};
	uint8_t		v4[4];

	memcpy(v4, addr, 4);
	memset(addr, 0, 16);
	switch (kind)
	{
		case 5:
			addr[0] = 0x20;
			addr[1] = 0x02;
			memcpy(addr + 2, v4, 4);
			addr[15] = 1;
			break;
		case 6:
			addr[0] = 0x20;
			addr[1] = 0x01;
			memcpy(addr + 4, v4, 4);
			for (int i = 0; i < 4; i++)
				addr[12 + i] = v4[i] ^ 0xFF;
			break;
		case 7:
			memcpy(addr, prefixes[1], 12);
			addr[11] = 1;
			memcpy(addr + 12, v4, 4);
			break;
		default:
			memcpy(addr, prefixes[kind], 12);
			memcpy(addr + 12, v4, 4);
			break;
	}
}

/* destination_check_url's answer for a URL, with its invariants. */
static DestCheck
check_url(const char *url)
{
	char	   *detail = NULL;
	DestCheck	r = destination_check_url(url, &detail);
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *password = NULL;
	DestCheck	want;

	FZ_CHECK(r >= DEST_OK && r <= DEST_BLOCKED_NAME, "result %d for %s", (int) r, url);
	FZ_CHECK((r == DEST_OK) == (detail == NULL), "detail %s for result %d", detail ? detail : "NULL", (int) r);
	FZ_CHECK(detail == NULL || shim_is_palloc(detail), "detail not palloc'd");

	/* the same decision, from libcurl's parse and the oracle */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
		want = DEST_BAD_URL;
	else if (pg_strcasecmp(scheme, "https") != 0 && pg_strcasecmp(scheme, "http") != 0)
		want = DEST_BAD_SCHEME;
	else if (pg_strcasecmp(scheme, "http") == 0 && !webhook_allow_http)
		want = DEST_HTTP_NOT_ALLOWED;
	else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
			 curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
		want = DEST_CREDENTIALS;
	else
	{
		uint8_t		addr[16];
		size_t		hlen = strlen(host);
		char	   *v6 = fz_printf("%.*s", (int) (hlen >= 2 ? hlen - 2 : 0), host + 1);

		/* one trailing dot names the same host */
		if (hlen > 1 && host[hlen - 1] == '.' && host[0] != '[')
			host[--hlen] = '\0';

		v6[strcspn(v6, "%")] = '\0';
		want = DEST_OK;
		if (host[0] == '[')
		{
			if (inet_pton(AF_INET6, v6, addr) != 1 || !oracle_allowed(AF_INET6, addr))
				want = DEST_BLOCKED_ADDRESS;
		}
		else if (inet_pton(AF_INET, host, addr) == 1)
		{
			if (!oracle_allowed(AF_INET, addr))
				want = DEST_BLOCKED_ADDRESS;
		}
		else if (pg_strcasecmp(host, "localhost") == 0 ||
				 pg_strcasecmp(host, "localhost.") == 0 ||
				 (hlen >= 10 && pg_strcasecmp(host + hlen - 10, ".localhost") == 0))
		{
			static const uint8_t lo[4] = {127, 0, 0, 1};

			if (!oracle_allowed(AF_INET, lo))
				want = DEST_BLOCKED_NAME;
		}
	}
	if (nets_complete)
		FZ_CHECK(r == want, "destination_check_url(%s) = %d, oracle %d (host %s)",
				 url, (int) r, (int) want, host ? host : "NULL");
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzIn		in = {data, size};
	uint8_t		flags = in_byte(&in);
	char	   *list = in_str(&in, 4096);
	char	   *url = in_str(&in, 4096);
	bool		first = true;

	webhook_allow_http = flags & 1;

	/* arbitrary text: lists, then the URL under that list */
	check_list(list);
	check_url(url);

	/* known networks, probes inside and just outside each, URLs to them */
	install_nets(&in);
	for (int i = 0; i < nnets; i++)
	{
		Net			n = nets[i];
		int			max = n.family == AF_INET ? 32 : 128;

		check_address(n.family, n.addr);
		if (n.bits < max)
		{
			n.addr[n.bits / 8] ^= 0x80 >> (n.bits % 8);	/* first bit outside */
			check_address(n.family, n.addr);
			n.addr[(max - 1) / 8] ^= 1;					/* last host bit */
			check_address(n.family, n.addr);
		}
	}
	while (in.n > 0 || first)
	{
		uint8_t		how = in_byte(&in);
		int			family = (how & 1) ? AF_INET6 : AF_INET;
		uint8_t		addr[16];
		const char *scheme = (how & 2) ? "http" : "https";

		in_fill(&in, addr, family == AF_INET ? 4 : 16);
		if (how & 4)
		{
			family = AF_INET6;
			wrap_ipv4(addr, (how >> 3 & 1) | (how >> 4 & 6));
		}
		check_address(family, addr);
		check_url(fz_printf("%s://%s%s/hook?x=1", scheme,
							host_text(family, addr, (flags >> 1) & 7),
							(how & 16) ? ":8443" : ""));
		first = false;
	}

	/* other families are always refused */
	{
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		FZ_CHECK(!destination_address_allowed((struct sockaddr *) &sun), "AF_UNIX allowed");
	}

	shim_reset();
	fz_end();
	return 0;
}
