/*
 * rdbrecv: one RDB transfer into a snapshot file (see rdbrecv.h). Pure: the caller hands in
 * bytes and gets a status and a message. No sockets, no libevent, no logging.
 */
#include "rdbrecv.h"

#include <stdio.h>
#include <string.h>

int rdbrecv_preamble(const char *line, size_t len, struct resp_rdb_preamble *pre, char *err,
                     size_t errlen)
{
    char e[RESP_ERR_LEN];
    if (line[0] != '-' && resp_parse_rdb_preamble(line, len, pre, e, sizeof(e)) == 0)
        return 0;
    char sample[128];
    resp_escape(line, len, sample, sizeof(sample));
    snprintf(err, errlen, "bad RDB preamble \"%s\"", sample);
    return -1;
}

int rdbrecv_begin(struct rdbrecv *r, const struct resp_rdb_preamble *pre, const char *dir,
                  const char *tag, const char *replid, int64_t offset, char *err, size_t errlen)
{
    struct snapshot *snap = snapshot_new(dir, tag, replid, offset, err, errlen);
    if (!snap)
        return -1;
    snapshot_free(r->snap);
    r->snap = snap;
    r->eof_format = pre->eof_format;
    r->size = pre->eof_format ? -1 : pre->size;
    r->got = 0;
    r->done = false;
    r->drop = 0;
    r->fmt = (struct compat_rdb){0};
    r->probing = false;
    if (pre->eof_format)
        resp_eofmark_init(&r->eof, pre->mark);
    return 0;
}

/* The RDB's first bytes: "REDIS0nnn" or "VALKEYnnn" (compat.h); the writer's version from
 * its aux fields if up does not know it. 0, or -1 when it is not an RDB. */
static int head(struct rdbrecv *r, const char *p, size_t n, struct compat_identity *up,
                bool *learned)
{
    size_t have = (size_t)r->got;
    size_t k = n < COMPAT_MAGIC_LEN - have ? n : COMPAT_MAGIC_LEN - have;
    memcpy(r->head + have, p, k);
    int rc = compat_rdb_parse(r->head, have + k, &r->fmt);
    if (rc < 0 || (rc == 0 && r->done && have + n < COMPAT_MAGIC_LEN))
        return -1;
    enum compat_server srv;
    int ver;
    if (rc == 1 && have == 0 && up->server == COMPAT_UNKNOWN &&
        compat_rdb_writer(p, n, &srv, &ver) == 1) {
        up->server = srv;
        compat_version_format(ver, up->server_version, sizeof(up->server_version));
        snprintf(up->redis_version, sizeof(up->redis_version), "%s",
                 srv == COMPAT_VALKEY ? "7.2.4" : up->server_version);
        snprintf(up->server_name, sizeof(up->server_name), "%s",
                 srv == COMPAT_VALKEY ? "valkey" : "");
        *learned = true;
    }
    return 0;
}

ssize_t rdbrecv_feed(struct rdbrecv *r, const char *buf, size_t len, struct compat_identity *up,
                     bool *learned, char *err, size_t errlen)
{
    size_t n = len;
    if (r->eof_format) {
        ssize_t end = resp_eofmark_feed(&r->eof, buf, n);
        if (end >= 0) {
            n = (size_t)end;
            r->done = true;
            r->drop = RESP_EOFMARK_LEN;
        }
    } else {
        int64_t left = r->size - r->got;
        if ((int64_t)n >= left) {
            n = (size_t)left;
            r->done = true;
        }
    }
    /* A payload that does not open with the RDB magic is not an RDB: never serve it. (The
     * rest is checked against its CRC-64 trailer by snapshot_finish.) */
    if (r->got < COMPAT_MAGIC_LEN && head(r, buf, n, up, learned) != 0) {
        snprintf(err, errlen, "payload is not an RDB (bad magic)");
        return -1;
    }
    if (snapshot_write(r->snap, buf, n, err, errlen) != 0)
        return -1;
    r->got += (int64_t)n;
    return (ssize_t)n;
}

int rdbrecv_finish(struct rdbrecv *r, bool probe, char *err, size_t errlen)
{
    if (snapshot_finish(r->snap, r->drop, err, errlen) != 0)
        return -1;
    if (probe && r->eof_format && r->snap->verdict == RDB_UNCHECKED) {
        r->probing = true;
        resp_stream_init(&r->probe);
        r->probed = 0;
    }
    return 0;
}

size_t rdbrecv_probe_want(const struct rdbrecv *r)
{
    if (r->probe.commands > 0 || r->probed >= RDBRECV_PROBE_MAX_BYTES)
        return 0;
    return RDBRECV_PROBE_MAX_BYTES - r->probed;
}

int rdbrecv_probe(struct rdbrecv *r, const char *buf, size_t len, char *err, size_t errlen)
{
    char e[RESP_ERR_LEN];
    bool getack; /* the scanner stops after each GETACK: a whole command all the same */
    ssize_t k = resp_stream_scan(&r->probe, buf, len, &getack, e, sizeof(e));
    if (k < 0) {
        snprintf(err, errlen,
                 "the stream after an unchecked diskless RDB does not parse (%s): the RDB is "
                 "discarded",
                 e);
        return -1;
    }
    r->probed += (size_t)k;
    return 0;
}

const struct snapshot *rdbrecv_filling(const struct rdbrecv *r)
{
    return r->probing ? NULL : r->snap;
}

int64_t rdbrecv_servable(const struct rdbrecv *r)
{
    if (!r->snap || r->probing)
        return 0;
    int64_t held = r->eof_format && !r->done ? RESP_EOFMARK_LEN - 1 : 0;
    return r->snap->size > held ? r->snap->size - held : 0;
}

struct snapshot *rdbrecv_take(struct rdbrecv *r)
{
    struct snapshot *snap = r->snap;
    r->snap = NULL;
    r->probing = false;
    return snap;
}

void rdbrecv_abort(struct rdbrecv *r)
{
    snapshot_free(r->snap);
    r->snap = NULL;
    r->probing = false;
}
