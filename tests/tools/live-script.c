/*
 * live-script: prints one of the live balance's Redis scripts (agent/live_lua.h)
 * so that tests/integration/t_live.sh can run the accounting arithmetic in a
 * real Redis with inputs of its choosing.
 *
 *   live-script progress|push|release
 *
 * "release" prints a script taking one record (ARGV[1]) that does what
 * gw-settle's acknowledgement does for each record it removes.
 */
#include <stdio.h>
#include <string.h>

#include "live_lua.h"

static const char release_one[] = LIVE_LUA_RELEASE "release(ARGV[1])\nreturn 1\n";

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "progress") == 0) {
        fputs(live_lua_progress, stdout);
    } else if (argc == 2 && strcmp(argv[1], "push") == 0) {
        fputs(live_lua_push, stdout);
    } else if (argc == 2 && strcmp(argv[1], "release") == 0) {
        fputs(release_one, stdout);
    } else {
        fprintf(stderr, "usage: live-script progress|push|release\n");
        return 2;
    }
    return 0;
}
