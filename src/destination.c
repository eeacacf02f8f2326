/*-------------------------------------------------------------------------
 * destination.c
 *	  Where webhooks may go: URL policy (scheme, credentials, literal hosts)
 *	  and the address policy applied to every socket the worker opens.
 *
 * An address inside webhook.allowed_networks is allowed.  Otherwise one
 * table, special_ranges, decides: an address in a special-purpose range of
 * either family (loopback, private, link-local, CGNAT, multicast,
 * documentation, benchmarking, reserved, ...) or in IPv6 outside global
 * unicast is refused, except that IPv4-mapped addresses are judged as the
 * IPv4 address they carry and NAT64 well-known-prefix addresses need a
 * public IPv4 address; every other IPv6 form that carries an IPv4 address
 * (IPv4-compatible, SIIT, local-use NAT64, 6to4, Teredo) is refused.  The
 * same function judges literal hosts of URLs and every socket the worker
 * opens (destination_address_allowed).  URLs are parsed with
 * libcurl's URL API (the parser that will be used to connect), networks
 * with PostgreSQL's own inet parser.  Nothing here connects anywhere.
 *
 * Pure apart from the parsed allowed_networks list, which the GUC hooks in
 * webhook.c install through destination_parse_networks().
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "utils/builtins.h"
#include "utils/inet.h"

typedef struct Net
{
	int			family;			/* AF_INET or AF_INET6 */
	int			bits;
	unsigned char addr[16];
} Net;

#define MAX_ALLOWED_NETS 64

static Net	allowed[MAX_ALLOWED_NETS];
static int	nallowed = 0;

/*
 * What an address inside a special range gets.  Every rule is subject to
 * webhook.allowed_networks first: an address inside an allowed network of
 * its own family is allowed, whatever range it is in.
 */
typedef enum RangeRule
{
	RANGE_REFUSED,				/* refused */
	RANGE_CARRIED_IPV4,			/* judged as the IPv4 address in its last 32
								 * bits, webhook.allowed_networks included */
	RANGE_TRANSLATED_IPV4		/* allowed when the IPv4 address in its last 32
								 * bits lies in no range of this table;
								 * webhook.allowed_networks does not apply to
								 * that IPv4 address */
} RangeRule;

/*
 * The special ranges: the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries, multicast, and IPv6 outside global unicast (2000::/3).  The
 * longest prefix containing an address decides, so a range may sit inside
 * another with a different rule (64:ff9b::/96 inside ::/3).  Ranges the
 * registries call globally reachable are refused too when no webhook
 * receiver can live there (anycast for NAT and relay control, AS112 DNS
 * sinks, AMT relays, identifiers that are not locators).  docs/reliability.md
 * lists this table with the reason for each rule; keep the two together.
 */
