/* XEP-0030 service discovery of the component, account services and
 * mailbox nodes. */
#ifndef MAILPUBSUB_DISCO_H
#define MAILPUBSUB_DISCO_H

#include <strophe.h>

struct service;

#define DISCO_NS_PREFIX "http://jabber.org/protocol/disco#"
#define DISCO_INFO_NS "http://jabber.org/protocol/disco#info"
#define DISCO_ITEMS_NS "http://jabber.org/protocol/disco#items"

/* Answers iq (a get with query child); errors for anything else. */
void disco_handle(struct service *service, xmpp_stanza_t *iq, xmpp_stanza_t *query);

#endif
