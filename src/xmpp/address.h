/* Addressing: which account a JID of ours names, and back. The shared
 * service is [pubsub] shared_service; an account's own service is
 * <escaped account>@<component domain> (XEP-0106). */
#ifndef MAILPUBSUB_ADDRESS_H
#define MAILPUBSUB_ADDRESS_H

#include <stdbool.h>

#include "base/config.h"

/* The account a service JID names: "" for the shared service, NULL when the
 * JID is not one of ours or its localpart, unescaped, is not an account
 * name (jid_account_valid). Newly allocated. */
char *address_account_for_jid(const struct config *config, const char *jid);
/* Is jid the component domain itself (with or without a resource)? */
bool address_is_domain(const struct config *config, const char *jid);
/* The service JID of an account. Newly allocated. */
char *address_jid_for_account(const struct config *config, const char *account);

#endif
