/* The small stanza-building and -reading idioms every handler repeats,
 * over libstrophe's tree: children are owned by their parent once added
 * (xmpp_stanza_add_child_ex with do_clone 0), so nothing returned here
 * is released by the caller. */
#ifndef MAILPUBSUB_STANZA_H
#define MAILPUBSUB_STANZA_H

#include <strophe.h>

/* XEP-0060, which the handlers answer and the publisher speaks to a
 * delegate service */
#define PUBSUB_NS "http://jabber.org/protocol/pubsub"
/* XEP-0059 result set management: items replies are paged with it */
#define RSM_NS "http://jabber.org/protocol/rsm"

/* A new element name (in namespace ns, NULL: inherited) appended to
 * parent; owned by parent. */
xmpp_stanza_t *stanza_add_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				const char *name, const char *ns);
/* A text node appended to parent. */
void stanza_add_text(xmpp_ctx_t *ctx, xmpp_stanza_t *parent, const char *text);
/* <name>text</name> appended to parent (an empty text: no text node). */
xmpp_stanza_t *stanza_add_text_child(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				     const char *name, const char *text);
/* <query xmlns=ns [node=node]/> appended to parent (disco replies). */
xmpp_stanza_t *stanza_add_query(xmpp_ctx_t *ctx, xmpp_stanza_t *parent,
				const char *ns, const char *node);

/* The first element child of parent (text nodes skipped), or NULL. */
xmpp_stanza_t *stanza_first_element(xmpp_stanza_t *parent);
/* The first element child called name in namespace ns (NULL: any), or
 * NULL. */
xmpp_stanza_t *stanza_child(xmpp_stanza_t *parent, const char *name, const char *ns);

#endif
