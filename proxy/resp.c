/*
 * resp: RESP framing without allocation. See resp.h for the contract of each function.
 * Error texts follow Redis' wording ("Protocol error: ...") so clients recognise them.
 */
#include "resp.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Strict decimal: optional '-', 1..19 digits, nothing else. */
static int parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n || n - i > 19)
        return -1;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* Finds "\r\n" in buf[from..limit). Returns the index of '\r' or -1. */
static ssize_t find_crlf(const char *buf, size_t from, size_t limit)
{
    for (size_t i = from; i + 1 < limit; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n')
            return (ssize_t)i;
    }
    return -1;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

static ssize_t parse_inline(const char *buf, size_t len, const struct resp_limits *lim,
                            struct resp_command *cmd, char *err, size_t errlen)
{
    const char *nl = memchr(buf, '\n', min_sz(len, lim->max_inline_bytes));
    if (!nl) {
        if (len >= lim->max_inline_bytes) {
            set_err(err, errlen, "Protocol error: too big inline request");
            return -1;
        }
        return 0;
    }
    size_t line_len = (size_t)(nl - buf);
    size_t end = line_len;
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    cmd->argc = 0;
    cmd->inline_form = true;
    size_t i = 0;
    while (i < end) {
        while (i < end && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        if (i == end)
            break;
        size_t start = i;
        while (i < end && buf[i] != ' ' && buf[i] != '\t')
            i++;
        if (cmd->argc == lim->max_argc || cmd->argc == RESP_MAX_ARGC) {
            set_err(err, errlen, "Protocol error: too many arguments in inline request");
            return -1;
        }
        cmd->argv[cmd->argc] = buf + start;
        cmd->argl[cmd->argc] = i - start;
        cmd->argc++;
    }
    return (ssize_t)(line_len + 1);
}

/* One argument, "$<len>\r\n<bytes>\r\n", at buf[pos] (pos < len) into *arg and *argl: the
 * index just past it, 0 if it is not all here yet, or -1 with err. */
static ssize_t parse_bulk(const char *buf, size_t len, size_t pos, const struct resp_limits *lim,
                          const char **arg, size_t *argl, char *err, size_t errlen)
{
    if (buf[pos] != '$') {
        char msg[64];
        unsigned char c = (unsigned char)buf[pos];
        if (c >= 32 && c < 127)
            snprintf(msg, sizeof(msg), "Protocol error: expected '$', got '%c'", c);
        else
            snprintf(msg, sizeof(msg), "Protocol error: expected '$', got byte 0x%02x", c);
        set_err(err, errlen, msg);
        return -1;
    }
    size_t hdr_end = min_sz(len, pos + 32);
    ssize_t cr = find_crlf(buf, pos + 1, hdr_end);
    if (cr < 0) {
        if (len >= pos + 32) {
            set_err(err, errlen, "Protocol error: invalid bulk length");
            return -1;
        }
        return 0;
    }
    int64_t blen;
    if (lim->unauthenticated && parse_i64(buf + pos + 1, (size_t)cr - pos - 1, &blen) == 0 &&
        blen > RESP_UNAUTH_MAX_BULK) {
        set_err(err, errlen, "Protocol error: unauthenticated bulk length");
        return -1;
    }
    if (parse_i64(buf + pos + 1, (size_t)cr - pos - 1, &blen) != 0 || blen < 0 ||
        (uint64_t)blen > lim->max_bulk_bytes) {
        set_err(err, errlen, "Protocol error: invalid bulk length");
        return -1;
    }
    pos = (size_t)cr + 2;
    if (len - pos < (size_t)blen + 2)
        return 0;
    if (buf[pos + (size_t)blen] != '\r' || buf[pos + (size_t)blen + 1] != '\n') {
        set_err(err, errlen, "Protocol error: bulk not terminated by CRLF");
        return -1;
    }
    *arg = buf + pos;
    *argl = (size_t)blen;
    return (ssize_t)(pos + (size_t)blen + 2);
}

static ssize_t parse_multibulk(const char *buf, size_t len, const struct resp_limits *lim,
                               struct resp_command *cmd, char *err, size_t errlen)
{
    size_t hdr_limit = min_sz(len, lim->max_inline_bytes);
    ssize_t cr = find_crlf(buf, 1, hdr_limit);
    if (cr < 0) {
        if (len >= lim->max_inline_bytes) {
            set_err(err, errlen, "Protocol error: too big mbulk count string");
            return -1;
        }
        return 0;
    }
    int64_t count;
    if (parse_i64(buf + 1, (size_t)cr - 1, &count) != 0) {
        set_err(err, errlen, "Protocol error: invalid multibulk length");
        return -1;
    }
    /* Redis (networking.c) answers these two before AUTH, whatever its other limits. */
    if (lim->unauthenticated && count > RESP_UNAUTH_MAX_ARGC) {
        set_err(err, errlen, "Protocol error: unauthenticated multibulk length");
        return -1;
    }
    size_t max_argc = min_sz(lim->max_argc, RESP_MAX_ARGC);
    if (count > (int64_t)max_argc) {
        set_err(err, errlen, "Protocol error: invalid multibulk length");
        return -1;
    }
    size_t pos = (size_t)cr + 2;
    cmd->argc = 0;
    cmd->inline_form = false;
    for (int64_t a = 0; a < count; a++) {
        if (pos >= len)
            return 0;
        ssize_t next = parse_bulk(buf, len, pos, lim, &cmd->argv[cmd->argc], &cmd->argl[cmd->argc],
                                  err, errlen);
        if (next <= 0)
            return next;
        cmd->argc++;
        pos = (size_t)next;
    }
    return (ssize_t)pos;
}

ssize_t resp_parse_command(const char *buf, size_t len, const struct resp_limits *lim,
                           struct resp_command *cmd, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    if (buf[0] == '*')
        return parse_multibulk(buf, len, lim, cmd, err, errlen);
    return parse_inline(buf, len, lim, cmd, err, errlen);
}

bool resp_arg_is(const struct resp_command *cmd, size_t i, const char *s)
{
    if (i >= cmd->argc)
        return false;
    size_t n = strlen(s);
    return cmd->argl[i] == n && strncasecmp(cmd->argv[i], s, n) == 0;
}

int resp_arg_int64(const struct resp_command *cmd, size_t i, int64_t *out)
{
    if (i >= cmd->argc)
        return -1;
    return parse_i64(cmd->argv[i], cmd->argl[i], out);
}

/* Stream scanner states, in the order a command is read. */
enum {
    STREAM_MB_HEADER = 0, /* collecting "*<count>\r\n" */
    STREAM_BULK_HEADER,   /* collecting "$<len>\r\n" */
    STREAM_BULK_BODY,     /* skipping payload bytes */
    STREAM_BULK_CR,       /* expecting '\r' after the payload */
    STREAM_BULK_LF,       /* expecting '\n' after the payload */
};

void resp_stream_init(struct resp_stream *s)
{
    memset(s, 0, sizeof(*s));
    s->state = STREAM_MB_HEADER;
}

bool resp_stream_at_boundary(const struct resp_stream *s)
{
    return s->state == STREAM_MB_HEADER && s->line_len == 0;
}

static bool head_is(const struct resp_stream *s, int i, const char *word)
{
    size_t n = strlen(word);
    return s->head_len[i] == n && strncasecmp(s->head[i], word, n) == 0;
}

/* Called when a command ends; true if it was REPLCONF GETACK. */
static bool stream_command_done(struct resp_stream *s)
{
    bool getack = s->argc >= 2 && head_is(s, 0, "REPLCONF") && head_is(s, 1, "GETACK");
    s->commands++;
    s->state = STREAM_MB_HEADER;
    s->argc = s->argi = s->args_left = 0;
    s->head_len[0] = s->head_len[1] = 0;
    return getack;
}

/* A header line's value v is known and the line ends before buf[i]: take the next state. */
static int stream_header_done(struct resp_stream *s, int64_t v, size_t i, char *err, size_t errlen)
{
    if (s->state == STREAM_MB_HEADER) {
        if (v <= 0) { /* empty command: nothing to do */
            s->last_boundary = (ssize_t)i;
            return 0;
        }
        if (v > RESP_STREAM_MAX_ARGC) {
            set_err(err, errlen, "multibulk length beyond what a master sends");
            return -1;
        }
        s->argc = s->args_left = v;
        s->argi = 0;
        s->state = STREAM_BULK_HEADER;
        return 0;
    }
    if (v < 0) {
        set_err(err, errlen, "negative bulk length in stream");
        return -1;
    }
    if (v > RESP_STREAM_MAX_BULK) {
        set_err(err, errlen, "bulk length beyond what a master sends");
        return -1;
    }
    /* Only the first two arguments can spell REPLCONF GETACK: one of another length never
     * matches, and is not copied. */
    if ((s->argi == 0 && v != 8) || (s->argi == 1 && v != 6))
        s->head_len[s->argi] = sizeof(s->head[0]) + 1;
    s->bulk_left = v;
    s->state = STREAM_BULK_BODY;
    return 0;
}

/* An argument's CRLF ended before buf[i]. True if that ended a REPLCONF GETACK. */
static bool stream_arg_done(struct resp_stream *s, size_t i)
{
    s->argi++;
    if (--s->args_left > 0) {
        s->state = STREAM_BULK_HEADER;
        return false;
    }
    s->last_boundary = (ssize_t)i;
    return stream_command_done(s);
}

/* Keeps what GETACK detection needs of payload bytes buf[0..n) of the current argument. Only
 * arguments 0 and 1 of the lengths of REPLCONF and GETACK are kept, so they always fit;
 * stream_header_done marks the others (head_len past the room), which are never copied. */
static void stream_keep_head(struct resp_stream *s, const char *buf, size_t n)
{
    if (s->argi >= 2 || s->head_len[s->argi] > sizeof(s->head[0]))
        return;
    size_t *hl = &s->head_len[s->argi];
    assert(*hl + n <= sizeof(s->head[0]));
    memcpy(s->head[s->argi] + *hl, buf, n);
    *hl += n;
}

/*
 * The common case, a whole "<lead><digits>\r\n" line at buf[i], parsed in place. Returns the
 * index just past it, or 0 when the line is cut by the end of buf or is anything but 1 to 18
 * plain digits: then the byte-wise path below decides, with its own errors.
 */
static size_t stream_quick_header(const char *buf, size_t i, size_t len, int64_t *v)
{
    size_t j = i + 1;
    size_t stop = len - j > 18 ? j + 18 : len;
    int64_t x = 0;
    while (j < stop && (unsigned char)(buf[j] - '0') < 10)
        x = x * 10 + (buf[j++] - '0');
    if (j == i + 1 || j + 2 > len || buf[j] != '\r' || buf[j + 1] != '\n')
        return 0;
    *v = x;
    return j + 2;
}

/*
 * The common case: a whole command of plain headers at buf[i], a command boundary. Walks it
 * header to header without touching the scanner's state until it is done. Returns the index
 * just past it, or 0 for anything else (cut by the end of buf, an empty command, an odd or
 * bad header): the state machine below then takes it byte by byte, with its own errors.
 */
static size_t stream_quick_command(struct resp_stream *s, const char *buf, size_t i, size_t len,
                                   bool *getack)
{
    int64_t argc;
    size_t j = stream_quick_header(buf, i, len, &argc);
    if (!j || argc <= 0)
        return 0;
    bool ga = argc >= 2;
    for (int64_t a = 0; a < argc; a++) {
        int64_t v;
        size_t k = j < len && buf[j] == '$' ? stream_quick_header(buf, j, len, &v) : 0;
        if (!k || (uint64_t)v + 2 > len - k || buf[k + v] != '\r' || buf[k + v + 1] != '\n')
            return 0;
        if (a == 0)
            ga = ga && v == 8 && strncasecmp(buf + k, "REPLCONF", 8) == 0;
        else if (a == 1)
            ga = ga && v == 6 && strncasecmp(buf + k, "GETACK", 6) == 0;
        j = k + (size_t)v + 2;
    }
    s->commands++;
    s->last_boundary = (ssize_t)j;
    *getack = ga;
    return j;
}

/*
 * The steps of resp_stream_scan, one per state, each at buf[*i] (*i < len): they move *i past
 * what they took and return 0 to go on, 1 when a REPLCONF GETACK just ended (*getack set, *i
 * just past it), or -1 on a protocol error.
 */

/* A header line ("*<count>\r\n" or "$<len>\r\n"): a whole command or line at once when it is
 * all here (the common case), else one byte into s->line. */
static int stream_step_header(struct resp_stream *s, const char *buf, size_t len, size_t *i,
                              bool *getack, char *err, size_t errlen)
{
    if (s->line_len == 0) {
        char want = s->state == STREAM_MB_HEADER ? '*' : '$';
        if (want == '*' && buf[*i] == '*') {
            size_t end = stream_quick_command(s, buf, *i, len, getack);
            if (end) {
                *i = end;
                return *getack ? 1 : 0;
            }
        }
        if (buf[*i] != want) {
            set_err(err, errlen, want == '*' ? "expected '*' at command start" : "expected '$'");
            return -1;
        }
        int64_t v;
        size_t next = stream_quick_header(buf, *i, len, &v);
        if (next) {
            *i = next;
            return stream_header_done(s, v, *i, err, errlen);
        }
    }
    char c = buf[(*i)++];
    if (c == '\n') {
        if (s->line_len < 2 || s->line[s->line_len - 1] != '\r') {
            set_err(err, errlen, "header line not terminated by CRLF");
            return -1;
        }
        int64_t v;
        if (parse_i64(s->line + 1, s->line_len - 2, &v) != 0) {
            set_err(err, errlen, "bad number in header line");
            return -1;
        }
        s->line_len = 0;
        return stream_header_done(s, v, *i, err, errlen);
    }
    if (s->line_len == sizeof(s->line)) {
        set_err(err, errlen, "header line too long");
        return -1;
    }
    s->line[s->line_len++] = c;
    return 0;
}

/* An argument's payload: all of it and its CRLF at once when they are here, else what is. */
static int stream_step_body(struct resp_stream *s, const char *buf, size_t len, size_t *i,
                            bool *getack, char *err, size_t errlen)
{
    if ((uint64_t)s->bulk_left + 2 <= len - *i) { /* payload and CRLF all here */
        size_t n = (size_t)s->bulk_left;
        stream_keep_head(s, buf + *i, n);
        *i += n;
        s->bulk_left = 0;
        if (buf[*i] != '\r' || buf[*i + 1] != '\n') {
            set_err(err, errlen, "bulk not terminated by CRLF");
            return -1;
        }
        *i += 2;
        *getack = stream_arg_done(s, *i);
        return *getack ? 1 : 0;
    }
    size_t n = (size_t)s->bulk_left < len - *i ? (size_t)s->bulk_left : len - *i;
    stream_keep_head(s, buf + *i, n);
    *i += n;
    s->bulk_left -= (int64_t)n;
    if (s->bulk_left == 0)
        s->state = STREAM_BULK_CR;
    return 0;
}

/* The CR, then the LF, after a payload that was cut by the end of a read. */
static int stream_step_crlf(struct resp_stream *s, const char *buf, size_t *i, bool *getack,
                            char *err, size_t errlen)
{
    bool cr = s->state == STREAM_BULK_CR;
    if (buf[(*i)++] != (cr ? '\r' : '\n')) {
        set_err(err, errlen, "bulk not terminated by CRLF");
        return -1;
    }
    if (cr) {
        s->state = STREAM_BULK_LF;
        return 0;
    }
    *getack = stream_arg_done(s, *i);
    return *getack ? 1 : 0;
}

ssize_t resp_stream_scan(struct resp_stream *s, const char *buf, size_t len, bool *getack,
                         char *err, size_t errlen)
{
    *getack = false;
    s->last_boundary = resp_stream_at_boundary(s) ? 0 : -1;
    size_t i = 0;
    while (i < len) {
        int rc;
        switch (s->state) {
        case STREAM_MB_HEADER:
        case STREAM_BULK_HEADER:
            rc = stream_step_header(s, buf, len, &i, getack, err, errlen);
            break;
        case STREAM_BULK_BODY:
            rc = stream_step_body(s, buf, len, &i, getack, err, errlen);
            break;
        case STREAM_BULK_CR:
        case STREAM_BULK_LF:
            rc = stream_step_crlf(s, buf, &i, getack, err, errlen);
            break;
        default:
            set_err(err, errlen, "scanner in an impossible state");
            return -1;
        }
        if (rc < 0)
            return -1;
        if (rc > 0)
            return (ssize_t)i;
    }
    return (ssize_t)i;
}

/* Splits "+WORD a b" into up to 3 space-separated fields. Returns the count. */
static int split_line(const char *line, size_t len, const char *f[3], size_t fl[3])
{
    int n = 0;
    size_t i = 0;
    while (i < len && n < 3) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t st = i;
        while (i < len && line[i] != ' ')
            i++;
        f[n] = line + st;
        fl[n] = i - st;
        n++;
    }
    while (i < len && line[i] == ' ')
        i++;
    return i == len ? n : -1; /* -1: more than 3 fields */
}

static bool valid_replid(const char *s, size_t n)
{
    if (n != RESP_REPLID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!ok)
            return false;
    }
    return true;
}

