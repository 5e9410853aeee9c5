/*
 * Unit tests for agent/gw/country.c: the ISO 3166-1 table, lookups, and the
 * country_format parse and render rules.
 */
#include <check.h>
#include <string.h>

#include "country.h"

extern Suite *country_suite(void);

START_TEST(test_table_complete)
{
    size_t n = 0;
    char seen[26 * 26] = {0};
    while (country_at(n) != NULL) {
        const struct country *c = country_at(n);
        ck_assert_uint_eq(strlen(c->code), 2);
        ck_assert(c->code[0] >= 'A' && c->code[0] <= 'Z');
        ck_assert(c->code[1] >= 'A' && c->code[1] <= 'Z');
        int slot = (c->code[0] - 'A') * 26 + (c->code[1] - 'A');
        ck_assert_msg(!seen[slot], "code %s listed twice", c->code);
        seen[slot] = 1;
        if (n > 0) ck_assert_int_lt(strcmp(country_at(n - 1)->code, c->code), 0);
        ck_assert_uint_eq(strlen(c->name), c->name_len);
        ck_assert_uint_lt(c->name_len, COUNTRY_NAME_MAX);
        ck_assert_uint_gt(c->name_len, 2);
        for (size_t i = 0; i < c->name_len; i++) {
            char ch = c->name[i];
            ck_assert_msg((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == ' ' ||
                              ch == '\'' || ch == '-' || ch == ',',
                          "%s: unexpected character in '%s'", c->code, c->name);
        }
        ck_assert_ptr_eq(country_lookup(c->code, 2), c);
        n++;
    }
    ck_assert_uint_eq(n, 249);
    ck_assert_uint_eq(n, COUNTRY_COUNT);
}
END_TEST

START_TEST(test_lookup_all_676)
{
    /* Every two-letter code: found exactly when it is in the table, and in
     * either case. */
    size_t found = 0;
    for (char a = 'A'; a <= 'Z'; a++) {
        for (char b = 'A'; b <= 'Z'; b++) {
            char up[2] = {a, b}, lo[2] = {(char)(a + 32), (char)(b + 32)}, mixed[2] = {a, lo[1]};
            const struct country *c = country_lookup(up, 2);
            ck_assert_ptr_eq(country_lookup(lo, 2), c);
            ck_assert_ptr_eq(country_lookup(mixed, 2), c);
            if (c != NULL) {
                ck_assert_int_eq(c->code[0], a);
                ck_assert_int_eq(c->code[1], b);
                found++;
            }
        }
    }
    ck_assert_uint_eq(found, 249);
}
END_TEST

static const struct {
    const char *code;
    const char *name;
} spot[] = {
    {"US", "United States"},
    {"GB", "United Kingdom"},
    {"DE", "Germany"},
    {"KR", "South Korea"},
    {"KP", "North Korea"},
    {"RU", "Russia"},
    {"IR", "Iran"},
    {"VN", "Vietnam"},
    {"BO", "Bolivia"},
    {"TZ", "Tanzania"},
    {"VE", "Venezuela"},
    {"SY", "Syria"},
    {"LA", "Laos"},
    {"MD", "Moldova"},
    {"TW", "Taiwan"},
    {"CZ", "Czechia"},
    {"CI", "Cote d'Ivoire"},
    {"CW", "Curacao"},
    {"RE", "Reunion"},
    {"BL", "Saint Barthelemy"},
    {"AX", "Aland Islands"},
    {"GW", "Guinea-Bissau"},
    {"CD", "Democratic Republic of the Congo"},
    {"CG", "Congo"},
    {"MK", "North Macedonia"},
    {"VG", "British Virgin Islands"},
    {"VI", "United States Virgin Islands"},
    {"ZW", "Zimbabwe"},
    {"AD", "Andorra"},
};

START_TEST(test_spot_names)
{
    const struct country *c = country_lookup(spot[_i].code, 2);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->code, spot[_i].code);
    ck_assert_str_eq(c->name, spot[_i].name);
}
END_TEST

