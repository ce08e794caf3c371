/*
 * log: formats and writes one whole line per call with a single write(2), so lines from a
 * crashing process are never interleaved halfway.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

/* log_syslog.c */
void log_syslog_open(const char *ident);
void log_syslog_close(void);
void log_syslog_write(int level, const char *msg);

static enum log_level threshold = LOG_INFO;
static int log_fd = STDERR_FILENO; /* where lines go unless syslog is on */
static char log_path[4096];        /* "" for stderr */
static bool use_syslog;
static char syslog_ident[64];

int log_set_target(const char *path, const char *ident)
{
    if (ident) {
        snprintf(syslog_ident, sizeof(syslog_ident), "%s", ident);
        log_syslog_open(syslog_ident);
        use_syslog = true;
        return 0;
    }
    if (use_syslog) {
        log_syslog_close();
        use_syslog = false;
    }
    if (!path || !path[0]) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        log_path[0] = '\0';
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    snprintf(log_path, sizeof(log_path), "%s", path);
    return 0;
}

int log_reopen(void)
{
    if (use_syslog || !log_path[0])
        return 0;
    char path[sizeof(log_path)];
    memcpy(path, log_path, sizeof(path));
    return log_set_target(path, NULL);
}

static const char *const names[] = {"debug", "info", "notice", "warning"};

const char *log_level_name(enum log_level level)
{
    return level <= LOG_WARNING ? names[level] : "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i <= LOG_WARNING; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    threshold = level;
}

bool log_enabled(enum log_level level)
{
    return level >= threshold;
}

void log_msg(enum log_level level, const char *component, const char *peer, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %d %s %s %s: ", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
        (int)getpid(), log_level_name(level), component, peer && *peer ? peer : "-");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    va_end(ap);
    if (m > 0)
        len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    if (len >= sizeof(line) - 1)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    if (use_syslog) {
        /* syslog stamps time and pid itself: send from the level on. */
        const char *body = strstr(line, log_level_name(level));
        line[len - 1] = '\0';
        log_syslog_write((int)level, body ? body : line);
        return;
    }
    ssize_t w = write(log_fd, line, len);
    (void)w;
}
