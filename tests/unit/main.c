/*
 * Runner for the agent's unit tests: every `Suite *<name>_suite(void)` defined
 * in tests/unit/test_*.c is listed in the generated suites.h and run here.
 * Ends with Check's own summary line; the exit status is non-zero on failure.
 */
#include <check.h>
#include <stdlib.h>

#include "log.h"
#include "suites.h"

int main(void)
{
    /* Refusals under test log warnings by design; UNIT_LOG=1 shows them. */
    if (!getenv("UNIT_LOG")) log_set_level(LOG_LVL_ERROR);
    Suite *(*const suites[])(void) = {UNIT_SUITES};
    SRunner *sr = srunner_create(NULL);

    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
