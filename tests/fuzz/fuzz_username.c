/*
 * libFuzzer target for agent/gw/username.c. Any byte string is a username; when
 * the parser accepts, its outputs must point inside the input and obey the
 * grammar (valid country, session charset and length, sessTime range, a user
 * part with no option key in it); when it refuses, there is a reason and the
 * user part is still a prefix of the input. The same bytes then drive the
 * random session generator, whose ids must themselves parse as session ids.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "username.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static bool is_key(const char *s, size_t n)
{
    static const char *const keys[] = {"country", "session", "sesstime"};
    for (size_t k = 0; k < 3; k++) {
        if (strlen(keys[k]) != n) continue;
        size_t i = 0;
        while (i < n && (s[i] | 0x20) == keys[k][i])
            i++;
        if (i == n) return true;
    }
    return false;
}

/* Source of "random" words from the fuzz input; cycles when exhausted. */
struct src {
    const uint8_t *p;
    size_t n, i;
};

static uint64_t src_rand(void *ctx)
{
    struct src *s = ctx;
    uint64_t w = 0;
    for (int b = 0; b < 8; b++)
        w = w << 8 | (s->n ? s->p[s->i++ % s->n] : 0);
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct username u;
    const char *reason = NULL;
    int rc = username_parse(in, size, &u, &reason);

    CHECK(u.user_len <= size);
    if (u.user_len > 0) CHECK(u.user == in);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(reason != NULL && reason[0] != '\0');
    } else {
        CHECK(u.user_len >= 1);
        /* the user is followed by "-" and options, or by nothing */
        CHECK(u.user_len == size || in[u.user_len] == '-');
        /* no token after the first one in the user is an option key */
        size_t start = 0;
        for (size_t i = 0; i <= u.user_len; i++) {
            if (i == u.user_len || in[i] == '-') {
                if (start > 0) CHECK(!is_key(in + start, i - start));
                start = i + 1;
            }
        }
        /* the rest alternates known keys and non-empty values */
        size_t tokens = 0;
        start = u.user_len + 1;
        for (size_t i = start; u.user_len < size && i <= size; i++) {
            if (i == size || in[i] == '-') {
                CHECK(i > start);
                if (tokens % 2 == 0) CHECK(is_key(in + start, i - start));
                tokens++;
                start = i + 1;
            }
        }
        CHECK(tokens % 2 == 0 && tokens <= 6);
        if (u.country) CHECK(country_lookup(u.country->code, 2) == u.country);
        CHECK(u.session_time_min >= 1 && u.session_time_min <= USERNAME_SESSTIME_MAX);
        if (u.session) {
            CHECK(u.session_from_client);
            CHECK(u.session >= in && u.session + u.session_len <= in + size);
            CHECK(u.session_len >= 1 && u.session_len <= USERNAME_SESSION_MAX);
            for (size_t i = 0; i < u.session_len; i++) {
                char c = u.session[i];
                CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_');
            }
        } else {
            CHECK(!u.session_from_client && u.session_len == 0);
        }
        /* deterministic */
        struct username again;
        CHECK(username_parse(in, size, &again, NULL) == 0);
        CHECK(memcmp(&u, &again, sizeof(u)) == 0);
    }

    char id[USERNAME_RANDOM_SESSION + 1];
    struct src s = {data, size, 0};
    username_random_session(id, src_rand, &s);
    CHECK(strlen(id) == USERNAME_RANDOM_SESSION);
    char name[32] = "u-session-";
    memcpy(name + 10, id, sizeof(id));
    CHECK(username_parse(name, 10 + USERNAME_RANDOM_SESSION, &u, NULL) == 0);
    CHECK(u.session_len == USERNAME_RANDOM_SESSION);
    return 0;
}
