/*
 * Billing across HAProxy reloads. After a reload the old worker keeps
 * serving its requests and tunnels, but HAProxy closes its ring's TCP stream
 * at once (a ring's forwarding stops on soft stop): what it logs from then on
 * (every tunnel that ends after the reload) stays in its ring, and the ring
 * dies with the worker, which exits as soon as its last stream ends.
 *
 * So the agent keeps one idle TCP connection to HAProxy's "gw-billing-hold"
 * frontend (haproxy/gateway.cfg): the worker holding it cannot exit. Once a
 * second through HAProxy's master CLI ("show proc") it finds the old
 * workers; for each, "@!<pid> show sess" tells when only the agent's own
 * connections are left; then "@!<pid> show events <ring>" reads its ring one
 * last time (every line goes to the caller, whose dedup window drops what
 * the stream had delivered) and the agent closes its hold: the worker exits.
 * hard-stop-after still bounds how long a worker lives: the streams it cuts
 * are logged as it exits, too late to be read, and a worker that exits
 * before it was read (not held) loses what it logged; both are logged as
 * errors saying what to do.
 *
 * On the caller's libev loop (the billing thread), non-blocking; a hold
 * address by name is resolved off the loop (net.h), and again after a
 * failure (HAProxy may start after the agent, or move).
 */
#ifndef GW_BILLING_HOLD_H
#define GW_BILLING_HOLD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct hold_config {
    const char *master_cli; /* HAProxy's master CLI (-S): socket path or host:port */
    const char *hold_addr;  /* host:port of the gw-billing-hold frontend */
    const char *ring;       /* the billing ring's name */
};

/* One line of an old worker's ring; false when it cannot be taken now (the
 * spool is full): the worker is then read again later, and kept. */
typedef bool (*hold_line_fn)(void *arg, const char *line, size_t len);

struct holder;

/* NULL (logged) when the configuration is unusable. */
struct holder *holder_start(struct ev_loop *loop, const struct hold_config *cfg,
                            hold_line_fn on_line, void *arg);
/* A HAProxy worker (re)connected its billing stream: perhaps a reload; look now. */
void holder_kick(struct holder *h);
/* Stops on the loop's thread; closes the holds (old workers may then exit). */
void holder_stop(struct holder *h);

#endif
