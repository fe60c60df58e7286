#include "imap/imap_conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "imap/imap_error.h"
#include "base/log.h"

#define STREAM_BUFFER 8192

static double ms_since(uint64_t start_ns)
{
	return (double)(uv_hrtime() - start_ns) / 1e6;
}

int imap_conn_init(struct imap_conn *s, struct imap_peer *peer, const char *key,
		      const atomic_bool *aborting)
{
	memset(s, 0, sizeof(*s));
	s->key = strdup(key);
	if (s->key == NULL)
		return -1;
	s->peer = peer;
	s->aborting = aborting;
	return 0;
}

void imap_conn_clear(struct imap_conn *s)
{
	imap_namespaces_clear(&s->ns);
	free(s->key);
	s->key = NULL;
}

void imap_conn_logout(struct imap_conn *s, unsigned timeout_ms)
{
	uint64_t t0 = uv_hrtime();
	int rc;

	imap_stream_set_deadline(s->stream, timeout_ms);
	rc = mailimap_logout(s->imap);
	imap_conn_log(s, "LOGOUT", NULL, rc, t0);
}

const char *imap_conn_self(const struct imap_conn *s)
{
	return s->key[0] != '\0' ? s->key : s->peer->admin_user;
}

void imap_conn_log(const struct imap_conn *s, const char *cmd, const char *arg,
		      int r, uint64_t start)
{
	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	log_debug("imap[%s%s%s]: %s%s%s: %s%s%s (%.2f ms)", s->peer->admin_user,
		  s->key[0] != '\0' ? " as " : "", s->key, cmd,
		  arg != NULL ? " " : "", arg != NULL ? arg : "",
		  r == MAILIMAP_NO_ERROR || r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED ||
		  r == MAILIMAP_NO_ERROR_AUTHENTICATED ? "OK" : "failed",
		  s->imap != NULL && s->imap->imap_response != NULL ? " " : "",
		  s->imap != NULL && s->imap->imap_response != NULL ? s->imap->imap_response : "",
		  ms_since(start));
}

void imap_conn_disconnect(struct imap_conn *s)
{
	struct imap_stream *c = s->stream;

	if (s->imap != NULL) {
		/* mailimap_free() sends LOGOUT: on a connection we give up on,
		 * let it fail at once */
		if (c != NULL)
			c->deadline = 0;
		mailimap_free(s->imap);
		s->imap = NULL;
	}
	if (c != NULL) {
		c->broken = true;
		imap_stream_close(c);
		uv_mutex_lock(c->fd_lock);
		s->stream = NULL;
		uv_mutex_unlock(c->fd_lock);
		free(c);
	}
	imap_namespaces_clear(&s->ns);
	s->condstore = false;
}

static void ns_take(struct imap_ns *dst, struct mailimap_namespace_item *item)
{
	struct mailimap_namespace_info *info;

	if (item == NULL || clist_begin(item->ns_data_list) == NULL)
		return;
	info = clist_content(clist_begin(item->ns_data_list));
	dst->prefix = strdup(info->ns_prefix);
	dst->sep = info->ns_delimiter;
}

/* NAMESPACE, or the delimiter from LIST "" "" on servers without it. */
static int conn_namespaces(struct imap_conn *s, char *err, size_t errlen)
{
	struct imap_peer *cl = s->peer;
	uint64_t t0 = uv_hrtime();
	int r;

	imap_stream_set_deadline(s->stream, cl->timeout_ms);
	if (mailimap_has_namespace(s->imap)) {
		struct mailimap_namespace_data *nsd = NULL;

		r = mailimap_namespace(s->imap, &nsd);
		imap_conn_log(s, "NAMESPACE", NULL, r, t0);
		if (r == MAILIMAP_NO_ERROR) {
			ns_take(&s->ns.personal, nsd->ns_personal);
			ns_take(&s->ns.other, nsd->ns_other);
			ns_take(&s->ns.shared, nsd->ns_shared);
			s->ns.other_inbox_named = cl->other_inbox_named;
			mailimap_namespace_data_free(nsd);
			return 0;
		}
		if (nsd != NULL)
			mailimap_namespace_data_free(nsd);
		if (r != MAILIMAP_ERROR_EXTENSION)
			goto broken;
	} else {
		clist *list = NULL;

		r = mailimap_list(s->imap, "", "", &list);
		imap_conn_log(s, "LIST", "\"\" \"\"", r, t0);
		if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_LIST)
			goto broken;
		s->ns.personal.prefix = strdup("");
		if (list != NULL && clist_begin(list) != NULL)
			s->ns.personal.sep = ((struct mailimap_mailbox_list *)
					      clist_content(clist_begin(list)))->mb_delimiter;
		if (list != NULL)
			mailimap_list_result_free(list);
		/* other users' and shared namespaces stay unknown: calls
		 * needing them answer NO */
		return 0;
	}
	s->ns.personal.prefix = strdup("");
	return 0;
