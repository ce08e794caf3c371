/*
 * main: command line, configuration, signals, the event loop and the exit code.
 * The only place that reads argv, installs signal handlers or calls exit().
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "relay.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cascade [-c FILE] [--port N] [--bind ADDR] [--upstream HOST:PORT]\n"
            "               [--dir PATH] [--set SECTION.KEY=VALUE]... [--check-config]\n"
            "               [--version] [-h]\n"
            "\n"
            "A Redis replication relay: replicates from a master like a replica and serves\n"
            "stock replicas (and other relays) like a master.\n"
            "\n"
            "  -c, --config FILE      ini file (see config/cascade.ini); flags override it\n"
            "      --port N           downstream port (relay.port)\n"
            "      --bind ADDR        downstream address (relay.bind)\n"
            "      --upstream H:P     master to replicate from (upstream.host, upstream.port)\n"
            "      --dir PATH         working directory (relay.dir)\n"
            "      --set S.K=V        set any key, e.g. --set backlog.size=256mb\n"
            "      --check-config     validate the configuration and exit 0 or 1\n"
            "      --version          print the version and exit\n"
            "  -h, --help             this text\n");
}

/* A flag applied on top of the file, in command-line order. */
struct override {
    const char *flag; /* for messages */
    const char *section, *key;
    char *value; /* owned */
};

static int apply(struct config *cfg, const struct override *o, char *err, size_t errlen)
{
    if (o->section == NULL) /* --set */
        return config_set_arg(cfg, o->value, err, errlen);
    char msg[CONFIG_ERR_LEN / 2];
    if (config_set(cfg, o->section, o->key, o->value, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "%s %.64s: %s", o->flag, o->value, msg);
        return -1;
    }
    return 0;
}

/* Build a configuration the way startup does: defaults, the file, then the flags. */
static int load_config(struct config *cfg, const char *path, const struct override *ov, size_t nov,
                       char *err, size_t errlen)
{
    config_init(cfg);
    if (path && config_load_file(cfg, path, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < nov; i++) {
        if (apply(cfg, &ov[i], err, errlen) != 0)
            return -1;
    }
    char msg[CONFIG_ERR_LEN / 2];
    if (config_validate(cfg, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "%s%s%s", path ? path : "", path ? ": " : "", msg);
        return -1;
    }
    return 0;
}

/* What a reload needs: the file, and the flags that override it. */
struct runtime {
    struct relay *relay;
    const char *config_path;
    const struct override *ov;
    size_t nov;
};

static int reload_config(void *ctx, struct config *next, char *err, size_t errlen)
{
    const struct runtime *rt = ctx;
    if (!rt->config_path) {
        config_init(next);
        snprintf(err, errlen, "no configuration file (started with flags only)");
        return -1;
    }
    return load_config(next, rt->config_path, rt->ov, rt->nov, err, errlen);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct runtime *rt = arg;
    (void)what;
    if (sig == SIGHUP) {
        if (log_reopen() != 0)
            fprintf(stderr, "cascade: cannot reopen the log file: %s\n", strerror(errno));
        if (!rt->config_path) {
            log_notice("main", "-", "SIGHUP: no config file to reload (started with flags only)");
            return;
        }
        log_notice("main", "-", "SIGHUP: reloading %s", rt->config_path);
        struct config next;
        char err[CONFIG_ERR_LEN];
        if (load_config(&next, rt->config_path, rt->ov, rt->nov, err, sizeof(err)) != 0)
            log_warning("main", "-", "reload failed, keeping the running configuration: %s", err);
        else
            relay_reload(rt->relay, &next);
        config_deinit(&next);
        return;
    }
    log_notice("main", "-", "received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    relay_stop(rt->relay);
}

static int ensure_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "cascade: relay.dir %s: not a directory\n", dir);
            return -1;
        }
    } else if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "cascade: relay.dir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "cascade: relay.dir %s: not writable\n", dir);
        return -1;
    }
    return 0;
}

/* What the command line says. */
struct cmdline {
    const char *config_path; /* -c, NULL if none */
    bool check_only;         /* --check-config */
    struct override ov[128]; /* the flags over the file, in order */
    size_t nov;
};

/* How parse_args ends: run, or exit at once with 0 (--version, --help) or 1 (a bad flag). */
enum parse_result { PARSE_RUN, PARSE_EXIT_OK, PARSE_EXIT_FAIL };

/* --upstream HOST:PORT ([v6]:port too) as two overrides. -1 (and said why) if malformed. */
static int parse_upstream(struct cmdline *cl, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || colon[1] == '\0') {
        fprintf(stderr, "cascade: --upstream %s: expected HOST:PORT\n", arg);
        return -1;
    }
    char *host = strndup(arg, (size_t)(colon - arg));
    /* [v6]:port */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    cl->ov[cl->nov++] = (struct override){"--upstream", "upstream", "host", host};
    cl->ov[cl->nov++] = (struct override){"--upstream", "upstream", "port", strdup(colon + 1)};
    return 0;
}

