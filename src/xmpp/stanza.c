#include "xmpp/stanza.h"

#include <string.h>

xmpp_stanza_t *stanza_add_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				const char *name, const char *ns)
{
	xmpp_stanza_t *el = xmpp_stanza_new(ctx);

	xmpp_stanza_set_name(el, name);
	if (ns != NULL)
		xmpp_stanza_set_ns(el, ns);
	xmpp_stanza_add_child_ex(parent, el, 0);
	return el;
}

void stanza_add_text(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *text)
{
	xmpp_stanza_t *t = xmpp_stanza_new(ctx);

	xmpp_stanza_set_text(t, text);
	xmpp_stanza_add_child_ex(parent, t, 0);
}

xmpp_stanza_t *stanza_add_text_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				     const char *name, const char *text)
{
	xmpp_stanza_t *child = stanza_add_child(ctx, parent, name, NULL);

	if (*text != '\0')
		stanza_add_text(ctx, child, text);
	return child;
}

xmpp_stanza_t *stanza_add_query(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				const char *ns, const char *node)
{
	xmpp_stanza_t *q = stanza_add_child(ctx, parent, "query", ns);

	if (node != NULL)
		xmpp_stanza_set_attribute(q, "node", node);
	return q;
}

xmpp_stanza_t *stanza_first_element(xmpp_stanza_t *parent)
{
	xmpp_stanza_t *c = xmpp_stanza_get_children(parent);

	while (c != NULL && !xmpp_stanza_is_tag(c))
		c = xmpp_stanza_get_next(c);
	return c;
}

xmpp_stanza_t *stanza_child(xmpp_stanza_t *parent, const char *name, const char *ns)
{
	for (xmpp_stanza_t *c = xmpp_stanza_get_children(parent); c != NULL;
	     c = xmpp_stanza_get_next(c)) {
		if (!xmpp_stanza_is_tag(c) || strcmp(xmpp_stanza_get_name(c), name) != 0)
			continue;
		if (ns == NULL || (xmpp_stanza_get_ns(c) != NULL &&
				   strcmp(xmpp_stanza_get_ns(c), ns) == 0))
			return c;
	}
	return NULL;
}