static const struct
{
	int			family;
	const char *cidr;
	RangeRule	rule;
}			special_ranges[] =
{
	{AF_INET, "0.0.0.0/8", RANGE_REFUSED},	/* "this network" */
	{AF_INET, "0.0.0.0/32", RANGE_REFUSED}, /* "this host on this network" */
	{AF_INET, "10.0.0.0/8", RANGE_REFUSED}, /* private */
	{AF_INET, "100.64.0.0/10", RANGE_REFUSED},	/* shared address space, CGNAT */
	{AF_INET, "127.0.0.0/8", RANGE_REFUSED},	/* loopback */
	{AF_INET, "169.254.0.0/16", RANGE_REFUSED}, /* link-local, cloud metadata */
	{AF_INET, "172.16.0.0/12", RANGE_REFUSED},	/* private */
	{AF_INET, "192.0.0.0/24", RANGE_REFUSED},	/* IETF protocol assignments */
	{AF_INET, "192.0.0.0/29", RANGE_REFUSED},	/* IPv4 service continuity (DS-Lite) */
	{AF_INET, "192.0.0.8/32", RANGE_REFUSED},	/* IPv4 dummy address */
	{AF_INET, "192.0.0.9/32", RANGE_REFUSED},	/* PCP anycast: the NAT gateway */
	{AF_INET, "192.0.0.10/32", RANGE_REFUSED},	/* TURN anycast: a relay */
	{AF_INET, "192.0.0.170/31", RANGE_REFUSED}, /* NAT64/DNS64 discovery */
	{AF_INET, "192.0.2.0/24", RANGE_REFUSED},	/* documentation TEST-NET-1 */
	{AF_INET, "192.31.196.0/24", RANGE_REFUSED},	/* AS112-v4 DNS sinks */
	{AF_INET, "192.52.193.0/24", RANGE_REFUSED},	/* AMT relays */
	{AF_INET, "192.88.99.0/24", RANGE_REFUSED}, /* 6to4 relay anycast (deprecated) */
	{AF_INET, "192.168.0.0/16", RANGE_REFUSED}, /* private */
	{AF_INET, "192.175.48.0/24", RANGE_REFUSED},	/* AS112 direct delegation */
	{AF_INET, "198.18.0.0/15", RANGE_REFUSED},	/* benchmarking */
	{AF_INET, "198.51.100.0/24", RANGE_REFUSED},	/* documentation TEST-NET-2 */
	{AF_INET, "203.0.113.0/24", RANGE_REFUSED}, /* documentation TEST-NET-3 */
	{AF_INET, "224.0.0.0/4", RANGE_REFUSED},	/* multicast */
	{AF_INET, "240.0.0.0/4", RANGE_REFUSED},	/* reserved */
	{AF_INET, "255.255.255.255/32", RANGE_REFUSED}, /* limited broadcast */

	{AF_INET6, "::/3", RANGE_REFUSED},	/* not global unicast */
	{AF_INET6, "4000::/2", RANGE_REFUSED},	/* not global unicast */
	{AF_INET6, "8000::/1", RANGE_REFUSED},	/* not global unicast */
	{AF_INET6, "::/128", RANGE_REFUSED},	/* unspecified */
	{AF_INET6, "::1/128", RANGE_REFUSED},	/* loopback */
	{AF_INET6, "::/96", RANGE_REFUSED}, /* IPv4-compatible (deprecated) */
	/* IPv4-mapped: the kernel connects to the IPv4 address itself */
	{AF_INET6, "::ffff:0:0/96", RANGE_CARRIED_IPV4},
	{AF_INET6, "::ffff:0:0:0/96", RANGE_REFUSED},	/* SIIT (obsolete) */
	/* NAT64 well-known prefix: a translator elsewhere reaches the IPv4 */
	{AF_INET6, "64:ff9b::/96", RANGE_TRANSLATED_IPV4},
	/* local-use NAT64: the IPv4 sits where its operator chose */
	{AF_INET6, "64:ff9b:1::/48", RANGE_REFUSED},
	{AF_INET6, "100::/64", RANGE_REFUSED},	/* discard-only */
	{AF_INET6, "100:0:0:1::/64", RANGE_REFUSED},	/* dummy prefix */
	{AF_INET6, "2001::/23", RANGE_REFUSED}, /* IETF protocol assignments */
	{AF_INET6, "2001::/32", RANGE_REFUSED}, /* Teredo: two IPv4 inside */
	{AF_INET6, "2001:1::1/128", RANGE_REFUSED}, /* PCP anycast */
	{AF_INET6, "2001:1::2/128", RANGE_REFUSED}, /* TURN anycast */
	{AF_INET6, "2001:1::3/128", RANGE_REFUSED}, /* DNS-SD SRP anycast */
	{AF_INET6, "2001:2::/48", RANGE_REFUSED},	/* benchmarking */
	{AF_INET6, "2001:3::/32", RANGE_REFUSED},	/* AMT relays */
	{AF_INET6, "2001:4:112::/48", RANGE_REFUSED},	/* AS112-v6 DNS sinks */
	{AF_INET6, "2001:10::/28", RANGE_REFUSED},	/* ORCHID (deprecated) */
	{AF_INET6, "2001:20::/28", RANGE_REFUSED},	/* ORCHIDv2 identifiers */
	{AF_INET6, "2001:30::/28", RANGE_REFUSED},	/* drone remote ID tags */
	{AF_INET6, "2001:db8::/32", RANGE_REFUSED}, /* documentation */
	{AF_INET6, "2002::/16", RANGE_REFUSED}, /* 6to4: an IPv4 inside */
	{AF_INET6, "2620:4f:8000::/48", RANGE_REFUSED}, /* AS112 direct delegation */
	{AF_INET6, "3fff::/20", RANGE_REFUSED}, /* documentation */
	{AF_INET6, "5f00::/16", RANGE_REFUSED}, /* SRv6 segment identifiers */
	{AF_INET6, "fc00::/7", RANGE_REFUSED},	/* unique local */
	{AF_INET6, "fe80::/10", RANGE_REFUSED}, /* link-local */
	{AF_INET6, "fec0::/10", RANGE_REFUSED}, /* site-local (deprecated) */
	{AF_INET6, "ff00::/8", RANGE_REFUSED},	/* multicast */
};

