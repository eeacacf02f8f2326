/*-------------------------------------------------------------------------
 * fuzz_destination.c
 *	  URL and CIDR handling in src/destination.c: destination_parse_networks
 *	  on arbitrary lists, destination_address_allowed on arbitrary socket
 *	  addresses, destination_check_url on arbitrary and on constructed URLs.
 *
 * Input fields: flags, a network list, a URL, then structured bytes: up to
 * four networks (family, 16 address bytes, prefix length), then addresses
 * to probe (family, 16 bytes) until the input ends.
 *	  flags bit 0   webhook.allow_http
 *	  flags bits 1-3  how the constructed URL writes its host (see
 *	                  host_text)
 *
 * The rules (src/destination.c's banner): an address is refused when it is
 * loopback, private, link-local, CGNAT, multicast, unspecified, reserved,
 * documentation, benchmarking or unique-local, IPv4-mapped and NAT64
 * addresses being judged by the IPv4 address they carry, unless it lies in
 * webhook.allowed_networks.  oracle_allowed() states them again with plain
 * integer arithmetic and is compared with destination_address_allowed for
 * every probe, for addresses just inside and just outside every allowed
 * network, and for literal hosts of URLs.
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
		{0xC0A80000, 16},		/* 192.168/16 */
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

static bool
v6_reserved(const uint8_t *a)
{
	static const uint8_t zero[16] = {0};

	if (memcmp(a, zero, 12) == 0)
		return true;			/* ::, ::1 and IPv4-compatible ::/96 */
	if (a[0] == 0x01 && a[1] == 0 && memcmp(a + 2, zero, 6) == 0)
		return true;			/* 100::/64 discard */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return true;			/* 2001:db8::/32 */
	if (a[0] == 0x20 && a[1] == 0x02)
		return true;			/* 2002::/16 6to4 */
	if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 && a[5] == 1)
		return true;			/* 64:ff9b:1::/48 local-use NAT64 */
	if ((a[0] & 0xFE) == 0xFC)
		return true;			/* fc00::/7 */
	if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80)
		return true;			/* fe80::/10 */
	if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0)
		return true;			/* fec0::/10 */
	if (a[0] == 0xFF)
		return true;			/* ff00::/8 */
	return false;
}

/* The policy, restated: allowed networks first, then the reserved ranges. */
static bool
oracle_allowed(int family, const uint8_t *addr)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};

	if (in_nets(family, addr))
		return true;
	if (family == AF_INET)
		return !v4_reserved(addr);
	if (memcmp(addr, mapped, 12) == 0 || memcmp(addr, nat64, 12) == 0)
		return oracle_allowed(AF_INET, addr + 12);
	return !v6_reserved(addr);
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
		return how == 1 ? fz_printf("[%s%%25eth0]", text) : fz_printf("[%s]", text);
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
		if (host[0] == '[' && inet_pton(AF_INET6, v6, addr) == 1)
		{
			if (!oracle_allowed(AF_INET6, addr))
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
			/* IPv4-mapped or NAT64, to be judged by the IPv4 inside */
			static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
			static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};

			family = AF_INET6;
			memmove(addr + 12, addr, 4);
			memcpy(addr, (how & 8) ? nat64 : mapped, 12);
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
