/*-------------------------------------------------------------------------
 * destination.c
 *	  Where webhooks may go: URL policy (scheme, credentials, literal hosts)
 *	  and the address policy applied to every socket the worker opens.
 *
 * An address is refused when it is loopback, private, link-local, CGNAT,
 * multicast, unspecified, reserved or unique-local (IPv4 and IPv6, with
 * IPv4-mapped and NAT64 addresses judged by the IPv4 address they carry),
 * unless it lies inside webhook.allowed_networks.  URLs are parsed with
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

/* Ranges refused unless allowed; IPv4 first, then IPv6. */
static const struct
{
	int			family;
	const char *cidr;
}			blocked_ranges[] =
{
	{AF_INET, "0.0.0.0/8"},		/* "this network", unspecified */
	{AF_INET, "10.0.0.0/8"},	/* private */
	{AF_INET, "100.64.0.0/10"}, /* CGNAT */
	{AF_INET, "127.0.0.0/8"},	/* loopback */
	{AF_INET, "169.254.0.0/16"},	/* link-local, cloud metadata */
	{AF_INET, "172.16.0.0/12"}, /* private */
	{AF_INET, "192.0.0.0/24"},	/* IETF protocol assignments */
	{AF_INET, "192.0.2.0/24"},	/* documentation */
	{AF_INET, "192.168.0.0/16"},	/* private */
	{AF_INET, "198.18.0.0/15"}, /* benchmarking */
	{AF_INET, "198.51.100.0/24"},	/* documentation */
	{AF_INET, "203.0.113.0/24"},	/* documentation */
	{AF_INET, "224.0.0.0/4"},	/* multicast */
	{AF_INET, "240.0.0.0/4"},	/* reserved, broadcast */
	{AF_INET6, "::/128"},		/* unspecified */
	{AF_INET6, "::1/128"},		/* loopback */
	{AF_INET6, "::/96"},		/* IPv4-compatible (deprecated) */
	{AF_INET6, "64:ff9b:1::/48"},	/* local-use NAT64: may carry any IPv4 */
	{AF_INET6, "2002::/16"},	/* 6to4: may carry any IPv4 */
	{AF_INET6, "100::/64"},		/* discard */
	{AF_INET6, "2001:db8::/32"},	/* documentation */
	{AF_INET6, "fc00::/7"},		/* unique local */
	{AF_INET6, "fe80::/10"},	/* link-local */
	{AF_INET6, "fec0::/10"},	/* site-local (deprecated) */
	{AF_INET6, "ff00::/8"},		/* multicast */
};

static Net	blocked[lengthof(blocked_ranges)];
static bool blocked_ready = false;

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

static void
prepare_blocked(void)
{
	if (blocked_ready)
		return;
	for (int i = 0; i < (int) lengthof(blocked_ranges); i++)
		if (!parse_net(blocked_ranges[i].cidr, &blocked[i]))
			elog(ERROR, "bad built-in network %s", blocked_ranges[i].cidr);
	blocked_ready = true;
}

/* The policy on one raw address of family AF_INET (4 bytes) or AF_INET6. */
static bool
raw_address_allowed(int family, const unsigned char *addr)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	/* An allowed network wins, in the address's own family. */
	for (int i = 0; i < nallowed; i++)
		if (net_contains(&allowed[i], family, addr))
			return true;

	/* IPv4-mapped and NAT64 addresses are judged as the IPv4 they carry. */
	if (family == AF_INET6 &&
		(memcmp(addr, mapped, 12) == 0 || memcmp(addr, nat64, 12) == 0))
		return raw_address_allowed(AF_INET, addr + 12);

	prepare_blocked();
	for (int i = 0; i < (int) lengthof(blocked); i++)
		if (net_contains(&blocked[i], family, addr))
			return false;
	return true;
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
								   (const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
		return raw_address_allowed(AF_INET6,
								   (const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr);
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

		if (host[0] == '[' && hlen > 2 && hlen - 2 < sizeof(v6))
		{
			char	   *pct;

			memcpy(v6, host + 1, hlen - 2);
			v6[hlen - 2] = '\0';
			if ((pct = strchr(v6, '%')) != NULL)	/* zone id */
				*pct = '\0';
			if (inet_pton(AF_INET6, v6, addr) == 1 &&
				!raw_address_allowed(AF_INET6, addr))
				result = DEST_BLOCKED_ADDRESS;
		}
		else if (inet_pton(AF_INET, host, addr) == 1)
		{
			if (!raw_address_allowed(AF_INET, addr))
				result = DEST_BLOCKED_ADDRESS;
		}
		else
		{
			static const unsigned char v4lo[4] = {127, 0, 0, 1};
			const char *dot = strrchr(host, '.');
			bool		local = pg_strcasecmp(host, "localhost") == 0 ||
				pg_strcasecmp(host, "localhost.") == 0 ||
				(dot && pg_strcasecmp(dot, ".localhost") == 0);

			if (local && !raw_address_allowed(AF_INET, v4lo))
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