static Net	special[lengthof(special_ranges)];
static bool special_ready = false;

/* Parses "addr[/bits]" into net; false when it is not an address or CIDR. */
static bool
parse_net(const char *text, Net *net)
{
	int			bits;

	memset(net, 0, sizeof(*net));
	if (strchr(text, ':') != NULL)
	{
		net->family = AF_INET6;
		bits = pg_inet_net_pton(PGSQL_AF_INET6, text, net->addr, (size_t) -1);
	}
	else
	{
		net->family = AF_INET;
		bits = pg_inet_net_pton(PGSQL_AF_INET, text, net->addr, (size_t) -1);
	}
	if (bits < 0)
		return false;
	if (strchr(text, '/') == NULL)
		bits = net->family == AF_INET ? 32 : 128;
	net->bits = bits;
	return true;
}

/* Does addr (4 or 16 bytes of family) fall inside net? */
static bool
net_contains(const Net *net, int family, const unsigned char *addr)
{
	int			full = net->bits / 8;
	int			rest = net->bits % 8;

	if (net->family != family)
		return false;
	if (memcmp(net->addr, addr, full) != 0)
		return false;
	if (rest != 0)
	{
		unsigned char mask = (unsigned char) (0xFF << (8 - rest));

		if ((net->addr[full] & mask) != (addr[full] & mask))
			return false;
	}
	return true;
}

/* Parses special_ranges once; a bad entry is a bug, hence elog. */
static void
prepare_special(void)
{
	if (special_ready)
		return;
	for (int i = 0; i < (int) lengthof(special_ranges); i++)
	{
		Net		   *net = &special[i];

		if (!parse_net(special_ranges[i].cidr, net) ||
			net->family != special_ranges[i].family)
			elog(ERROR, "bad built-in network %s", special_ranges[i].cidr);
		/* a set bit past the prefix would be a typo in the table */
		for (int b = net->bits; b < (net->family == AF_INET ? 32 : 128); b++)
			if (net->addr[b / 8] & (0x80 >> (b % 8)))
				elog(ERROR, "bad built-in network %s", special_ranges[i].cidr);
	}
	special_ready = true;
}

/* The index of the longest special range containing addr, or -1. */
static int
special_range(int family, const unsigned char *addr)
{
	int			best = -1;

	prepare_special();
	for (int i = 0; i < (int) lengthof(special); i++)
		if (net_contains(&special[i], family, addr) &&
			(best < 0 || special[i].bits > special[best].bits))
			best = i;
	return best;
}

/*
 * The policy on one raw address of family AF_INET (4 bytes) or AF_INET6.
 * With use_allowed false, webhook.allowed_networks is ignored: that is how
 * an IPv4 address that a translator elsewhere would reach is judged.
 */
static bool
raw_address_allowed(int family, const unsigned char *addr, bool use_allowed)
{
	int			r;

	/* An allowed network wins, in the address's own family. */
	if (use_allowed)
		for (int i = 0; i < nallowed; i++)
			if (net_contains(&allowed[i], family, addr))
				return true;

	r = special_range(family, addr);
	if (r < 0)
		return true;
	switch (special_ranges[r].rule)
	{
		case RANGE_REFUSED:
			return false;
		case RANGE_CARRIED_IPV4:
			return raw_address_allowed(AF_INET, addr + 12, use_allowed);
		case RANGE_TRANSLATED_IPV4:
			return raw_address_allowed(AF_INET, addr + 12, false);
	}
	return false;				/* not reached */
}

/*
 * Is the worker allowed to connect to sa?  Called from libcurl's
 * open-socket callback, so it must not ERROR: it only reads static data.
 */
