#include "publish/delivery.h"

#include <stdlib.h>
#include <string.h>

#include "authz/authz.h"
#include "publish/item.h"
#include "base/log.h"
#include "publish/publish_service.h"

struct entry {
	struct entry *next;
	struct queue *queue;
	enum { ENTRY_WAITING, ENTRY_SEND, ENTRY_DROP } state;
	bool lenient;            /* DELIVERY_VERIFY: a temporary failure sends */
	size_t len;
	char text[];
};

/* One per subscriber with something waiting. */
struct queue {
	struct queue *next;
	struct delivery *delivery;
	char *jid;
	struct entry *head, *tail;
};

struct delivery {
	struct publish_service *service;
	struct queue *queues;
	size_t pending;
	bool closing;
};

int delivery_new(struct publish_service *service, struct delivery **delivery_r,
		 const char **error_r)
{
	struct delivery *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	d->service = service;
	*delivery_r = d;
	return 0;
}

static struct queue *find_queue(const struct delivery *d, const char *jid)
{
	for (struct queue *q = d->queues; q != NULL; q = q->next) {
		if (strcmp(q->jid, jid) == 0)
			return q;
	}
	return NULL;
}

static void remove_queue(struct delivery *d, struct queue *q)
{
	for (struct queue **p = &d->queues; *p != NULL; p = &(*p)->next) {
		if (*p == q) {
			*p = q->next;
			break;
		}
	}
	free(q->jid);
	free(q);
}

/* Sends the decided entries at the head; frees the queue once empty. */
static void flush(struct queue *q)
{
	struct delivery *d = q->delivery;

	while (q->head != NULL && q->head->state != ENTRY_WAITING) {
		struct entry *e = q->head;

		q->head = e->next;
		if (e->state == ENTRY_SEND && !d->closing &&
		    component_send_raw(d->service->component, e->text, e->len) == 0)
			d->service->stats.notifications++;
		free(e);
	}
	if (q->head == NULL) {
		q->tail = NULL;
		remove_queue(d, q);
	}
}

static void decided(void *context, enum authz_result result)
{
	struct entry *e = context;
	struct queue *q = e->queue;

	q->delivery->pending--;
	e->state = result == AUTHZ_GRANTED ||
		   (result == AUTHZ_TEMPFAIL && e->lenient) ? ENTRY_SEND : ENTRY_DROP;
	if (q->delivery->closing) {
		/* delivery_free left the queue to us */
		bool last = q->delivery->pending == 0;
		struct delivery *d = q->delivery;

		flush(q);
		if (last && d->queues == NULL)
			free(d);
		return;
	}
	flush(q);
}

void delivery_send(struct delivery *d, const char *jid, const char *text,
		   size_t len, enum delivery_check mode, const char *account,
		   const char *node)
{
	struct queue *q = find_queue(d, jid);
	struct entry *e;
	bool check = mode == DELIVERY_CHECK || mode == DELIVERY_VERIFY;

	if (item_message_is_notice(text, len))
		d->service->stats.notices++;

	if (mode == DELIVERY_CACHED) {
		if (authz_cached(d->service->authz, jid, account, node) != AUTHZ_GRANTED)
			return;
		mode = DELIVERY_NOW;
	}

	if (q == NULL && !check) {
		if (component_send_raw(d->service->component, text, len) == 0)
			d->service->stats.notifications++;
		return;
	}
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return;
	e->next = NULL;
	e->len = len;
	memcpy(e->text, text, len);
	e->text[len] = '\0';   /* component_send_raw wants a C string */
	e->state = check ? ENTRY_WAITING : ENTRY_SEND;
	e->lenient = mode == DELIVERY_VERIFY;
	if (q == NULL) {
		q = calloc(1, sizeof(*q));
		if (q == NULL || (q->jid = strdup(jid)) == NULL) {
			free(q);
			free(e);
			return;
		}
		q->delivery = d;
		q->next = d->queues;
		d->queues = q;
	}
	e->queue = q;
	if (q->tail != NULL)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	if (!check) {
		flush(q);
		return;
	}
	d->pending++;
	/* may answer at once (cached): then flush runs before we return */
	authz_check(d->service->authz, jid, account, node, decided, e);
}

bool delivery_waiting(const struct delivery *d, const char *jid)
{
	return find_queue(d, jid) != NULL;
}

size_t delivery_pending(const struct delivery *d)
{
	return d->pending;
}

void delivery_free(struct delivery **delivery)
{
	struct delivery *d = *delivery;

	if (d == NULL)
		return;
	*delivery = NULL;
	if (d->pending > 0) {
		/* the answers still come (imap_client_close answers them);
		 * the last one frees what is left */
		d->closing = true;
		return;
	}
	while (d->queues != NULL) {
		struct queue *q = d->queues;

		while (q->head != NULL) {
			struct entry *e = q->head;

			q->head = e->next;
			free(e);
		}
		remove_queue(d, q);
	}
	free(d);
}
