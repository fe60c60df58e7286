/* The control socket ([control] socket): `mailpubsubctl status` asks the
 * running daemon what it is doing.
 *
 * A Unix stream socket, mode 0600 (0660 with [control] group). Peers are
 * checked again by their credentials (SO_PEERCRED, SO_PEERGROUPS): root,
 * the daemon's own user, or a process with the group among its groups.
 * One request line, one reply line, then the daemon closes:
 *   -> {"command":"status"}
 *   <- {"ok":true,"status":{...}}      (see mailpubsubctl(8))
 *   <- {"ok":false,"error":"..."}
 * A request is at most CONTROL_MAX_REQUEST bytes and must arrive within
 * CONTROL_TIMEOUT_MS; anything else is refused and the connection closed.
 * Tap details are for root and the daemon's user only: others see the
 * number of active taps. */
#ifndef MAILPUBSUB_CONTROL_H
#define MAILPUBSUB_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <uv.h>

#define CONTROL_MAX_REQUEST 1024
#define CONTROL_TIMEOUT_MS 5000

struct service;
struct imap_client;
struct control;

enum control_command {
	CONTROL_STATUS,
};

/* Parses one request (the line without its newline). Returns 0, or -1
 * with *error_r (static text). Exposed for tests and fuzzing. */
int control_request_parse(const char *line, size_t len,
			  enum control_command *command_r, const char **error_r);

/* Listens on [control] socket; imap (may be NULL) is borrowed and must
 * outlive the control socket. Returns 0, or -1 with *error_r. */
int control_new(uv_loop_t *loop, struct service *service, struct imap_client *imap,
		struct control **control_r, const char **error_r);
/* Closes the socket and every connection; memory goes once libuv closed
 * the handles. Clears *control. */
void control_close(struct control **control);

/* The status object; privileged: with the active taps' details. New
 * reference. */
json_t *control_status(struct control *control, bool privileged);

#endif
