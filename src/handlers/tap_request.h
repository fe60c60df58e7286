/* The tap commands (XEP-0050 ad-hoc commands tap-add, tap-list,
 * tap-remove on the component domain) for [taps] admins; the relay
 * itself is downstream/tap.c. Anybody else sees no commands and gets
 * forbidden. */
#ifndef MAILPUBSUB_TAP_REQUEST_H
#define MAILPUBSUB_TAP_REQUEST_H

#include <strophe.h>

#define COMMANDS_NS "http://jabber.org/protocol/commands"

struct service;

/* disco#items on the commands node of the component domain: the tap
 * commands for admins, nothing for anybody else. */
void tap_request_disco_items(struct service *service, xmpp_stanza_t *iq,
			     xmpp_stanza_t *query);
/* <command xmlns='http://jabber.org/protocol/commands'/>. */
void tap_request_command(struct service *service, xmpp_stanza_t *iq,
			 xmpp_stanza_t *command);

#endif
