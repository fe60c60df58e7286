/* SIGHUP: the configuration file is read again and the options that can
 * change while running (LIVE in src/base/config.c; mailpubsub.conf(5) marks
 * them) are applied; a changed option that needs a restart is logged and
 * keeps its running value. A file that does not load is logged and the
 * running configuration stays as it was. */
#ifndef MAILPUBSUB_RELOAD_H
#define MAILPUBSUB_RELOAD_H

#include "base/config.h"

struct service;

/* live is the configuration service runs on (service->config); path the
 * file it came from. Returns -1 when the file was refused. */
int reload_config(struct service *service, struct config *live, const char *path);

#endif
