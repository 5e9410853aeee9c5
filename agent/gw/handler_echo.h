/*
 * Diagnostic "echo" handler (see handler_echo.c).
 */
#ifndef GW_HANDLER_ECHO_H
#define GW_HANDLER_ECHO_H

#include "spoa.h"

struct echo_config {
    unsigned delay_ms; /* answer this much later (0: synchronously) */
};

/* Fills *h; cfg must outlive the server. */
void handler_echo_init(struct spoa_handler *h, struct echo_config *cfg);

#endif