START_TEST(test_lookup_refused)
{
    static const char *const bad[] = {"",   "U",  "USA", "XX", "ZZ", "AA", "U1",
                                      "1U", "U ", " U",  "UK", "EU", "U-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(country_lookup(bad[i], strlen(bad[i])) == NULL, "'%s' accepted", bad[i]);
    ck_assert_ptr_null(country_lookup(NULL, 2));
    ck_assert_ptr_null(country_lookup("US", 1));
    ck_assert_ptr_null(country_lookup("US\0", 3));
    ck_assert_ptr_null(country_lookup("U\0", 2));
    /* Non-ASCII bytes that fold onto letters in some locales. */
    ck_assert_ptr_null(country_lookup("\xc3\x9c", 2));
    ck_assert_ptr_null(country_lookup("@S", 2));
    ck_assert_ptr_null(country_lookup("[S", 2));
    ck_assert_ptr_null(country_lookup("`s", 2));
    ck_assert_ptr_null(country_lookup("{s", 2));
}
END_TEST

/* A literal and its length, embedded NULs included. */
#define LIT(s) s, sizeof(s) - 1

static const struct {
    const char *text;
    size_t len;
    bool ok;
    enum country_format fmt;
} formats[] = {
    {LIT("ISO"), true, COUNTRY_FMT_ISO},
    {LIT("iso"), true, COUNTRY_FMT_ISO},
    {LIT("ISO_LOWERCASE"), true, COUNTRY_FMT_ISO_LOWERCASE},
    {LIT("iso_lowercase"), true, COUNTRY_FMT_ISO_LOWERCASE},
    {LIT("FULL_NAME"), true, COUNTRY_FMT_FULL_NAME},
    {LIT("Full_Name"), true, COUNTRY_FMT_FULL_NAME},
    {LIT("NO_SPACES"), true, COUNTRY_FMT_NO_SPACES},
    {LIT(""), false, 0},
    {LIT("IS"), false, 0},
    {LIT("ISO "), false, 0},
    {LIT(" ISO"), false, 0},
    {LIT("ISO-LOWERCASE"), false, 0},
    {LIT("FULLNAME"), false, 0},
    {LIT("NO SPACES"), false, 0},
    {LIT("NO_SPACES_"), false, 0},
    {LIT("ISO\0"), false, 0},
    {LIT("\xc4\xb1so"), false, 0},
};

START_TEST(test_format_parse)
{
    enum country_format f = (enum country_format)99;
    bool ok = country_format_parse(formats[_i].text, formats[_i].len, &f);
    ck_assert_msg(ok == formats[_i].ok, "'%s'", formats[_i].text);
    if (ok)
        ck_assert_int_eq(f, formats[_i].fmt);
    else
        ck_assert_int_eq(f, 99);
}
END_TEST

START_TEST(test_format_names)
{
    enum country_format all[] = {COUNTRY_FMT_ISO, COUNTRY_FMT_ISO_LOWERCASE, COUNTRY_FMT_FULL_NAME,
                                 COUNTRY_FMT_NO_SPACES};
    for (size_t i = 0; i < 4; i++) {
        enum country_format back;
        const char *name = country_format_name(all[i]);
        ck_assert(country_format_parse(name, strlen(name), &back));
        ck_assert_int_eq(back, all[i]);
    }
    ck_assert_str_eq(country_format_name(COUNTRY_FMT_NO_SPACES), "NO_SPACES");
    ck_assert_str_eq(country_format_name((enum country_format)42), "?");
    ck_assert(!country_format_parse(NULL, 3, &all[0]));
}
END_TEST

static const struct {
    const char *code;
    enum country_format fmt;
    const char *want;
} renders[] = {
    {"us", COUNTRY_FMT_ISO, "US"},
    {"US", COUNTRY_FMT_ISO_LOWERCASE, "us"},
    {"US", COUNTRY_FMT_FULL_NAME, "United States"},
    {"US", COUNTRY_FMT_NO_SPACES, "UnitedStates"},
    {"gb", COUNTRY_FMT_NO_SPACES, "UnitedKingdom"},
    {"DE", COUNTRY_FMT_NO_SPACES, "Germany"},
    {"CI", COUNTRY_FMT_FULL_NAME, "Cote d'Ivoire"},
    {"CI", COUNTRY_FMT_NO_SPACES, "CotedIvoire"},
    {"GW", COUNTRY_FMT_NO_SPACES, "GuineaBissau"},
    {"TL", COUNTRY_FMT_NO_SPACES, "TimorLeste"},
    {"BQ", COUNTRY_FMT_NO_SPACES, "BonaireSintEustatiusandSaba"},
    {"SH", COUNTRY_FMT_FULL_NAME, "Saint Helena, Ascension and Tristan da Cunha"},
    {"GS", COUNTRY_FMT_FULL_NAME, "South Georgia and the South Sandwich Islands"},
};

START_TEST(test_render)
{
    char out[COUNTRY_NAME_MAX];
    const struct country *c = country_lookup(renders[_i].code, 2);
    ck_assert_ptr_nonnull(c);
    memset(out, 'x', sizeof(out));
    size_t n = country_format_render(c, renders[_i].fmt, out, sizeof(out));
    ck_assert_str_eq(out, renders[_i].want);
    ck_assert_uint_eq(n, strlen(renders[_i].want));

    /* Exactly enough room fits; one byte less does not, and leaves "". */
    char exact[COUNTRY_NAME_MAX];
    ck_assert_uint_eq(country_format_render(c, renders[_i].fmt, exact, n + 1), n);
    ck_assert_str_eq(exact, renders[_i].want);
    memset(exact, 'x', sizeof(exact));
    ck_assert_uint_eq(country_format_render(c, renders[_i].fmt, exact, n), 0);
    ck_assert_int_eq(exact[0], '\0');
}
END_TEST

START_TEST(test_render_every_country)
{
    /* Every rendering of every country fits COUNTRY_NAME_MAX and is ASCII
     * letters (plus the name punctuation for FULL_NAME). */
    for (size_t i = 0; i < COUNTRY_COUNT; i++) {
        const struct country *c = country_at(i);
        char out[COUNTRY_NAME_MAX];
        ck_assert_uint_eq(country_format_render(c, COUNTRY_FMT_ISO, out, sizeof(out)), 2);
        ck_assert_str_eq(out, c->code);
        ck_assert_uint_eq(country_format_render(c, COUNTRY_FMT_ISO_LOWERCASE, out, sizeof(out)), 2);
        ck_assert(out[0] == c->code[0] + 32 && out[1] == c->code[1] + 32);
        ck_assert_uint_eq(country_format_render(c, COUNTRY_FMT_FULL_NAME, out, sizeof(out)),
                          c->name_len);
        size_t n = country_format_render(c, COUNTRY_FMT_NO_SPACES, out, sizeof(out));
        ck_assert_uint_gt(n, 0);
        for (size_t j = 0; j < n; j++)
            ck_assert((out[j] >= 'A' && out[j] <= 'Z') || (out[j] >= 'a' && out[j] <= 'z'));
    }
}
END_TEST

START_TEST(test_render_refused)
{
    char out[8] = "junk";
    const struct country *us = country_lookup("US", 2);
    ck_assert_uint_eq(country_format_render(NULL, COUNTRY_FMT_ISO, out, sizeof(out)), 0);
    ck_assert_int_eq(out[0], '\0');
    ck_assert_uint_eq(country_format_render(us, (enum country_format)7, out, sizeof(out)), 0);
    ck_assert_uint_eq(country_format_render(us, COUNTRY_FMT_ISO, out, 0), 0);
    ck_assert_uint_eq(country_format_render(us, COUNTRY_FMT_ISO, NULL, 8), 0);
    ck_assert_uint_eq(country_format_render(us, COUNTRY_FMT_ISO, out, 2), 0);
    ck_assert_uint_eq(country_format_render(us, COUNTRY_FMT_ISO, out, 3), 2);
    ck_assert_uint_eq(country_format_render(us, COUNTRY_FMT_FULL_NAME, out, sizeof(out)), 0);
    ck_assert_ptr_null(country_at(COUNTRY_COUNT));
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *country_suite(void)
{
    Suite *s = suite_create("country");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_table_complete);
    tcase_add_test(tc, test_lookup_all_676);
    tcase_add_loop_test(tc, test_spot_names, 0, N(spot));
    tcase_add_test(tc, test_lookup_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("format");
    tcase_add_loop_test(tc, test_format_parse, 0, N(formats));
    tcase_add_test(tc, test_format_names);
    tcase_add_loop_test(tc, test_render, 0, N(renders));
    tcase_add_test(tc, test_render_every_country);
    tcase_add_test(tc, test_render_refused);
    suite_add_tcase(s, tc);
    return s;
}
