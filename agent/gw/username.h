/*
 * The proxy username grammar (reference README, "Proxy URL Format"):
 *
 *     {user}[-country-{CC}][-session-{ID}][-sessTime-{N}]
 *
 * with the options in any order, each at most once, and the option keys
 * (`country`, `session`, `sesstime`) compared case-insensitively.
 *
 * Splitting rule. The username is read as tokens separated by '-'. The first
 * token, other than the leading one, that equals an option key (any case)
 * starts the option list; the user is everything before the '-' that precedes
 * it, so users may contain hyphens ("my-user-country-DE" is user "my-user"),
 * and a username without such a token is all user. From that
 * token to the end, tokens must alternate key, value: an unknown key, a key
 * without a value, an empty value, a repeated key or a bad value is an error
 * (a 400), never silently part of the user name. Consequently a user whose
 * name has a hyphen-separated token equal to an option key ("a-country",
 * "x-session-y") cannot be used through the gateway; operators must not create
 * such users.
 *
 * Pure functions: no I/O, no allocation, no global state.
 */
#ifndef GW_USERNAME_H
#define GW_USERNAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "country.h"

#define USERNAME_SESSION_MAX      64   /* bytes in a client session id */
#define USERNAME_RANDOM_SESSION   10   /* chars in a generated session id */
#define USERNAME_SESSTIME_DEFAULT 5    /* minutes, when sessTime is absent */
#define USERNAME_SESSTIME_MAX     1440 /* minutes (one day) */

struct username {
    const char *user;              /* points into the parsed input; not NUL-terminated */
    size_t user_len;               /* bytes; 0 for an empty user (input starting "-key") */
    const struct country *country; /* NULL when no country option */
    const char *session;           /* into the input; NULL when absent */
    size_t session_len;            /* bytes, 1..USERNAME_SESSION_MAX */
    bool session_from_client;      /* true when the session option was given */
    uint16_t session_time_min;     /* minutes, 1..1440; 5 when absent */
};

/*
 * Parses s[0..len) into *out. Returns 0 on success. On error returns -1 and
 * sets *reason to a static, client-safe message naming the bad part (it never
 * quotes client bytes), e.g. "country: unknown code".
 *
 * out->user and out->user_len are set even on error, per the splitting rule,
 * so the caller can authenticate first (407 before 400, as the gateway's
 * order of checks requires) and only then report the option error. The other
 * fields are meaningful only on success.
 */
int username_parse(const char *s, size_t len, struct username *out, const char **reason);

/*
 * Fills out with USERNAME_RANDOM_SESSION characters from [a-z0-9] and a NUL.
 * rand64(ctx) is called once per character and should return uniformly
 * random 64-bit values; each character is mapped without modulo bias worth
 * the name (below 2^-58). Deterministic for a given source, so testable.
 */
void username_random_session(char out[USERNAME_RANDOM_SESSION + 1], uint64_t (*rand64)(void *),
                             void *ctx);

#endif /* GW_USERNAME_H */
