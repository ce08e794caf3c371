/*
 * metrics: see metrics.h. The text (exposition format 0.0.4) is report.c's; this file only
 * serves it.
 */
#include "metrics.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics {
    struct evhttp *http; /* owned */
    metrics_render_cb render;
    void *ctx;
};

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct metrics *m = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET ||
        (strcmp(uri, "/metrics") != 0 && strncmp(uri, "/metrics?", 9) != 0)) {
        evhttp_send_error(req, HTTP_NOTFOUND, "try GET /metrics");
        return;
    }
    struct sbuf text = {0};
    m->render(m->ctx, &text);
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        sbuf_free(&text);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add(body, text.buf ? text.buf : "", text.len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
    sbuf_free(&text);
}

struct metrics *metrics_new(struct event_base *base, const char *addr, int port,
                            metrics_render_cb render, void *ctx, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    m->render = render;
    m->ctx = ctx;
    m->http = evhttp_new(base);
    if (!m->http || evhttp_bind_socket(m->http, addr, (unsigned short)port) != 0) {
        snprintf(err, errlen, "cannot listen for metrics on %s:%d", addr, port);
        metrics_free(m);
        return NULL;
    }
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
    evhttp_set_timeout(m->http, 10);
    evhttp_set_gencb(m->http, request_cb, m);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    if (m->http)
        evhttp_free(m->http);
    free(m);
}
