/*
 * Compiles and renders provider url_templates into the upstream user,
 * password, host and port.
 *
 * The reference renders the whole template as one string and parses the
 * result as a URL, so a provider password holding '@' breaks it and a value
 * holding ':' or '@' can move the host. Here the template is split into its
 * four parts before any substitution (see template.h for the rules), each
 * part is rendered alone into its own bounded buffer, and each result is
 * checked against what that part may contain. Compilation runs once per
 * provider row at snapshot load, so template errors surface there, not on
 * requests.
 */
#include "template.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static const char template_default[] = "{username}:{password}@{host}:{port}";

static const struct {
    const char *name;
    size_t len;
    enum template_field field;
} template_names[] = {
    {"username", 8, TEMPLATE_F_USERNAME}, {"password", 8, TEMPLATE_F_PASSWORD},
    {"host", 4, TEMPLATE_F_HOST},         {"port", 4, TEMPLATE_F_PORT},
    {"country", 7, TEMPLATE_F_COUNTRY},   {"session_id", 10, TEMPLATE_F_SESSION_ID},
    {"duration", 8, TEMPLATE_F_DURATION},
};

static bool template_ctl(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

static bool template_host_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* Whether a literal may appear in the given part. Literals in the host and
 * port parts are checked here so an impossible template fails at load. */
static bool template_literal_ok(enum template_part_id part, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (part == TEMPLATE_PART_HOST && !template_host_char(ch) && ch != '[' && ch != ']' &&
            ch != ':')
            return false;
        if (part == TEMPLATE_PART_PORT && (ch < '0' || ch > '9')) return false;
    }
    return true;
}

/* Splits text[b..e) into segments of *p. Returns NULL or the error. */
static const char *template_parse_part(const char *text, size_t b, size_t e,
                                       enum template_part_id part, struct template_part *p)
{
    size_t i = b;

    p->nsegs = 0;
    while (i < e) {
        struct template_seg seg = {TEMPLATE_F_LITERAL, (uint16_t)i, 0};
        if (text[i] == '{') {
            const char *close = memchr(text + i + 1, '}', e - i - 1);
            if (close == NULL) return "'{' without '}' in template";
            size_t nlen = (size_t)(close - (text + i + 1));
            const char *name = text + i + 1;
            if (memchr(name, '{', nlen) != NULL) return "'{' without '}' in template";
            size_t k = 0;
            while (
                k < sizeof(template_names) / sizeof(template_names[0]) &&
                !(template_names[k].len == nlen && memcmp(template_names[k].name, name, nlen) == 0))
                k++;
            if (k == sizeof(template_names) / sizeof(template_names[0]))
                return "unknown placeholder in template";
            seg.field = (uint8_t)template_names[k].field;
            i += nlen + 2;
        } else if (text[i] == '}') {
            return "'}' without '{' in template";
        } else {
            size_t j = i;
            while (j < e && text[j] != '{' && text[j] != '}')
                j++;
            if (!template_literal_ok(part, text + i, j - i))
                return part == TEMPLATE_PART_HOST ? "template host part has characters no host has"
                                                  : "template port part has characters no port has";
            seg.len = (uint16_t)(j - i);
            i = j;
        }
        if (p->nsegs == TEMPLATE_MAX_SEGS) return "template part has too many pieces";
        p->segs[p->nsegs++] = seg;
    }
    return NULL;
}

int template_compile(const char *tpl, size_t len, struct template_compiled *out, const char **err)
{
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    if (tpl == NULL || len == 0) {
        tpl = template_default;
        len = sizeof(template_default) - 1;
    }
    if (len > 7 && strncasecmp(tpl, "http://", 7) == 0) {
        tpl += 7;
        len -= 7;
    }
    if (len >= TEMPLATE_MAX_LEN) {
        why = "template too long";
        goto fail;
    }
    for (size_t i = 0; i < len; i++) {
        if (template_ctl((unsigned char)tpl[i])) {
            why = "control character in template";
            goto fail;
        }
    }
    memcpy(out->text, tpl, len);
    const char *text = out->text;

    const char *at = memrchr(text, '@', len);
    if (at == NULL) {
        why = "template has no '@' before the host";
        goto fail;
    }
    size_t a = (size_t)(at - text);
    const char *c1 = memchr(text, ':', a);
    size_t ue = c1 ? (size_t)(c1 - text) : a;
    const char *c2 = memrchr(at + 1, ':', len - a - 1);
    if (c2 == NULL) {
        why = "template has no ':' before the port";
        goto fail;
    }
    size_t hc = (size_t)(c2 - text);
    struct {
        size_t b, e;
    } span[TEMPLATE_NPARTS] = {
        [TEMPLATE_PART_USER] = {0, ue},
        [TEMPLATE_PART_PASS] = {c1 ? ue + 1 : a, a},
        [TEMPLATE_PART_HOST] = {a + 1, hc},
        [TEMPLATE_PART_PORT] = {hc + 1, len},
    };
    static const char *const empty[TEMPLATE_NPARTS] = {
        [TEMPLATE_PART_USER] = "template has an empty user part",
        [TEMPLATE_PART_HOST] = "template has an empty host part",
        [TEMPLATE_PART_PORT] = "template has an empty port part",
    };
    for (int p = 0; p < TEMPLATE_NPARTS; p++) {
        if (span[p].b == span[p].e && empty[p] != NULL) {
            why = empty[p];
            goto fail;
        }
        why = template_parse_part(text, span[p].b, span[p].e, (enum template_part_id)p,
                                  &out->parts[p]);
        if (why != NULL) goto fail;
    }
    return 0;

fail:
    memset(out, 0, sizeof(*out));
    if (err) *err = why;
    return -1;
}

