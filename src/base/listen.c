#include "base/listen.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

int listen_parse_hostport(const char *spec, struct sockaddr_storage *ss,
			  char *err, size_t errlen)
{
	const char *colon = strrchr(spec, ':');
	char host[256], *end;
	unsigned long port;
	size_t hlen;

	if (colon == NULL || colon == spec || (hlen = (size_t)(colon - spec)) >= sizeof(host)) {
		snprintf(err, errlen, "'%s' is not host:port", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port > 65535) {
		snprintf(err, errlen, "'%s': bad port", spec);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) < 0 &&
	    uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) < 0) {
		snprintf(err, errlen, "'%s': not a numeric address", spec);
		return -1;
	}
	return 0;
}

void listen_remove_stale(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

int listen_permit(const char *path, const char *group, unsigned mode,
		  char *err, size_t errlen)
{
	if (*group != '\0') {
		struct group *gr = getgrnam(group);

		if (gr == NULL || chown(path, (uid_t)-1, gr->gr_gid) < 0)
			log_warn("cannot give %s to group %s", path, group);
	}
	if (chmod(path, mode) < 0) {
		snprintf(err, errlen, "%s: chmod: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int listen_peer(uv_stream_t *stream, uid_t *uid_r, gid_t *gid_r, pid_t *pid_r)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)stream, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	*uid_r = cred.uid;
	*gid_r = cred.gid;
	*pid_r = cred.pid;
	return 0;
}
