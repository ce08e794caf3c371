/*
 * relay: owns everything and is the only place where the upstream and downstream sides meet.
 */
#ifndef CASCADE_RELAY_H
#define CASCADE_RELAY_H

#include <stddef.h>

#include "config.h"

struct event_base;
struct relay;

/* A relay on cfg (borrowed; it must outlive the relay). Nothing starts yet. */
struct relay *relay_new(struct event_base *base, struct config *cfg, const char *config_path);
void relay_free(struct relay *r);

/* Listen downstream and connect upstream. 0, or -1 with a message (startup errors). */
__attribute__((warn_unused_result)) int relay_start(struct relay *r, char *err, size_t errlen);

/* Apply a new configuration (SIGHUP): reloadable keys take effect at once (a new upstream
 * re-points the link), the others are reported as requiring a restart. */
void relay_reload(struct relay *r, const struct config *next);

/* Send log lines where c says (file, stderr or syslog). 0 or -1 with errno. */
int relay_apply_log_target(const struct config *c);

/* How CONFIG RELOAD re-reads the configuration (main knows the file and the flags): fills
 * next and returns 0, or -1 with a message. */
typedef int (*relay_load_fn)(void *ctx, struct config *next, char *err, size_t errlen);
void relay_set_loader(struct relay *r, relay_load_fn fn, void *ctx);

/* Stop accepting and leave the loop. */
void relay_stop(struct relay *r);

#endif
