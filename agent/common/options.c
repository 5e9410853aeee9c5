/*
 * Option tables for the daemons (see options.h): parsing from the
 * environment and argv, --help, and the value checks they share.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "options.h"

void options_usage(const struct options_program *prog, const struct option_def *defs, int n,
                   FILE *out)
{
    fprintf(out, "Usage: %s [OPTION]...\n%s\n", prog->name, prog->about);
    fprintf(out, "Each option can also be set by the environment variable shown; the option\n"
                 "wins when both are given.\n\n");
    for (int i = 0; i < n; i++) {
        const struct option_def *o = &defs[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s=%s", o->name,
                 o->kind == OPT_UINT   ? "N"
                 : o->kind == OPT_BOOL ? "BOOL"
                                       : "VALUE");
        fprintf(out, "  %-28s %s\n  %-28s env %s, default %s\n", left, o->help, "",
                o->env ? o->env : "-", o->def[0] ? o->def : "none");
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--help", "print this help and exit", "--version",
            "print the version and exit");
    if (prog->details) fprintf(out, "\n%s", prog->details);
}

int options_parse(const struct options_program *prog, const struct option_def *defs, int n,
                  int argc, char **argv, const char **values)
{
    struct option *longopts = calloc((size_t)n + 3, sizeof(*longopts));
    if (!longopts) {
        fprintf(stderr, "%s: out of memory\n", prog->name);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        const char *env = defs[i].env ? getenv(defs[i].env) : NULL;
        /* An empty variable (compose's "REDIS_PASSWORD=") is a value for
         * strings and "unset" for numbers and booleans. */
        bool set = env && (*env || defs[i].kind == OPT_STR);
        values[i] = set ? env : defs[i].def;
        longopts[i] = (struct option){defs[i].name, required_argument, NULL, 1000 + i};
    }
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n + 1] = (struct option){"version", no_argument, NULL, 'V'};

    int c, rc = -1;
    while (rc < 0 && (c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (c == 'h') {
            options_usage(prog, defs, n, stdout);
            rc = 0;
        } else if (c == 'V') {
            printf("%s %s\n", prog->name, prog->version);
            rc = 0;
        } else if (c < 1000 || c >= 1000 + n) {
            options_usage(prog, defs, n, stderr);
            rc = 2;
        } else {
            values[c - 1000] = optarg;
        }
    }
    if (rc < 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog->name, argv[optind]);
        rc = 2;
    }
    free(longopts);
    return rc;
}

bool options_uint(const char *prog, const struct option_def *o, const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-' || v < o->min || v > o->max) {
        fprintf(stderr, "%s: %s%s%s='%s': expected an integer in %u..%u\n", prog,
                o->env ? o->env : "", o->env ? " / --" : "--", o->name, s, o->min, o->max);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

bool options_bool(const char *prog, const struct option_def *o, const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes")) {
        *out = true;
        return true;
    }
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no")) {
        *out = false;
        return true;
    }
    fprintf(stderr, "%s: %s / --%s='%s': expected true or false\n", prog, o->env ? o->env : "-",
            o->name, s);
    return false;
}