int resp_parse_fullresync(const char *line, size_t len, char replid[RESP_REPLID_LEN + 1],
                          int64_t *offset)
{
    const char *f[3];
    size_t fl[3];
    if (split_line(line, len, f, fl) != 3)
        return -1;
    if (fl[0] != 11 || memcmp(f[0], "+FULLRESYNC", 11) != 0)
        return -1;
    if (!valid_replid(f[1], fl[1]))
        return -1;
    int64_t off;
    if (parse_i64(f[2], fl[2], &off) != 0 || off < 0 || off > RESP_MAX_OFFSET)
        return -1;
    memcpy(replid, f[1], RESP_REPLID_LEN);
    replid[RESP_REPLID_LEN] = '\0';
    *offset = off;
    return 0;
}

int resp_parse_continue(const char *line, size_t len, char replid[RESP_REPLID_LEN + 1])
{
    const char *f[3];
    size_t fl[3];
    int n = split_line(line, len, f, fl);
    if (n < 1 || n > 2 || fl[0] != 9 || memcmp(f[0], "+CONTINUE", 9) != 0)
        return -1;
    replid[0] = '\0';
    if (n == 2) {
        if (!valid_replid(f[1], fl[1]))
            return -1;
        memcpy(replid, f[1], RESP_REPLID_LEN);
        replid[RESP_REPLID_LEN] = '\0';
    }
    return 0;
}

