/*
 * Writing JSON strings: the one rule for every JSON string the gateway
 * writes (billing records in traffic:logs, dead letters in
 * traffic:logs:dead), since other systems read them.
 *
 * The rule, byte by byte:
 *   '"' and '\\'               -> \" and \\
 *   \b \f \n \r \t             -> their two-character escapes
 *   other bytes < 0x20, 0x7F   -> \u00XX (lower-case hex)
 *   valid UTF-8 (utf8.h)       -> copied as is
 *   any other byte             -> \ufffd (U+FFFD, the replacement character),
 *                                 one per byte
 * which is what Go's encoding/json writes for the reference's records, so a
 * consumer built for the reference sees the same text. The output is always
 * valid JSON and valid UTF-8, whatever the input.
 */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stddef.h>

#include "textbuf.h"

/* Bytes a JSON string of len input bytes can take, quotes included. */
#define JSON_STRING_MAX(len) ((len)*6 + 2)

/* Appends s[0..len) as a JSON string, quotes included (s may be NULL when len
 * is 0). */
void json_put_string(struct textbuf *b, const char *s, size_t len);

#endif
