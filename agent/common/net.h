/*
 * Sockets and names: "host:port" parsing, listening sockets, and resolving a
 * host name to one numeric address, blocking (for threads that may block:
 * the snapshot loader) or off the calling event loop (net_resolve_start: a
 * short-lived thread does the getaddrinfo, the answer comes back on the
 * loop), so no event loop ever waits on DNS.
 *
 * Why a thread per resolution and not glibc's getaddrinfo_a: the answer must
 * come back on a libev loop, and getaddrinfo_a's SIGEV_THREAD notification is
 * a thread anyway, with less control over cancellation. Resolutions are rare
 * (a Redis reconnect, a read-back of HAProxy's ring), never per request.
 */
#ifndef GW_NET_H
#define GW_NET_H

#include <ev.h>
#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>

#define NET_ADDR_MAX 46 /* an IPv4 or IPv6 address as text, with its NUL (INET6_ADDRSTRLEN) */

/* net_parse_hostport flags */
#define NET_ANY_HOST  1u /* "" and "*" are allowed as host (copied as "") */
#define NET_PORT_ZERO 2u /* port 0 is allowed (bind to any free port) */

/* Splits "host:port", "[v6]:port" (and with NET_ANY_HOST ":port", "*:port")
 * at the last colon: host copied into buf (cap bytes, brackets removed), port
 * 1..65535 (0 too with NET_PORT_ZERO). False when malformed or too long. */
bool net_parse_hostport(const char *s, char *buf, size_t cap, int *port, unsigned flags);

/* Is host a numeric IPv4 or IPv6 address (nothing to resolve)? */
bool net_is_numeric(const char *host);

/* Binds a non-blocking, close-on-exec listening TCP socket to spec ("host:port",
 * "[v6]:port", ":port" or "*:port"; port 0 picks a free one; a host name is
 * resolved, blocking: call it before the loops run). Returns the fd, or -1
 * with the reason logged. */
int net_listen(const char *spec);

/* The locally bound TCP port of a socket, 0 when unknown. */
unsigned net_bound_port(int fd);

/*
 * Resolves host to one numeric address as text: the first IPv4 address, else
 * the first IPv6 one (the order hiredis tries). Blocks (DNS). Returns 0, or
 * -1 with the reason in err (errlen bytes, always NUL-terminated).
 */
int net_resolve(const char *host, char addr[NET_ADDR_MAX], char *err, size_t errlen);

/* Called on the loop with the address (NULL on failure, then err says why). */
typedef void (*net_resolved_fn)(void *arg, const char *addr, const char *err);

struct net_resolve_job;

/*
 * Resolves host off the loop (a thread of its own runs net_resolve) and calls
 * done(arg, ...) on the loop's thread when it is known. Returns the job, or
 * NULL when no thread could be started (nothing will be called). Call it, and
 * net_resolve_cancel, on the loop's thread.
 */
struct net_resolve_job *net_resolve_start(struct ev_loop *loop, const char *host,
                                          net_resolved_fn done, void *arg);

/* Forgets a job that has not called back yet: done is never called, and the
 * thread, when it finishes, frees what is left. Once done has been called the
 * job is gone: drop the pointer in done, never cancel it afterwards. */
void net_resolve_cancel(struct net_resolve_job *job);

/* The getaddrinfo net_resolve calls: tests make resolution slow with it.
 * NULL restores the real one. */
typedef int (*net_getaddrinfo_fn)(const char *node, const char *service,
                                  const struct addrinfo *hints, struct addrinfo **res);
void net_set_getaddrinfo(net_getaddrinfo_fn fn);

#endif
