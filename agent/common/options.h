/*
 * Command-line options and environment variables of the project's daemons
 * (gw-agent, gw-settle): each setting is one row of a table that also
 * produces --help, so a setting cannot be undocumented. An option wins over
 * its variable.
 */
#ifndef GW_OPTIONS_H
#define GW_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum opt_kind { OPT_STR, OPT_UINT, OPT_BOOL };

struct option_def {
    const char *name; /* --name */
    const char *env;  /* environment variable, or NULL */
    enum opt_kind kind;
    const char *def;   /* default, as text ("" for none) */
    unsigned min, max; /* OPT_UINT bounds */
    const char *help;
};

struct options_program {
    const char *name; /* for messages: "gw-agent" */
    const char *version;
    const char *about;   /* --help text before the option list */
    const char *details; /* --help text after it */
};

/* Fills values[i] for every row: the option if given, else the variable (an
 * empty variable counts for strings, and as unset for numbers and
 * booleans), else the default. Returns -1 to go on, or the exit status to
 * return at once: 0 after --help/--version, 2 on a usage error (printed). */
int options_parse(const struct options_program *prog, const struct option_def *defs, int n,
                  int argc, char **argv, const char **values);
void options_usage(const struct options_program *prog, const struct option_def *defs, int n,
                   FILE *out);

/* Value checks; each prints "<program>: VAR / --name='value': expected ..."
 * on failure. */
bool options_uint(const char *prog, const struct option_def *o, const char *s, unsigned *out);
bool options_bool(const char *prog, const struct option_def *o, const char *s, bool *out);

#endif