/* argv into cl (whose override values it allocates; the caller frees them either way). */
static enum parse_result parse_args(int argc, char **argv, struct cmdline *cl)
{
    enum { OPT_PORT = 256, OPT_BIND, OPT_UPSTREAM, OPT_DIR, OPT_SET, OPT_CHECK, OPT_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, OPT_PORT},
        {"bind", required_argument, NULL, OPT_BIND},
        {"upstream", required_argument, NULL, OPT_UPSTREAM},
        {"dir", required_argument, NULL, OPT_DIR},
        {"set", required_argument, NULL, OPT_SET},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
        if (cl->nov == sizeof(cl->ov) / sizeof(cl->ov[0]) - 2) {
            fprintf(stderr, "cascade: too many flags\n");
            return PARSE_EXIT_FAIL;
        }
        switch (opt) {
        case 'c':
            cl->config_path = optarg;
            break;
        case OPT_PORT:
            cl->ov[cl->nov++] = (struct override){"--port", "relay", "port", strdup(optarg)};
            break;
        case OPT_BIND:
            cl->ov[cl->nov++] = (struct override){"--bind", "relay", "bind", strdup(optarg)};
            break;
        case OPT_DIR:
            cl->ov[cl->nov++] = (struct override){"--dir", "relay", "dir", strdup(optarg)};
            break;
        case OPT_SET:
            cl->ov[cl->nov++] = (struct override){"--set", NULL, NULL, strdup(optarg)};
            break;
        case OPT_UPSTREAM:
            if (parse_upstream(cl, optarg) != 0)
                return PARSE_EXIT_FAIL;
            break;
        case OPT_CHECK:
            cl->check_only = true;
            break;
        case OPT_VERSION:
            printf("cascade %s\n", CASCADE_VERSION);
            return PARSE_EXIT_OK;
        case 'h':
            usage(stdout);
            return PARSE_EXIT_OK;
        case ':':
            fprintf(stderr, "cascade: %s needs a value\n", argv[optind - 1]);
            usage(stderr);
            return PARSE_EXIT_FAIL;
        default:
            fprintf(stderr, "cascade: unknown option %s\n", argv[optind - 1]);
            usage(stderr);
            return PARSE_EXIT_FAIL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cascade: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        return PARSE_EXIT_FAIL;
    }
    return PARSE_RUN;
}

/* Before the loop: the log level, relay.dir, the log target. -1 (and said why) on failure. */
static int prepare(const struct config *cfg)
{
    enum log_level level;
    if (log_level_parse(cfg->log_level, &level) == 0)
        log_set_level(level);
    if (ensure_dir(cfg->dir) != 0)
        return -1;
    if (relay_apply_log_target(cfg) != 0) {
        fprintf(stderr, "cascade: relay.log-file %s: %s\n", cfg->log_file, strerror(errno));
        return -1;
    }
    return 0;
}

/* The event loop, NULL if it cannot be made. The changelist folds each loop turn's epoll_ctl
 * calls into one per fd: fan-out switches every replica's write interest on and off all the
 * time. */
static struct event_base *new_event_base(void)
{
    struct event_config *ecfg = event_config_new();
    if (ecfg)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = ecfg ? event_base_new_with_config(ecfg) : event_base_new();
    if (ecfg)
        event_config_free(ecfg);
    return base;
}

/* Start the relay on cfg and run the loop until it stops (TERM, INT); HUP reloads. The exit
 * code: 0 after a clean stop, 1 if it could not start. */
static int run(struct config *cfg, const struct cmdline *cl)
{
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = new_event_base();
    if (!base) {
        fprintf(stderr, "cascade: cannot create the event loop\n");
        return 1;
    }
    int rc = 1;
    struct relay *relay = relay_new(base, cfg, cl->config_path);
    struct runtime rt = {
        .relay = relay, .config_path = cl->config_path, .ov = cl->ov, .nov = cl->nov};
    relay_set_loader(relay, reload_config, &rt);
    struct event *sigs[3];
    const int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(base, signums[i], on_signal, &rt);
        event_add(sigs[i], NULL);
    }
    char err[CONFIG_ERR_LEN];
    if (relay_start(relay, err, sizeof(err)) != 0) {
        log_warning("main", "-", "cannot start: %s", err);
        fprintf(stderr, "cascade: %s\n", err);
    } else {
        event_base_dispatch(base);
        log_notice("main", "-", "stopped");
        rc = 0;
    }
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    relay_free(relay);
    event_base_free(base);
    return rc;
}

int main(int argc, char **argv)
{
    struct cmdline cl = {0};
    int rc = 1;
    enum parse_result parsed = parse_args(argc, argv, &cl);
    if (parsed != PARSE_RUN) {
        rc = parsed == PARSE_EXIT_OK ? 0 : 1;
    } else {
        struct config cfg;
        char err[CONFIG_ERR_LEN];
        if (load_config(&cfg, cl.config_path, cl.ov, cl.nov, err, sizeof(err)) != 0) {
            /* File errors read "FILE:LINE: ..."; flag errors name the flag. */
            bool from_file =
                cl.config_path && strncmp(err, cl.config_path, strlen(cl.config_path)) == 0;
            fprintf(stderr, "%s%s\n", from_file ? "" : "cascade: ", err);
        } else if (cl.check_only) {
            printf("configuration OK\n");
            rc = 0;
        } else if (prepare(&cfg) == 0) {
            rc = run(&cfg, &cl);
        }
        config_deinit(&cfg);
    }
    for (size_t i = 0; i < cl.nov; i++)
        free(cl.ov[i].value);
    return rc;
}
