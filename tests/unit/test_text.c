/*
 * Unit tests for the text floor in agent/common/: the bounded writer
 * (textbuf.h), base64 (base64.h), UTF-8 (utf8.h) and the one JSON string rule
 * (json.h) that every JSON writer of the gateway uses.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "textbuf.h"
#include "utf8.h"

#define LIT(s) (s), (sizeof(s) - 1)

/* --- textbuf -------------------------------------------------------------------- */

START_TEST(textbuf_writes_until_full_then_nothing)
{
    char buf[8];
    struct textbuf b;
    textbuf_init(&b, buf, sizeof(buf));
    textbuf_puts(&b, "abc");
    textbuf_putc(&b, '-');
    textbuf_put_int(&b, -12);
    ck_assert_uint_eq(textbuf_len(&b), 7);
    ck_assert(memcmp(buf, "abc--12", 7) == 0);
    textbuf_put(&b, NULL, 0); /* nothing to write: fine, even with NULL */
    ck_assert_uint_eq(textbuf_len(&b), 7);
    textbuf_puts(&b, "xy"); /* one byte of room: refused whole */
    ck_assert_uint_eq(textbuf_len(&b), 0);
    ck_assert(b.full);
    textbuf_putc(&b, 'z'); /* and nothing after that, even what would fit */
    ck_assert(b.p == buf + 7);
}
END_TEST

START_TEST(textbuf_int_extremes)
{
    char buf[64];
    struct textbuf b;
    textbuf_init(&b, buf, sizeof(buf));
    textbuf_put_int(&b, INT64_MIN);
    textbuf_putc(&b, ' ');
    textbuf_put_int(&b, INT64_MAX);
    textbuf_putc(&b, ' ');
    textbuf_put_int(&b, 0);
    size_t n = textbuf_len(&b);
    ck_assert_uint_gt(n, 0);
    buf[n] = '\0';
    ck_assert_str_eq(buf, "-9223372036854775808 9223372036854775807 0");
}
END_TEST

/* --- base64 --------------------------------------------------------------------- */

/* RFC 4648, section 10 */
static const struct {
    const char *plain, *coded;
} rfc4648[] = {{"", ""},
               {"f", "Zg=="},
               {"fo", "Zm8="},
               {"foo", "Zm9v"},
               {"foob", "Zm9vYg=="},
               {"fooba", "Zm9vYmE="},
               {"foobar", "Zm9vYmFy"}};

START_TEST(base64_rfc4648_vectors)
{
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        char out[16], back[16];
        size_t plen = strlen(rfc4648[i].plain), clen = strlen(rfc4648[i].coded);
        ck_assert_uint_eq(BASE64_LEN(plen), clen);
        ck_assert_uint_eq(base64_encode(rfc4648[i].plain, plen, out), clen);
        ck_assert(memcmp(out, rfc4648[i].coded, clen) == 0);
        ck_assert_int_eq(base64_decode(rfc4648[i].coded, clen, back, sizeof(back), true),
                         (long)plen);
        ck_assert(memcmp(back, rfc4648[i].plain, plen) == 0);

        struct base64_stream st = {.out = out};
        for (size_t k = 0; k < plen; k++)
            base64_stream_byte(&st, (uint8_t)rfc4648[i].plain[k]);
        ck_assert_uint_eq(base64_stream_end(&st), clen);
        ck_assert(memcmp(out, rfc4648[i].coded, clen) == 0);
    }
}
END_TEST

START_TEST(base64_refuses_what_is_not_padded_base64)
{
    char out[16];
    const char *bad[] = {"Zg", "Zg=", "Z===", "Zm9v!A==", "Zm=v", "Zg==Zg==", "Zm 9v", "Zm9\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), false) == -1, "%s",
                      bad[i]);
    /* non-canonical padding bits: refused only in canonical mode */
    ck_assert_int_eq(base64_decode(LIT("Zh=="), out, sizeof(out), true), -1);
    ck_assert_int_eq(base64_decode(LIT("Zm9="), out, sizeof(out), true), -1);
    ck_assert_int_eq(base64_decode(LIT("Zh=="), out, sizeof(out), false), 1);
    ck_assert_int_eq(out[0], 'f');
    /* the output capacity is respected */
    ck_assert_int_eq(base64_decode(LIT("Zm9vYmFy"), out, 5, false), -1);
    ck_assert_int_eq(base64_decode(LIT("Zm9vYmE="), out, 5, false), 5);
}
END_TEST

START_TEST(base64_every_byte_round_trips)
{
    uint8_t all[256], back[256];
    char coded[BASE64_LEN(256)];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n += 85) {
        size_t c = base64_encode(all, n, coded);
        ck_assert_int_eq(base64_decode(coded, c, back, sizeof(back), true), (long)n);
        ck_assert(memcmp(all, back, n) == 0);
    }
}
END_TEST

/* --- UTF-8 ---------------------------------------------------------------------- */

