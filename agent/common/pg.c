/*
 * PostgreSQL helpers shared by the snapshot loader and gw-settle (pg.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "pg.h"

void pg_message(char *out, size_t cap, const char *what, const char *msg)
{
    if (cap == 0) return;
    if (msg == NULL || msg[0] == '\0') msg = "unknown error";
    if (what != NULL)
        snprintf(out, cap, "%s: %s", what, msg);
    else
        snprintf(out, cap, "%s", msg);
    size_t n = 0;
    for (const char *p = out; *p; p++) {
        bool space = *p == ' ' || *p == '\n' || *p == '\r' || *p == '\t';
        if (space && (n == 0 || out[n - 1] == ' ')) continue;
        out[n++] = space ? ' ' : *p;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

const char *pg_statement(const char *sql, char *buf, size_t cap)
{
    if (strlen(sql) <= 48) return sql;
    snprintf(buf, cap, "%.48s...", sql);
    return buf;
}

int pg_command(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(res);
    int rc = 0;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        char what[64];
        pg_message(err, errlen, pg_statement(sql, what, sizeof(what)),
                   res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c));
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/* Server messages outside a query (a FATAL before the server closes the
 * connection, say) go to the log instead of libpq's default, stderr. */
static void notice_to_log(void *arg, const char *msg)
{
    char line[512];
    pg_message(line, sizeof(line), "PostgreSQL says", msg);
    log_warn("%s: %s", (const char *)arg, line);
}

PGconn *pg_connect(const struct pg_params *p, char *err, size_t errlen)
{
    char ct[16];
    snprintf(ct, sizeof(ct), "%u", p->connect_timeout_s);
    /* Defaults first: the URI (dbname, expanded) may override any of them. */
    const char *keys[] = {"connect_timeout",
                          "application_name",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          NULL};
    const char *vals[] = {ct, p->application_name, "1", "30", "10", "3", "30000", p->uri, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(err, errlen, "connect: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        pg_message(err, errlen, "connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_to_log, (void *)p->log_prefix);
    char sql[96];
    snprintf(sql, sizeof(sql), "SET statement_timeout = '%us'", p->statement_timeout_s);
    if (pg_command(c, sql, err, errlen) != 0) goto fail;
    if (p->listen != NULL) {
        snprintf(sql, sizeof(sql), "LISTEN %s", p->listen);
        if (pg_command(c, sql, err, errlen) != 0) goto fail;
    }
    return c;
fail:
    PQfinish(c);
    return NULL;
}
