/*
 * log: one line per event, "<iso time> <pid> <level> <component> <peer>: <message>", to stderr.
 * The only process-wide state of the relay besides the event base: the level threshold.
 */
#ifndef CASCADE_LOG_H
#define CASCADE_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_DEBUG,   /* per-command detail */
    LOG_INFO,    /* state changes, connections */
    LOG_NOTICE,  /* things an operator should see */
    LOG_WARNING, /* errors the relay recovers from */
};

const char *log_level_name(enum log_level level);
/* Parse "debug|info|notice|warning"; -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level level);

/* Where lines go: a file (path; "" = stderr), or syslog with ident (ident NULL = not syslog).
 * Returns 0, or -1 with errno set (the previous target stays). */
int log_set_target(const char *path, const char *syslog_ident);

/* Reopen the log file (after logrotate moved it). 0 or -1. */
int log_reopen(void);
bool log_enabled(enum log_level level);

/* component: "relay", "upstream", ...; peer: "127.0.0.1:6379" or "-". */
void log_msg(enum log_level level, const char *component, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(c, p, ...)   log_msg(LOG_DEBUG, c, p, __VA_ARGS__)
#define log_info(c, p, ...)    log_msg(LOG_INFO, c, p, __VA_ARGS__)
#define log_notice(c, p, ...)  log_msg(LOG_NOTICE, c, p, __VA_ARGS__)
#define log_warning(c, p, ...) log_msg(LOG_WARNING, c, p, __VA_ARGS__)

#endif
