/*
 * Parser for the options customers put in their proxy username
 * ("alice-country-DE-session-abc-sessTime-10").
 *
 * The options steer routing (country, sticky session, session length), so the
 * grammar is strict: every malformed option is refused with a reason instead
 * of being folded into the user name or replaced by a default, and a value can
 * only hold characters that cannot change the structure of the upstream
 * credentials rendered from it. The user part is returned even when the
 * options are bad, because the gateway authenticates (407) before it
 * validates options (400). See username.h for the splitting rule.
 */
#include "username.h"

#include <string.h>

enum username_opt {
    USERNAME_OPT_COUNTRY,
    USERNAME_OPT_SESSION,
    USERNAME_OPT_SESSTIME,
    USERNAME_NOPTS,
};

/* Keys in lower case, and the static messages for each, so a reason always
 * names the option without quoting client bytes. */
static const struct {
    const char *key;
    size_t len;
    const char *repeated;
    const char *empty;
} username_opts[USERNAME_NOPTS] = {
    [USERNAME_OPT_COUNTRY] = {"country", 7, "country: repeated", "country: empty value"},
    [USERNAME_OPT_SESSION] = {"session", 7, "session: repeated", "session: empty value"},
    [USERNAME_OPT_SESSTIME] = {"sesstime", 8, "sessTime: repeated", "sessTime: empty value"},
};

/* The option whose key is s[0..len) in any ASCII case; -1 if none. */
static int username_opt_key(const char *s, size_t len)
{
    for (int k = 0; k < USERNAME_NOPTS; k++) {
        if (username_opts[k].len != len) continue;
        size_t i = 0;
        while (i < len) {
            char ch = s[i];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            if (ch != username_opts[k].key[i]) break;
            i++;
        }
        if (i == len) return k;
    }
    return -1;
}

/* Length of the token starting at s[pos]: up to the next '-' or len. */
static size_t username_token(const char *s, size_t len, size_t pos)
{
    const char *dash = memchr(s + pos, '-', len - pos);
    return dash ? (size_t)(dash - (s + pos)) : len - pos;
}

static bool username_session_ok(const char *v, size_t n)
{
    if (n == 0 || n > USERNAME_SESSION_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

/* Decimal digits only (no sign, no spaces); the value is checked against the
 * range as it accumulates, so no length of digits can overflow. */
static bool username_sesstime(const char *v, size_t n, uint16_t *out)
{
    unsigned value = 0;

    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        value = value * 10 + (unsigned)(v[i] - '0');
        if (value > USERNAME_SESSTIME_MAX) return false;
    }
    if (value < 1) return false;
    *out = (uint16_t)value;
    return true;
}

/* Checks one option value and stores it; NULL on success, else the reason. */
static const char *username_set(struct username *out, int opt, const char *v, size_t n)
{
    switch (opt) {
    case USERNAME_OPT_COUNTRY:
        if (n != 2) return "country: must be a 2-letter ISO 3166-1 code";
        out->country = country_lookup(v, n);
        if (out->country == NULL) return "country: unknown code";
        return NULL;
    case USERNAME_OPT_SESSION:
        if (!username_session_ok(v, n)) return "session: must be 1-64 of A-Z a-z 0-9 _";
        out->session = v;
        out->session_len = n;
        out->session_from_client = true;
        return NULL;
    default:
        if (!username_sesstime(v, n, &out->session_time_min))
            return "sessTime: must be an integer from 1 to 1440 (minutes)";
        return NULL;
    }
}

int username_parse(const char *s, size_t len, struct username *out, const char **reason)
{
    const char *why = NULL;
    size_t pos = len; /* start of the first option key; len when none */
    bool seen[USERNAME_NOPTS] = {false};

    memset(out, 0, sizeof(*out));
    out->session_time_min = USERNAME_SESSTIME_DEFAULT;
    if (s == NULL) len = 0;

    /* The user ends at the first '-' followed by a known key token. */
    for (const char *p = len ? memchr(s, '-', len) : NULL; p != NULL;
         p = memchr(p + 1, '-', len - (size_t)(p + 1 - s))) {
        size_t at = (size_t)(p - s) + 1;
        if (username_opt_key(s + at, username_token(s, len, at)) >= 0) {
            pos = at;
            break;
        }
    }
    out->user = s;
    out->user_len = pos < len ? pos - 1 : len;

    while (pos < len && why == NULL) {
        size_t klen = username_token(s, len, pos);
        int opt = username_opt_key(s + pos, klen);
        if (klen == 0) {
            why = "empty option name";
            break;
        }
        if (opt < 0) {
            why = "unknown option (expected country, session or sessTime)";
            break;
        }
        if (seen[opt]) {
            why = username_opts[opt].repeated;
            break;
        }
        seen[opt] = true;
        pos += klen;
        if (pos == len) {
            why = username_opts[opt].empty;
            break;
        }
        pos++; /* the '-' after the key */
        size_t vlen = username_token(s, len, pos);
        if (vlen == 0) {
            why = username_opts[opt].empty;
            break;
        }
        why = username_set(out, opt, s + pos, vlen);
        pos += vlen;
        /* A '-' after a value introduces another key: a trailing '-' thus
         * yields an empty key on the next round. */
        if (pos < len) {
            pos++;
            if (pos == len && why == NULL) why = "empty option name";
        }
    }
    if (why == NULL && out->user_len == 0) why = "empty user name";
    if (why != NULL) {
        if (reason) *reason = why;
        return -1;
    }
    return 0;
}

void username_random_session(char out[USERNAME_RANDOM_SESSION + 1], uint64_t (*rand64)(void *),
                             void *ctx)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";

    /* Multiply-high maps 2^64 values onto 36 symbols; each symbol gets
     * floor or ceil of 2^64/36 inputs, a bias below 2^-58. */
    for (size_t i = 0; i < USERNAME_RANDOM_SESSION; i++) {
        unsigned __int128 m = (unsigned __int128)rand64(ctx) * 36u;
        out[i] = alphabet[(size_t)(m >> 64)];
    }
    out[USERNAME_RANDOM_SESSION] = '\0';
}
