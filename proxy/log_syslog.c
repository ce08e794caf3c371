/*
 * log_syslog: the syslog(3) calls, kept apart because <syslog.h> defines LOG_DEBUG and
 * friends as macros, which would clash with enum log_level in log.h.
 */
#include <syslog.h>

void log_syslog_open(const char *ident);
void log_syslog_close(void);
void log_syslog_write(int level, const char *msg);

void log_syslog_open(const char *ident)
{
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_syslog_close(void)
{
    closelog();
}

/* level: 0 debug, 1 info, 2 notice, 3 warning (enum log_level's order). */
void log_syslog_write(int level, const char *msg)
{
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING};
    syslog(prio[level >= 0 && level <= 3 ? level : 3], "%s", msg);
}
