/*
 * A provider's `url_template` (reference README, "URL Template Placeholders"):
 *
 *     USERPART:PASSPART@HOSTPART:PORTPART
 *
 * e.g. "{username}-country-{country}-session-{session_id}:{password}@{host}:{port}".
 *
 * The template is split into its four parts once, when the provider row is
 * loaded, and each part is rendered on its own, so provider secrets holding
 * '@' or ':' work and no substituted value can move a part boundary. Split
 * rules, on the template text before any substitution:
 *   - an optional leading "http://" (any case) is ignored;
 *   - credentials | address at the LAST '@' (required);
 *   - credentials: user | password at the FIRST ':' (no ':' means an empty
 *     password template);
 *   - address: host | port at the LAST ':' (required), so "[2001:db8::1]:{port}"
 *     works.
 * An empty template means "{username}:{password}@{host}:{port}".
 *
 * Placeholders: {username} {password} {host} {port} {country} {session_id}
 * {duration}. Braces have no escape: an unknown name, a '{' without its '}',
 * a '}' without its '{' are compile errors.
 *
 * Pure functions: no I/O, no allocation, no global state. A compiled template
 * is self-contained (it copies the text) and read-only while rendering, so
 * threads may share it.
 */
#ifndef GW_TEMPLATE_H
#define GW_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#define TEMPLATE_MAX_LEN  512 /* bytes of template text, NUL included */
#define TEMPLATE_MAX_SEGS 16  /* literal/placeholder pieces per part */
#define TEMPLATE_PART_MAX 256 /* bytes of one rendered part, NUL included */

enum template_field {
    TEMPLATE_F_LITERAL,
    TEMPLATE_F_USERNAME,
    TEMPLATE_F_PASSWORD,
    TEMPLATE_F_HOST,
    TEMPLATE_F_PORT,
    TEMPLATE_F_COUNTRY,
    TEMPLATE_F_SESSION_ID,
    TEMPLATE_F_DURATION,
};

enum template_part_id {
    TEMPLATE_PART_USER,
    TEMPLATE_PART_PASS,
    TEMPLATE_PART_HOST,
    TEMPLATE_PART_PORT,
    TEMPLATE_NPARTS,
};

struct template_seg {
    uint8_t field; /* enum template_field */
    uint16_t off;  /* literal: offset in template_compiled.text, bytes */
    uint16_t len;  /* literal: length, bytes; 0 for placeholders */
};

struct template_part {
    uint8_t nsegs; /* used entries of segs */
    struct template_seg segs[TEMPLATE_MAX_SEGS];
};

/* A compiled template; written by template_compile only. */
struct template_compiled {
    char text[TEMPLATE_MAX_LEN]; /* the template text the literals point into */
    struct template_part parts[TEMPLATE_NPARTS];
};

/* What the placeholders stand for, for one request. Strings are ptr + len and
 * need not be NUL-terminated; a NULL pointer is read as the empty string. */
struct template_values {
    const char *username; /* provider account (proxies.username) */
    size_t username_len;
    const char *password; /* provider secret (proxies.password) */
    size_t password_len;
    const char *host; /* provider host (proxies.base_url) */
    size_t host_len;
    uint16_t port;       /* chosen in port_min..port_max */
    const char *country; /* already rendered in the provider's country_format */
    size_t country_len;
    const char *session_id; /* validated [A-Za-z0-9_]{1,64} or generated */
    size_t session_id_len;
    uint16_t duration_min; /* session duration, minutes */
};

/* A rendered template: the four parts, each NUL-terminated. */
struct template_upstream {
    char user[TEMPLATE_PART_MAX]; /* no ':' and no control characters */
    size_t user_len;              /* bytes, >= 1 */
    char pass[TEMPLATE_PART_MAX]; /* no control characters; may be empty */
    size_t pass_len;              /* bytes */
    char host[TEMPLATE_PART_MAX]; /* [A-Za-z0-9._-]+ or "[" IPv6 "]" */
    size_t host_len;              /* bytes, >= 1 */
    char port_str[6];             /* decimal, without leading zeros */
    uint16_t port;                /* 1..65535 */
};

/*
 * Compiles tpl[0..len) into *out. Returns 0, or -1 with *err set to a static
 * message. Besides the syntax above, it refuses: text longer than
 * TEMPLATE_MAX_LEN - 1, an empty user, host or port part, more than
 * TEMPLATE_MAX_SEGS pieces in a part, a control character anywhere, and
 * literal text that could never render a valid host or port (host literals
 * must be from [A-Za-z0-9._-[]:], port literals digits).
 */
int template_compile(const char *tpl, size_t len, struct template_compiled *out, const char **err);

/*
 * Renders t with v into *out. Returns 0, or -1 with *err set to a static
 * message when a part does not fit TEMPLATE_PART_MAX, or the result breaks
 * the structure: a user that is empty or contains ':', a host that is not a
 * host name or bracketed IPv6 literal, a port that is not a decimal number in
 * 1..65535, a control character (bytes below 0x20, 0x7f) in any part.
 * No substituted value is escaped or trimmed: a bad one is an error.
 */
int template_render(const struct template_compiled *t, const struct template_values *v,
                    struct template_upstream *out, const char **err);

#endif /* GW_TEMPLATE_H */
