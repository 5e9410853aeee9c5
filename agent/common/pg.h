/*
 * What the snapshot loader (gw-agent) and gw-settle share about PostgreSQL:
 * one way to connect (keepalives, timeouts, server notices to the log, a
 * LISTEN channel), statements that return nothing to read, and libpq's
 * messages on one line for the log.
 */
#ifndef GW_PG_H
#define GW_PG_H

#include <libpq-fe.h>
#include <stddef.h>

struct pg_params {
    const char *uri;              /* a URI or a conninfo string; overrides the defaults */
    const char *application_name; /* shows in pg_stat_activity */
    unsigned connect_timeout_s;
    unsigned statement_timeout_s;
    const char *listen;     /* LISTEN this channel (a plain identifier); NULL: none */
    const char *log_prefix; /* for server notices, e.g. "snapshot" */
};

/* Connects with TCP keepalives and the timeouts, sends server notices to
 * the log, LISTENs. NULL with err set ("connect: ...", or the statement
 * that failed) on failure. */
PGconn *pg_connect(const struct pg_params *p, char *err, size_t errlen);

/* Runs a statement whose rows, if any, are not read (BEGIN, SET, DECLARE,
 * COMMIT, ...). 0, or -1 with err = "<statement>: <message>" (the statement
 * shortened). */
int pg_command(PGconn *c, const char *sql, char *err, size_t errlen);

/* "<what>: <msg>" (just msg when what is NULL) on one line: white space
 * runs, libpq's line breaks included, become one space. */
void pg_message(char *out, size_t cap, const char *what, const char *msg);

/* The start of sql for a log line: up to 48 bytes, then "..." (buf: cap >= 52). */
const char *pg_statement(const char *sql, char *buf, size_t cap);

#endif
