/* What the daemon's listening sockets share: numeric host:port specs,
 * Unix sockets owned by a group with a mode, and who is at the other end
 * of a Unix connection. */
#ifndef MAILPUBSUB_LISTEN_H
#define MAILPUBSUB_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

/* "127.0.0.1:9498" or "[::1]:9498" (numeric addresses only: no resolver
 * call at start). Returns 0, or -1 with a message in err. */
int listen_parse_hostport(const char *spec, struct sockaddr_storage *ss,
			  char *err, size_t errlen);

/* Removes a socket an earlier run left at path; anything else that is
 * there is not ours to remove (bind then fails and says so). */
void listen_remove_stale(const char *path);

/* Gives the socket at path to group (a name; "" keeps ours: a missing
 * group is logged, not fatal) and sets its mode. Returns 0, or -1 with a
 * message in err when chmod fails. */
int listen_permit(const char *path, const char *group, unsigned mode,
		  char *err, size_t errlen);

/* The peer of a connected Unix stream. Returns 0 or -1. */
int listen_peer(uv_stream_t *stream, uid_t *uid_r, gid_t *gid_r, pid_t *pid_r);

#endif
