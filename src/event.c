/*-------------------------------------------------------------------------
 * event.c
 *	  The rules of event types: what a type and a subscription pattern look
 *	  like.  Pure: no catalog access, no allocation, never ERRORs; shared by
 *	  webhook_publish, the capture trigger's prefixes, webhook_test and the
 *	  SQL helper webhook_valid_event_type (which the table constraints use).
 *-------------------------------------------------------------------------
 */
#include "webhook.h"

/*
 * Is s an event type: dot-separated non-empty segments of [A-Za-z0-9_-],
 * at most 255 bytes?  With pattern, "*" and "<type>.*" are accepted too.
 */
bool
valid_event_type(const char *s, bool pattern)
{
	size_t		len = strlen(s);
	bool		seg_empty = true;

	if (len == 0 || len > 255)
		return false;
	if (pattern)
	{
		if (strcmp(s, "*") == 0)
			return true;
		if (len > 2 && strcmp(s + len - 2, ".*") == 0)
			len -= 2;
	}
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '.')
		{
			if (seg_empty)
				return false;
			seg_empty = true;
		}
		else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
				 (c >= '0' && c <= '9') || c == '_' || c == '-')
			seg_empty = false;
		else
			return false;
	}
	return !seg_empty;
}