broken:
	imap_error_set(err, errlen, "NAMESPACE failed: %s",
		       s->stream->error[0] ? s->stream->error : "protocol error");
	return -1;
}

int imap_conn_connect(struct imap_conn *s, enum imap_fail *fail_r, char *error,
			 size_t errlen)
{
	struct imap_peer *cl = s->peer;
	struct imap_stream *c = imap_stream_new(&cl->fd_lock, s->aborting != NULL ?
						s->aborting : &cl->aborting);
	mailstream_low *low;
	mailstream *stream;
	uint64_t t0;
	int r;

	*fail_r = IMAP_FAIL_CONNECT;
	if (c == NULL) {
		imap_error_set(error, errlen, "out of memory");
		return -1;
	}
	uv_mutex_lock(&cl->fd_lock);
	s->stream = c;
	uv_mutex_unlock(&cl->fd_lock);

	t0 = uv_hrtime();
	imap_stream_set_deadline(c, cl->timeout_ms);
	if (imap_stream_connect(c, cl->host, cl->port, error, errlen) < 0)
		goto fail;
	log_debug("imap: connected to %s port %u (%.2f ms)", cl->host, cl->port, ms_since(t0));
	if (cl->tls == IMAP_TLS_IMAPS) {
		t0 = uv_hrtime();
		if (imap_stream_tls(c, cl->ssl_ctx, cl->host, cl->verify, cl->ca_file != NULL,
				    error, errlen) < 0)
			goto fail;
		log_debug("imap: TLS %s with %s (%.2f ms)", SSL_get_version(c->ssl),
			  cl->host, ms_since(t0));
	}
	low = imap_stream_low(c);
	stream = low != NULL ? mailstream_new(low, STREAM_BUFFER) : NULL;
	if (stream == NULL) {
		free(low);
		imap_error_set(error, errlen, "out of memory");
		goto fail;
	}
	s->imap = mailimap_new(0, NULL);
	if (s->imap == NULL) {
		mailstream_close(stream);
		imap_error_set(error, errlen, "out of memory");
		goto fail;
	}
	/* our driver enforces the deadline; this keeps libetpan consistent */
	mailimap_set_timeout(s->imap, (cl->timeout_ms + 999) / 1000);

	t0 = uv_hrtime();
	r = mailimap_connect(s->imap, stream);
	imap_conn_log(s, "greeting", NULL, r, t0);
	if (r == MAILIMAP_NO_ERROR_AUTHENTICATED) {
		imap_error_set(error, errlen,
			 "%s pre-authenticated the connection: cannot choose an identity", cl->host);
		goto fail;
	}
	if (r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
		imap_error_set(error, errlen, "no IMAP greeting from %s: %s",
			 cl->host, c->error[0] ? c->error :
			 r == MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION ? "server said BYE" :
			 "protocol error");
		goto fail;
	}

	if (cl->tls == IMAP_TLS_STARTTLS) {
		mailstream_low *plain = mailstream_get_low(stream), *tls;

		t0 = uv_hrtime();
		imap_stream_set_deadline(c, cl->timeout_ms);
		r = mailimap_starttls(s->imap);
		imap_conn_log(s, "STARTTLS", NULL, r, t0);
		if (r != MAILIMAP_NO_ERROR) {
			imap_error_set(error, errlen, "STARTTLS with %s failed: %s",
				 cl->host, c->error[0] ? c->error : s->imap->imap_response ?
				 s->imap->imap_response : "refused");
			goto fail;
		}
		/* anything already buffered was sent before TLS and could be
		 * injected by a man in the middle (CVE-2020-15953) */
		if (stream->read_buffer_len != 0) {
			imap_error_set(error, errlen,
				 "%s sent unencrypted data after STARTTLS", cl->host);
			goto fail;
		}
		t0 = uv_hrtime();
		if (imap_stream_tls(c, cl->ssl_ctx, cl->host, cl->verify, cl->ca_file != NULL,
				    error, errlen) < 0)
			goto fail;
		tls = imap_stream_low(c);
		if (tls == NULL) {
			imap_error_set(error, errlen, "out of memory");
			goto fail;
		}
		/* as mailimap_socket_starttls() does for libetpan's own TLS */
		mailstream_low_free(plain);
		mailstream_set_low(stream, tls);
		log_debug("imap: TLS %s with %s after STARTTLS (%.2f ms)",
			  SSL_get_version(c->ssl), cl->host, ms_since(t0));
	}

	/* forget the greeting's capabilities: they change with TLS and
	 * authentication; the AUTHENTICATE reply usually brings new ones */
	if (s->imap->imap_connection_info != NULL &&
	    s->imap->imap_connection_info->imap_capability != NULL) {
		mailimap_capability_data_free(s->imap->imap_connection_info->imap_capability);
		s->imap->imap_connection_info->imap_capability = NULL;
	}
	t0 = uv_hrtime();
	imap_stream_set_deadline(c, cl->timeout_ms);
	/* The server is up and talking. From here on a failure is about the
	 * identity we name: Cyrus answers a name it cannot take only after
	 * failedloginpause (3 s) and drops a cyr_deny'd identity with BYE on
	 * its first command. None of it may hold back the other identities. */
	if (s->key[0] != '\0')
		*fail_r = IMAP_FAIL_AUTHZ;
	/* login = SASL authorization id ("" = none), auth_name = who we are */
	r = mailimap_authenticate(s->imap, cl->mechanism, cl->host, NULL, NULL,
				  s->key, cl->admin_user, cl->password, NULL);
	imap_conn_log(s, "AUTHENTICATE", cl->mechanism, r, t0);
	if (r != MAILIMAP_NO_ERROR) {
		imap_error_set(error, errlen,
			 "AUTHENTICATE %s as %s%s%s at %s failed: %s", cl->mechanism,
			 cl->admin_user, s->key[0] != '\0' ? " for " : "", s->key, cl->host,
			 c->error[0] ? c->error : s->imap->imap_response != NULL &&
			 s->imap->imap_response[0] != '\0' ? s->imap->imap_response :
			 "rejected (or mechanism not available)");
		goto fail;
	}
	if (s->imap->imap_connection_info == NULL ||
	    s->imap->imap_connection_info->imap_capability == NULL) {
		struct mailimap_capability_data *caps = NULL;

		t0 = uv_hrtime();
		imap_stream_set_deadline(c, cl->timeout_ms);
		r = mailimap_capability(s->imap, &caps);
		imap_conn_log(s, "CAPABILITY", NULL, r, t0);
		if (caps != NULL)
			mailimap_capability_data_free(caps);
		if (r != MAILIMAP_NO_ERROR) {
			imap_error_set(error, errlen, "CAPABILITY failed: %s",
				 c->error[0] ? c->error : "protocol error");
			goto fail;
		}
	}
	s->condstore = mailimap_has_condstore(s->imap) != 0;
	if (conn_namespaces(s, error, errlen) < 0)
		goto fail;
	*fail_r = IMAP_FAIL_NONE;
	return 0;
fail:
	imap_conn_disconnect(s);
	return -1;
}
