/*
 * Fuzz target: the handshake replies of handshake.c, on bytes as an upstream may send them.
 * The input is the start of the link's input for handshake_info_bulk: its answer must not
 * depend on how much more than HANDSHAKE_INFO_HEAD bytes the caller shows, and a whole reply
 * must fit in the input (header and text in bounds, the header ending in CRLF within 16
 * bytes, the text at most HANDSHAKE_INFO_MAX_BYTES). The same bytes, cut at the first NUL as
 * a reply line, go to the PSYNC, PING and REPLCONF readers: a FULLRESYNC has a 40-character
 * replid and an offset >= 0, a CONTINUE is only taken when allowed, every failure says why.
 */
#include "fuzz.h"

#include <string.h>

#include "handshake.h"

static void check_info_bulk(const char *data, size_t size)
{
    size_t head = size < HANDSHAKE_INFO_HEAD ? size : HANDSHAKE_INFO_HEAD;
    size_t skip = 0, len = 0, skip2 = 0, len2 = 0;
    int rc = handshake_info_bulk(data, head, size, &skip, &len);
    FUZZ_CHECK(rc >= -1 && rc <= 1);
    int rc2 = handshake_info_bulk(data, size, size, &skip2, &len2);
    FUZZ_CHECK(rc2 == rc);
    if (rc != 1)
        return;
    FUZZ_CHECK(skip2 == skip && len2 == len);
    FUZZ_CHECK(skip >= 2 && skip <= 18);
    FUZZ_CHECK(data[skip - 2] == '\r' && data[skip - 1] == '\n');
    FUZZ_CHECK(len <= HANDSHAKE_INFO_MAX_BYTES);
    FUZZ_CHECK(skip + len + 2 <= size);
}

static void check_psync(const char *line, bool may_continue, bool asked)
{
    char replid[RESP_REPLID_LEN + 1], why[256];
    int64_t off = -1;
    memset(why, 0, sizeof(why));
    bool is_error = line[0] == '-';
    enum handshake_psync_reply r =
        handshake_psync_reply(line, is_error, may_continue, asked, replid, &off, why, sizeof(why));
    switch (r) {
    case HANDSHAKE_FULLRESYNC:
        FUZZ_CHECK(!is_error && strncmp(line, "+FULLRESYNC", 11) == 0);
        FUZZ_CHECK(strlen(replid) == RESP_REPLID_LEN && off >= 0);
        break;
    case HANDSHAKE_CONTINUE:
        FUZZ_CHECK(!is_error && may_continue && asked && strncmp(line, "+CONTINUE", 9) == 0);
        FUZZ_CHECK(replid[0] == '\0' || strlen(replid) == RESP_REPLID_LEN);
        break;
    case HANDSHAKE_FAILED:
        FUZZ_CHECK(why[0] != '\0' && strlen(why) < sizeof(why));
        break;
    default:
        FUZZ_CHECK(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_info_bulk((const char *)data, size);
    char line[1100];
    size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
    memcpy(line, data, n);
    line[n] = '\0';
    for (int i = 0; i < 4; i++)
        check_psync(line, i & 1, i & 2);
    bool is_error = line[0] == '-';
    bool ok = handshake_ping_ok(line, is_error);
    FUZZ_CHECK(!is_error ||
               ok == (strncmp(line, "-NOAUTH", 7) == 0 || strncmp(line, "-NOPERM", 7) == 0));
    bool zstd = false;
    if (handshake_frame_offered(line, &zstd))
        FUZZ_CHECK(strncmp(line, "+OK cascade-frame", 17) == 0);
    return 0;
}
