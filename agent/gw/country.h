/*
 * ISO 3166-1 alpha-2 country codes, their English names, and the
 * `country_format` renderings a provider row can ask for (reference README:
 * ISO, ISO_LOWERCASE, FULL_NAME, NO_SPACES).
 *
 * The table is constant and compiled in: lookups touch no mutable state and
 * are safe from any thread. Every name is plain ASCII.
 */
#ifndef GW_COUNTRY_H
#define GW_COUNTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Number of officially assigned ISO 3166-1 alpha-2 codes in the table. */
#define COUNTRY_COUNT 249

/* Longest name in the table plus its NUL: a render buffer of this size
 * always fits. */
#define COUNTRY_NAME_MAX 48

struct country {
    char code[3];     /* upper-case alpha-2 code, NUL-terminated */
    uint8_t name_len; /* bytes in name, without the NUL */
    const char *name; /* English short name, ASCII, static storage */
};

enum country_format {
    COUNTRY_FMT_ISO,           /* "US" */
    COUNTRY_FMT_ISO_LOWERCASE, /* "us" */
    COUNTRY_FMT_FULL_NAME,     /* "United States" */
    COUNTRY_FMT_NO_SPACES,     /* "UnitedStates": letters and digits only */
};

/* The country for a 2-letter code, any letter case; NULL when the code is not
 * an assigned ISO 3166-1 alpha-2 code (including when len != 2). O(1). */
const struct country *country_lookup(const char *code, size_t len);

/* The i-th country in code order, i < COUNTRY_COUNT; NULL past the end. */
const struct country *country_at(size_t i);

/* Parses a provider's `country_format` value: exactly one of "ISO",
 * "ISO_LOWERCASE", "FULL_NAME", "NO_SPACES", compared case-insensitively
 * (ASCII) with no surrounding spaces. Returns false, leaving *out alone, for
 * anything else, including the empty string: a loader that reads SQL NULL
 * applies the column default "ISO" itself. */
bool country_format_parse(const char *s, size_t len, enum country_format *out);

/* The canonical spelling of a format ("ISO", ...), for logs; "?" if invalid. */
const char *country_format_name(enum country_format f);

/* Writes c in format f into out as a NUL-terminated string. Returns its length
 * (without the NUL), or 0 when it does not fit in cap bytes (out then holds
 * an empty string if cap > 0) or f is not a valid format. */
size_t country_format_render(const struct country *c, enum country_format f, char *out, size_t cap);

#endif /* GW_COUNTRY_H */
