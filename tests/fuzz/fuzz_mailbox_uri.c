/* libFuzzer target: RFC 5092 IMAP URLs to nodes (src/model/mailbox_uri.c).
 * Property: a URI that parses to a node of an account builds back
 * (mailbox_uri_build, same separator) into a URI that parses to the same
 * account and node. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/mailbox_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const char *uri, char sep)
{
	struct mailbox_uri a, b;
	const char *error = NULL;
	char *built;

	if (mailbox_uri_parse(uri, sep, &a, &error) < 0) {
		if (error == NULL || a.account != NULL || a.node != NULL)
			abort();
		return;
	}
	if (a.node == NULL || a.account == NULL) {
		mailbox_uri_clear(&a);
		return;
	}
	/* the server part as the daemon builds it (counts.c, discovery.c) */
	built = mailbox_uri_build("mailpubsub", a.account, a.node, sep,
				  a.uidvalidity);
	if (built == NULL) {
		fprintf(stderr, "round trip: cannot build a URI for account '%s' "
			"node '%s' (from '%s', sep '%c')\n", a.account, a.node, uri, sep);
		abort();
	}
	if (mailbox_uri_parse(built, sep, &b, &error) < 0) {
		fprintf(stderr, "round trip: '%s' (sep '%c') -> account '%s' node '%s'"
			" -> '%s' does not parse: %s\n", uri, sep, a.account, a.node,
			built, error);
		abort();
	}
	if (b.account == NULL || b.node == NULL ||
	    strcmp(a.account, b.account) != 0 || strcmp(a.node, b.node) != 0 ||
	    a.uidvalidity != b.uidvalidity) {
		fprintf(stderr, "round trip: '%s' (sep '%c') -> account '%s' node '%s'"
			" -> '%s' -> account '%s' node '%s'\n", uri, sep, a.account,
			a.node, built, b.account ? b.account : "(null)",
			b.node ? b.node : "(null)");
		abort();
	}
	if (!mailbox_uri_node_valid(a.node))
		abort();
	mailbox_uri_clear(&b);
	free(built);
	mailbox_uri_clear(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *uri = malloc(size + 1);

	if (uri == NULL)
		return 0;
	memcpy(uri, data, size);
	uri[size] = '\0';
	one(uri, '/');
	one(uri, '.');
	free(uri);
	return 0;
}
