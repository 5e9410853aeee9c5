/* pg.c's pure parts: libpq messages on one line, statements shortened for
 * the log. (pg_connect and pg_command run against a real PostgreSQL in the
 * integration tests: t_snapshot, t_settle, t_agent_state.) */
#include <check.h>
#include <string.h>

#include "pg.h"

START_TEST(message_on_one_line)
{
    char out[128];
    pg_message(out, sizeof(out), "connect",
               "connection to server at \"db\" failed:\n\tConnection refused\n\n");
    ck_assert_str_eq(out, "connect: connection to server at \"db\" failed: Connection refused");
    pg_message(out, sizeof(out), NULL, "  ERROR:  relation \"x\" does not exist\n");
    ck_assert_str_eq(out, "ERROR: relation \"x\" does not exist");
    pg_message(out, sizeof(out), "COMMIT", "");
    ck_assert_str_eq(out, "COMMIT: unknown error");
    pg_message(out, 12, "a", "0123456789abcdef"); /* cut to the buffer */
    ck_assert_str_eq(out, "a: 01234567");
}
END_TEST

START_TEST(statement_shortened)
{
    char buf[64];
    ck_assert_str_eq(pg_statement("COMMIT", buf, sizeof(buf)), "COMMIT");
    const char *decl = "DECLARE gw_settle_balances NO SCROLL CURSOR FOR SELECT u.username, "
                       "b.traffic_bytes - b.used_bytes FROM users u JOIN balances b";
    const char *s = pg_statement(decl, buf, sizeof(buf));
    ck_assert_uint_eq(strlen(s), 51);
    ck_assert_mem_eq(s, decl, 48);
    ck_assert_str_eq(s + 48, "...");
}
END_TEST

Suite *pg_suite(void)
{
    Suite *s = suite_create("pg");
    TCase *tc = tcase_create("messages");
    tcase_add_test(tc, message_on_one_line);
    tcase_add_test(tc, statement_shortened);
    suite_add_tcase(s, tc);
    return s;
}
