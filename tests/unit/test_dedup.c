/* The billing dedup window: membership, eviction of the oldest, survival
 * across reopen (the file is a shared mapping: a SIGKILL keeps every id), resizing. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dedup.h"

static char path[64];

static void setup(void)
{
    snprintf(path, sizeof(path), "/tmp/gw-dedup-test.XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
}

static void teardown(void)
{
    unlink(path);
}

static const char *id(int n)
{
    static char buf[48];
    snprintf(buf, sizeof(buf), "5f0c3a52-0000-4000-8000-%012d", n);
    return buf;
}

static bool seen(struct dedup *d, int n)
{
    return dedup_seen(d, id(n), strlen(id(n)));
}

static void add(struct dedup *d, int n)
{
    dedup_add(d, id(n), strlen(id(n)));
}

START_TEST(remembers_and_forgets_the_oldest)
{
    char err[256];
    struct dedup *d = dedup_open(path, 100, err, sizeof(err));
    ck_assert_ptr_nonnull(d);
    for (int i = 0; i < 100; i++) {
        ck_assert(!seen(d, i));
        add(d, i);
        ck_assert(seen(d, i));
    }
    add(d, 50); /* already there: nothing changes */
    ck_assert_uint_eq(dedup_count(d), 100);
    for (int i = 100; i < 130; i++)
        add(d, i);
    ck_assert_uint_eq(dedup_count(d), 100);
    for (int i = 0; i < 30; i++)
        ck_assert_msg(!seen(d, i), "id %d should have left the window", i);
    for (int i = 30; i < 130; i++)
        ck_assert_msg(seen(d, i), "id %d should still be in the window", i);
    dedup_close(d);
}
END_TEST

/* Many evictions through a small table exercise the backward-shift delete:
 * after it, every id still in the window must be found. */
START_TEST(eviction_keeps_every_probe_chain_intact)
{
    char err[256];
    struct dedup *d = dedup_open(path, 16, err, sizeof(err));
    ck_assert_ptr_nonnull(d);
    for (int i = 0; i < 5000; i++) {
        add(d, i);
        for (int j = i > 15 ? i - 15 : 0; j <= i; j++)
            ck_assert_msg(seen(d, j), "id %d lost after adding %d", j, i);
        if (i >= 16) ck_assert(!seen(d, i - 16));
    }
    dedup_close(d);
}
END_TEST

START_TEST(survives_reopen_and_goes_on_from_the_newest)
{
    char err[256];
    struct dedup *d = dedup_open(path, 64, err, sizeof(err));
    for (int i = 0; i < 100; i++) /* wraps: 36..99 remain */
        add(d, i);
    dedup_close(d);

    d = dedup_open(path, 64, err, sizeof(err));
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(dedup_count(d), 64);
    ck_assert(!seen(d, 35));
    ck_assert(seen(d, 36));
    ck_assert(seen(d, 99));
    add(d, 100); /* evicts the oldest (36), not a newer one */
    ck_assert(!seen(d, 36));
    ck_assert(seen(d, 37));
    ck_assert(seen(d, 100));
    dedup_close(d);
}
END_TEST

/* A process killed right after adding ids (no close, no munmap) leaves
 * them in the file: the mapping is shared, the page cache has them. */
START_TEST(ids_survive_a_sigkill)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[256];
        struct dedup *d = dedup_open(path, 64, err, sizeof(err));
        if (!d) _exit(1);
        for (int i = 0; i < 10; i++)
            add(d, i);
        kill(getpid(), SIGKILL);
        _exit(2);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char err[256];
    struct dedup *d = dedup_open(path, 64, err, sizeof(err));
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(dedup_count(d), 10);
    for (int i = 0; i < 10; i++)
        ck_assert(seen(d, i));
    ck_assert(!seen(d, 10));
    dedup_close(d);
}
END_TEST

START_TEST(resizing_keeps_the_newest)
{
    char err[256];
    struct dedup *d = dedup_open(path, 64, err, sizeof(err));
    for (int i = 0; i < 100; i++)
        add(d, i);
    dedup_close(d);
    d = dedup_open(path, 16, err, sizeof(err)); /* smaller: the newest 16 */
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(dedup_count(d), 16);
    ck_assert(!seen(d, 83));
    ck_assert(seen(d, 84));
    ck_assert(seen(d, 99));
    add(d, 100);
    ck_assert(!seen(d, 84));
    dedup_close(d);
    d = dedup_open(path, 1000, err, sizeof(err)); /* larger: all 16 stay */
    ck_assert_uint_eq(dedup_count(d), 16);
    ck_assert(seen(d, 85));
    ck_assert(seen(d, 100));
    dedup_close(d);
}
END_TEST

START_TEST(refuses_foreign_files_and_bad_sizes)
{
    char err[256];
    FILE *f = fopen(path, "w");
    fputs("not a window file, just some text that is long enough", f);
    fclose(f);
    ck_assert_ptr_null(dedup_open(path, 64, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "bad magic"));
    unlink(path);
    ck_assert_ptr_null(dedup_open(path, 1, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "must be"));
}
END_TEST

Suite *dedup_suite(void)
{
    Suite *s = suite_create("dedup");
    TCase *tc = tcase_create("window");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, remembers_and_forgets_the_oldest);
    tcase_add_test(tc, eviction_keeps_every_probe_chain_intact);
    tcase_add_test(tc, survives_reopen_and_goes_on_from_the_newest);
    tcase_add_test(tc, ids_survive_a_sigkill);
    tcase_add_test(tc, resizing_keeps_the_newest);
    tcase_add_test(tc, refuses_foreign_files_and_bad_sizes);
    suite_add_tcase(s, tc);
    return s;
}