int resp_parse_rdb_preamble(const char *line, size_t len, struct resp_rdb_preamble *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || line[0] != '$') {
        set_err(err, errlen, "RDB preamble does not start with '$'");
        return -1;
    }
    if (len >= 5 && memcmp(line, "$EOF:", 5) == 0) {
        if (len != 5 + RESP_EOFMARK_LEN) {
            set_err(err, errlen, "RDB EOF mark is not 40 bytes");
            return -1;
        }
        out->eof_format = true;
        memcpy(out->mark, line + 5, RESP_EOFMARK_LEN);
        return 0;
    }
    if (parse_i64(line + 1, len - 1, &out->size) != 0 || out->size < 0) {
        set_err(err, errlen, "RDB preamble has a bad length");
        return -1;
    }
    return 0;
}

void resp_eofmark_init(struct resp_eofmark *m, const char mark[RESP_EOFMARK_LEN])
{
    memset(m, 0, sizeof(*m));
    memcpy(m->mark, mark, RESP_EOFMARK_LEN);
}

ssize_t resp_eofmark_feed(struct resp_eofmark *m, const char *buf, size_t len)
{
    const size_t ml = RESP_EOFMARK_LEN;
    if (m->found || len == 0)
        return -1;
    /* A mark that began in earlier chunks: tail holds its first k bytes. */
    for (size_t k = m->tail_len; k > 0; k--) {
        size_t rest = ml - k;
        if (rest > len)
            continue;
        if (memcmp(m->tail + m->tail_len - k, m->mark, k) == 0 &&
            memcmp(buf, m->mark + k, rest) == 0) {
            m->found = true;
            return (ssize_t)rest;
        }
    }
    /* A mark wholly inside this chunk. */
    const char *hit = memmem(buf, len, m->mark, ml);
    if (hit) {
        m->found = true;
        return (ssize_t)(hit - buf) + (ssize_t)ml;
    }
    /* Keep the last ml - 1 bytes of (tail + buf). */
    size_t keep = ml - 1;
    if (len >= keep) {
        memcpy(m->tail, buf + len - keep, keep);
        m->tail_len = keep;
    } else {
        size_t from_tail = min_sz(m->tail_len, keep - len);
        memmove(m->tail, m->tail + m->tail_len - from_tail, from_tail);
        memcpy(m->tail + from_tail, buf, len);
        m->tail_len = from_tail + len;
    }
    return -1;
}