/* Bounded appender into one part's buffer; latches overflow. */
struct template_buf {
    char *p;
    size_t len, cap; /* bytes; cap includes room for the NUL */
    bool overflow;
};

static void template_put(struct template_buf *b, const char *s, size_t n)
{
    if (s == NULL || n == 0) return;
    if (b->overflow || n >= b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void template_put_uint(struct template_buf *b, unsigned v)
{
    char tmp[12];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    template_put(b, tmp + n, sizeof(tmp) - n);
}

static bool template_render_part(const struct template_compiled *t, const struct template_part *p,
                                 const struct template_values *v, char *buf, size_t cap,
                                 size_t *len)
{
    struct template_buf b = {buf, 0, cap, false};

    for (size_t i = 0; i < p->nsegs; i++) {
        const struct template_seg *s = &p->segs[i];
        switch ((enum template_field)s->field) {
        case TEMPLATE_F_LITERAL:
            template_put(&b, t->text + s->off, s->len);
            break;
        case TEMPLATE_F_USERNAME:
            template_put(&b, v->username, v->username_len);
            break;
        case TEMPLATE_F_PASSWORD:
            template_put(&b, v->password, v->password_len);
            break;
        case TEMPLATE_F_HOST:
            template_put(&b, v->host, v->host_len);
            break;
        case TEMPLATE_F_PORT:
            template_put_uint(&b, v->port);
            break;
        case TEMPLATE_F_COUNTRY:
            template_put(&b, v->country, v->country_len);
            break;
        case TEMPLATE_F_SESSION_ID:
            template_put(&b, v->session_id, v->session_id_len);
            break;
        case TEMPLATE_F_DURATION:
            template_put_uint(&b, v->duration_min);
            break;
        }
    }
    buf[b.len] = '\0';
    *len = b.len;
    return !b.overflow;
}

/* A host name, or an IPv6 literal in brackets (parsed, so no junk hides in
 * the brackets). IPv4 literals are host names by this rule. */
static bool template_host_ok(const char *h, size_t n)
{
    if (n == 0) return false;
    if (h[0] == '[') {
        char tmp[INET6_ADDRSTRLEN];
        unsigned char addr[16];
        if (n < 4 || h[n - 1] != ']' || n - 2 >= sizeof(tmp)) return false;
        /* inet_pton would stop at a NUL and accept what precedes it */
        if (memchr(h + 1, '\0', n - 2) != NULL) return false;
        memcpy(tmp, h + 1, n - 2);
        tmp[n - 2] = '\0';
        return inet_pton(AF_INET6, tmp, addr) == 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!template_host_char(h[i])) return false;
    return true;
}

static bool template_no_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (template_ctl((unsigned char)s[i])) return false;
    return true;
}

int template_render(const struct template_compiled *t, const struct template_values *v,
                    struct template_upstream *out, const char **err)
{
    const char *why = NULL;
    char port[TEMPLATE_PART_MAX];
    size_t port_len;

    out->user[0] = out->pass[0] = out->host[0] = out->port_str[0] = '\0';
    out->user_len = out->pass_len = out->host_len = 0;
    out->port = 0;
    if (!template_render_part(t, &t->parts[TEMPLATE_PART_USER], v, out->user, sizeof(out->user),
                              &out->user_len))
        why = "rendered upstream user too long";
    else if (!template_render_part(t, &t->parts[TEMPLATE_PART_PASS], v, out->pass,
                                   sizeof(out->pass), &out->pass_len))
        why = "rendered upstream password too long";
    else if (!template_render_part(t, &t->parts[TEMPLATE_PART_HOST], v, out->host,
                                   sizeof(out->host), &out->host_len))
        why = "rendered upstream host too long";
    else if (!template_render_part(t, &t->parts[TEMPLATE_PART_PORT], v, port, sizeof(port),
                                   &port_len))
        why = "rendered upstream port too long";
    else if (out->user_len == 0)
        why = "rendered upstream user is empty";
    else if (memchr(out->user, ':', out->user_len) != NULL)
        why = "rendered upstream user contains ':'";
    else if (!template_no_ctl(out->user, out->user_len) ||
             !template_no_ctl(out->pass, out->pass_len))
        why = "rendered upstream credentials contain a control character";
    else if (!template_host_ok(out->host, out->host_len))
        why = "rendered upstream host is not a host name or [IPv6] literal";
    if (why != NULL) goto fail;

    /* Digits only, no sign or spaces; the range check as digits accumulate
     * keeps any number of them from overflowing. */
    unsigned value = 0;
    bool port_ok = port_len > 0;
    for (size_t i = 0; i < port_len && port_ok; i++) {
        port_ok = port[i] >= '0' && port[i] <= '9';
        value = value * 10 + (unsigned)(port[i] - '0');
        port_ok = port_ok && value <= 65535;
    }
    if (!port_ok || value == 0) why = "rendered upstream port is not a number from 1 to 65535";
    if (why != NULL) goto fail;
    out->port = (uint16_t)value;
    /* Normalised, so "08080" is reported as "8080". */
    struct template_buf pb = {out->port_str, 0, sizeof(out->port_str), false};
    template_put_uint(&pb, value);
    out->port_str[pb.len] = '\0';
    return 0;

fail:
    out->user[0] = out->pass[0] = out->host[0] = out->port_str[0] = '\0';
    out->user_len = out->pass_len = out->host_len = 0;
    if (err) *err = why;
    return -1;
}
