/*
 * libFuzzer target for agent/gw/template.c. The input holds a template and the
 * values, separated by 0x01 bytes (which no valid template contains):
 *
 *   template 01 username 01 password 01 host 01 country 01 session 01 port(2) duration(2)
 *
 * When a render succeeds, each part must be bounded, NUL-terminated, free of
 * the characters that would break its structure, and joining the parts as
 * "user:pass@host:port" then splitting that string by the template rules
 * must give back the same four parts: no value moved a boundary.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

/* The next 0x01-separated field of [*p, end); the last one runs to end. */
static const char *field(const uint8_t **p, const uint8_t *end, size_t *len)
{
    const uint8_t *s = *p;
    const uint8_t *sep = s < end ? memchr(s, 0x01, (size_t)(end - s)) : NULL;
    const uint8_t *e = sep ? sep : end;
    *len = (size_t)(e - s);
    *p = sep ? sep + 1 : end;
    return (const char *)s;
}

static bool ctl_free(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    struct template_values v;
    size_t tlen;
    const char *tpl = field(&p, end, &tlen);
    v.username = field(&p, end, &v.username_len);
    v.password = field(&p, end, &v.password_len);
    v.host = field(&p, end, &v.host_len);
    v.country = field(&p, end, &v.country_len);
    v.session_id = field(&p, end, &v.session_id_len);
    /* the last four bytes, when present, are the numbers; they are not part
     * of the session id when it is the last field */
    v.port = 10000;
    v.duration_min = 5;
    if (size >= 4) {
        v.port = (uint16_t)(end[-4] << 8 | end[-3]);
        v.duration_min = (uint16_t)(end[-2] << 8 | end[-1]);
        if (v.session_id + v.session_id_len == (const char *)end)
            v.session_id_len = v.session_id_len >= 4 ? v.session_id_len - 4 : 0;
    }

    struct template_compiled t;
    const char *err = NULL;
    if (template_compile(tpl, tlen, &t, &err) != 0) {
        CHECK(err != NULL && err[0] != '\0');
        return 0;
    }
    for (int i = 0; i < TEMPLATE_NPARTS; i++)
        CHECK(t.parts[i].nsegs <= TEMPLATE_MAX_SEGS);

    struct template_upstream up;
    if (template_render(&t, &v, &up, &err) != 0) {
        CHECK(err != NULL && err[0] != '\0');
        CHECK(up.user[0] == '\0' && up.host[0] == '\0' && up.port == 0);
        return 0;
    }
    CHECK(up.user_len >= 1 && up.user_len < TEMPLATE_PART_MAX);
    CHECK(up.pass_len < TEMPLATE_PART_MAX);
    CHECK(up.host_len >= 1 && up.host_len < TEMPLATE_PART_MAX);
    CHECK(strlen(up.user) == up.user_len);
    CHECK(strlen(up.pass) == up.pass_len);
    CHECK(strlen(up.host) == up.host_len);
    CHECK(memchr(up.user, ':', up.user_len) == NULL);
    CHECK(ctl_free(up.user, up.user_len) && ctl_free(up.pass, up.pass_len));
    CHECK(memchr(up.host, '@', up.host_len) == NULL);
    CHECK(memchr(up.host, '/', up.host_len) == NULL);
    CHECK(up.host[0] == '[' || memchr(up.host, ':', up.host_len) == NULL);
    CHECK(up.port >= 1);
    CHECK(atoi(up.port_str) == up.port);

    /* Join and re-split: first ':' for the user, last '@', last ':'. */
    char joined[4 * TEMPLATE_PART_MAX + 4];
    size_t n = 0;
    memcpy(joined + n, up.user, up.user_len), n += up.user_len;
    joined[n++] = ':';
    memcpy(joined + n, up.pass, up.pass_len), n += up.pass_len;
    joined[n++] = '@';
    memcpy(joined + n, up.host, up.host_len), n += up.host_len;
    joined[n++] = ':';
    size_t plen = strlen(up.port_str);
    memcpy(joined + n, up.port_str, plen), n += plen;
    const char *at = memrchr(joined, '@', n);
    const char *c1 = memchr(joined, ':', (size_t)(at - joined));
    const char *c2 = memrchr(at, ':', (size_t)(joined + n - at));
    CHECK(at != NULL && c1 != NULL && c2 != NULL);
    CHECK((size_t)(c1 - joined) == up.user_len);
    CHECK((size_t)(at - c1 - 1) == up.pass_len);
    CHECK((size_t)(c2 - at - 1) == up.host_len);
    CHECK((size_t)(joined + n - c2 - 1) == plen);
    return 0;
}
