/*
 * metrics: the Prometheus text endpoint (evhttp). Serves GET /metrics with whatever the
 * render callback writes; everything else is 404. Owns the HTTP server only.
 */
#ifndef CASCADE_METRICS_H
#define CASCADE_METRICS_H

#include <stddef.h>

#include "stats.h"

struct event_base;
struct metrics;

typedef void (*metrics_render_cb)(void *ctx, struct sbuf *out);

/* Listen on addr:port. NULL with a message. */
struct metrics *metrics_new(struct event_base *base, const char *addr, int port,
                            metrics_render_cb render, void *ctx, char *err, size_t errlen);
void metrics_free(struct metrics *m);

#endif
