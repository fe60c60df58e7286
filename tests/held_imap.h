/* A stand-in for imap_client's MYRIGHTS that holds every question until
 * the test answers it: what authz asks the store stays pending, as it
 * does while a real server thinks. Listed in a test's SOURCES in place of
 * the real module (only imap_client_myrights and imap_client_last_error:
 * a test that needs more of the client must not use it). */
#ifndef MAILPUBSUB_HELD_IMAP_H
#define MAILPUBSUB_HELD_IMAP_H

#include <stddef.h>

#include "imap/imap_client.h"

/* Questions asked and not yet answered. */
size_t held_imap_pending(void);
/* "identity account/node" of pending question i (0: the oldest). */
const char *held_imap_question(size_t i);
/* Answers the oldest pending question (rights: for IMAP_OK). */
void held_imap_answer(enum imap_result result, const char *rights);
/* Answers the pending question that is exactly question ("identity
 * account/node"); fails (abort) when there is none. */
void held_imap_answer_to(const char *question, enum imap_result result,
			 const char *rights);
/* Forgets what is pending without answering. */
void held_imap_reset(void);

#endif