bool
destination_address_allowed(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return raw_address_allowed(AF_INET,
								   (const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr,
								   true);
	if (sa->sa_family == AF_INET6)
		return raw_address_allowed(AF_INET6,
								   (const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr,
								   true);
	return false;				/* unix sockets and anything else */
}

/*
 * Parses a comma-separated CIDR list.  With errmsg == NULL the list is
 * installed as webhook.allowed_networks; otherwise it is only checked and a
 * malloc'd message describes the first bad entry.  Never ERRORs.
 */
bool
destination_parse_networks(const char *list, char **errmsg)
{
	Net			nets[MAX_ALLOWED_NETS];
	int			n = 0;
	const char *p = list ? list : "";

	while (*p)
	{
		char		item[128];
		int			len = 0;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
		{
			if (len < (int) sizeof(item) - 1)
				item[len] = *p;
			len++;
			p++;
		}
		if (len >= (int) sizeof(item))
		{
			if (errmsg)
				*errmsg = strdup("an entry is too long");
			return false;
		}
		item[len] = '\0';
		if (n == MAX_ALLOWED_NETS)
		{
			if (errmsg)
				*errmsg = strdup("at most 64 networks can be listed");
			return false;
		}
		if (!parse_net(item, &nets[n]))
		{
			if (errmsg)
			{
				char		buf[200];

				snprintf(buf, sizeof(buf), "\"%s\" is not an IP address or CIDR network", item);
				*errmsg = strdup(buf);
			}
			return false;
		}
		n++;
	}
	if (errmsg == NULL)
	{
		memcpy(allowed, nets, sizeof(Net) * n);
		nallowed = n;
	}
	return true;
}

/* Forgets every allowed network (used before re-installing the list). */
void
destination_reset_networks(void)
{
	nallowed = 0;
}

/*
 * Checks a URL against the destination rules without connecting: parse,
 * scheme (https, or http when webhook.allow_http), no credentials, and a
 * literal or "localhost" host must pass the address policy.  Hosts given by
 * name are checked again at connect time, address by address.  On failure
 * *detail gets a palloc'd sentence.
 */
DestCheck
destination_check_url(const char *url, char **detail)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *password = NULL;
	DestCheck	result = DEST_OK;

	*detail = NULL;
	if (u == NULL)
		elog(ERROR, "out of memory");

	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		host[0] == '\0')
	{
		result = DEST_BAD_URL;
		*detail = pstrdup("The URL could not be parsed as an absolute http or https URL with a host.");
		goto done;
	}
	if (pg_strcasecmp(scheme, "https") != 0 && pg_strcasecmp(scheme, "http") != 0)
	{
		result = DEST_BAD_SCHEME;
		*detail = psprintf("The scheme is \"%s\"; only https and http are supported.", scheme);
		goto done;
	}
	if (pg_strcasecmp(scheme, "http") == 0 && !webhook_allow_http)
	{
		result = DEST_HTTP_NOT_ALLOWED;
		*detail = pstrdup("Plain http is refused while webhook.allow_http is off.");
		goto done;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
		curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
	{
		result = DEST_CREDENTIALS;
		*detail = pstrdup("Credentials in the URL are refused; use the headers option instead.");
		goto done;
	}

	/* Literal addresses: curl has already normalized 0x7f.1, 2130706433, ... */
	{
		unsigned char addr[16];
		size_t		hlen = strlen(host);
		char		v6[INET6_ADDRSTRLEN + 1];

		/* "127.0.0.1." and "x.localhost." name the same hosts */
		if (hlen > 1 && host[hlen - 1] == '.' && host[0] != '[')
			host[--hlen] = '\0';
		/* as the message shows it, whatever libcurl's version kept of case */
		for (char *c = host; *c; c++)
			*c = pg_ascii_tolower((unsigned char) *c);

		if (host[0] == '[')
		{
			/* up to a zone id or the bracket; what we cannot read is refused */
			size_t		len = strcspn(host + 1, "%]");

			if (len >= sizeof(v6))
				result = DEST_BLOCKED_ADDRESS;
			else
			{
				memcpy(v6, host + 1, len);
				v6[len] = '\0';
				if (inet_pton(AF_INET6, v6, addr) != 1 ||
					!raw_address_allowed(AF_INET6, addr, true))
					result = DEST_BLOCKED_ADDRESS;
			}
		}
		else if (inet_pton(AF_INET, host, addr) == 1)
		{
			if (!raw_address_allowed(AF_INET, addr, true))
				result = DEST_BLOCKED_ADDRESS;
		}
		else
		{
			static const unsigned char v4lo[4] = {127, 0, 0, 1};
			const char *dot = strrchr(host, '.');
			bool		local = pg_strcasecmp(host, "localhost") == 0 ||
				pg_strcasecmp(host, "localhost.") == 0 ||
				(dot && pg_strcasecmp(dot, ".localhost") == 0);

			if (local && !raw_address_allowed(AF_INET, v4lo, true))
				result = DEST_BLOCKED_NAME;
		}
		if (result != DEST_OK)
			*detail = psprintf("The host \"%s\" is a loopback, private, link-local or otherwise reserved address outside webhook.allowed_networks.", host);
	}

done:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return result;
}
