/*
 * errmsg: how a module of levels 0-1 hands its caller an error message, printf-style into the
 * caller's buffer (err, errlen), always terminated and cut to fit; a NULL or empty buffer is
 * left alone. Owns nothing, keeps no state, never logs (the caller logs once).
 */
#ifndef CASCADE_ERRMSG_H
#define CASCADE_ERRMSG_H

#include <stddef.h>

void errmsg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
