/*
 * stats: counters to INFO text. The table in stats.h is the only list of counters.
 */
#include "stats.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reserve(struct sbuf *s, size_t more)
{
    if (s->len + more + 1 <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < s->len + more + 1)
        cap *= 2;
    char *nb = realloc(s->buf, cap);
    if (!nb)
        abort();
    s->buf = nb;
    s->cap = cap;
}

void sbuf_append(struct sbuf *s, const char *data, size_t len)
{
    reserve(s, len);
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
}

void sbuf_printf(struct sbuf *s, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        sbuf_append(s, tmp, (size_t)n);
        return;
    }
    reserve(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void sbuf_free(struct sbuf *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

void stats_info(const struct stats *st, struct sbuf *out)
{
#define STATS_LINE(name, prom, help) sbuf_printf(out, #name ":%" PRId64 "\r\n", st->name);
    STATS_COUNTERS(STATS_LINE)
#undef STATS_LINE
}

void stats_metrics(const struct stats *st, struct sbuf *out)
{
#define STATS_METRIC(name, prom, help)                                                             \
    sbuf_printf(out,                                                                               \
                "# HELP cascade_" prom "_total " help "\n# TYPE cascade_" prom                     \
                "_total counter\ncascade_" prom "_total %" PRId64 "\n",                            \
                st->name);
    STATS_COUNTERS(STATS_METRIC)
#undef STATS_METRIC
}

void stats_human_bytes(int64_t n, char *out, size_t len)
{
    const char *units = "BKMGTP";
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, len, "%" PRId64 "B", n);
    else
        snprintf(out, len, "%.2f%c", v, units[u]);
}