void resp_escape(const char *buf, size_t len, char *out, size_t out_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (out_len == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        char tmp[4];
        size_t n;
        if (c == '\r') {
            tmp[0] = '\\', tmp[1] = 'r', n = 2;
        } else if (c == '\n') {
            tmp[0] = '\\', tmp[1] = 'n', n = 2;
        } else if (c == '\\' || c == '"') {
            tmp[0] = '\\', tmp[1] = (char)c, n = 2;
        } else if (c >= 32 && c < 127) {
            tmp[0] = (char)c, n = 1;
        } else {
            tmp[0] = '\\', tmp[1] = 'x', tmp[2] = hex[c >> 4], tmp[3] = hex[c & 15], n = 4;
        }
        if (o + n >= out_len)
            break;
        memcpy(out + o, tmp, n);
        o += n;
    }
    out[o] = '\0';
}

void resp_random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char buf[64];
    for (size_t done = 0; done < n;) {
        size_t want = n - done < sizeof(buf) ? n - done : sizeof(buf);
        ssize_t got = getrandom(buf, want, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            abort(); /* never a predictable mark */
        for (ssize_t i = 0; i < got; i++)
            out[done++] = hex[buf[i] & 15];
    }
    out[n] = '\0';
}

bool resp_replid_equal(const char *id, size_t len, const char *ours)
{
    return len == RESP_REPLID_LEN && strlen(ours) == RESP_REPLID_LEN &&
           strncasecmp(id, ours, RESP_REPLID_LEN) == 0;
}