START_TEST(utf8_rfc3629_rules)
{
    ck_assert(utf8_valid(LIT("")));
    ck_assert(utf8_valid(LIT("a\0b")));
    ck_assert(utf8_valid(LIT("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80"
                             "\xf4\x8f\xbf\xbf")));
    ck_assert(!utf8_valid(LIT("\x80")));             /* lone continuation */
    ck_assert(!utf8_valid(LIT("\xc0\xaf")));         /* overlong '/' */
    ck_assert(!utf8_valid(LIT("\xe0\x9f\xbf")));     /* overlong 3-byte */
    ck_assert(!utf8_valid(LIT("\xf0\x8f\xbf\xbf"))); /* overlong 4-byte */
    ck_assert(!utf8_valid(LIT("\xed\xa0\x80")));     /* surrogate */
    ck_assert(!utf8_valid(LIT("\xf4\x90\x80\x80"))); /* > U+10FFFF */
    ck_assert(!utf8_valid(LIT("\xe2\x82")));         /* cut short */
    ck_assert(!utf8_valid(LIT("\xff")));
    ck_assert_uint_eq(utf8_seq((const unsigned char *)"a", 1), 1);
    ck_assert_uint_eq(utf8_seq((const unsigned char *)"\xe2\x82\xac", 3), 3);
    ck_assert_uint_eq(utf8_seq((const unsigned char *)"\xe2\x82\xac", 2), 0);
    ck_assert_uint_eq(utf8_chars(LIT("h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80")), 4);
}
END_TEST

START_TEST(utf8_put_round_trips)
{
    const uint32_t cps[] = {0, 0x7f, 0x80, 0x7ff, 0x800, 0xfffd, 0x10000, 0x10ffff};
    for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
        char o[4];
        size_t n = utf8_put(o, cps[i]);
        ck_assert_uint_eq(utf8_seq((const unsigned char *)o, n), n);
        ck_assert(utf8_valid(o, n));
    }
}
END_TEST

/* --- JSON strings --------------------------------------------------------------- */

static const char *quote(const char *s, size_t len)
{
    static char out[256];
    struct textbuf b;
    textbuf_init(&b, out, sizeof(out) - 1);
    json_put_string(&b, s, len);
    size_t n = textbuf_len(&b);
    ck_assert_uint_gt(n, 0);
    out[n] = '\0';
    return out;
}

START_TEST(json_string_rule)
{
    ck_assert_str_eq(quote(LIT("")), "\"\"");
    ck_assert_str_eq(quote(NULL, 0), "\"\"");
    ck_assert_str_eq(quote(LIT("plain / text")), "\"plain / text\"");
    ck_assert_str_eq(quote(LIT("\"\\")), "\"\\\"\\\\\"");
    ck_assert_str_eq(quote(LIT("\b\f\n\r\t")), "\"\\b\\f\\n\\r\\t\"");
    ck_assert_str_eq(quote(LIT("\x01\x1f\x7f")), "\"\\u0001\\u001f\\u007f\"");
    ck_assert_str_eq(quote(LIT("\0")), "\"\\u0000\"");
    /* valid UTF-8 as is; every byte that is not part of it: U+FFFD */
    ck_assert_str_eq(quote(LIT("h\xc3\xa9\xf0\x9f\x98\x80")), "\"h\xc3\xa9\xf0\x9f\x98\x80\"");
    ck_assert_str_eq(quote(LIT("\xe9t\xff\xe2\x82")), "\"\\ufffdt\\ufffd\\ufffd\\ufffd\"");
    ck_assert_str_eq(quote(LIT("\xed\xa0\x80")), "\"\\ufffd\\ufffd\\ufffd\"");
}
END_TEST

START_TEST(json_string_bound)
{
    /* the worst case is JSON_STRING_MAX: six bytes per input byte */
    char out[JSON_STRING_MAX(3)];
    struct textbuf b;
    textbuf_init(&b, out, sizeof(out));
    json_put_string(&b, LIT("\x01\xff\x02"));
    ck_assert_uint_eq(textbuf_len(&b), sizeof(out));
    textbuf_init(&b, out, sizeof(out) - 1);
    json_put_string(&b, LIT("\x01\xff\x02"));
    ck_assert_uint_eq(textbuf_len(&b), 0);
}
END_TEST

Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("textbuf");
    tcase_add_test(tc, textbuf_writes_until_full_then_nothing);
    tcase_add_test(tc, textbuf_int_extremes);
    suite_add_tcase(s, tc);
    tc = tcase_create("base64");
    tcase_add_test(tc, base64_rfc4648_vectors);
    tcase_add_test(tc, base64_refuses_what_is_not_padded_base64);
    tcase_add_test(tc, base64_every_byte_round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("utf8");
    tcase_add_test(tc, utf8_rfc3629_rules);
    tcase_add_test(tc, utf8_put_round_trips);
    suite_add_tcase(s, tc);
    tc = tcase_create("json");
    tcase_add_test(tc, json_string_rule);
    tcase_add_test(tc, json_string_bound);
    suite_add_tcase(s, tc);
    return s;
}
