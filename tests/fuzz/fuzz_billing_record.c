/*
 * libFuzzer target: billing_record_parse on any line, and the JSON written
 * for whatever it accepts: always produced (the buffer bound holds) and never
 * holding a raw control byte.
 */
#include <stdint.h>
#include <stdlib.h>

#include "billing_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[BILLING_LINE_MAX];
    static char json[6 * BILLING_LINE_MAX + 512];
    struct billing_record r;
    const char *err;
    if (billing_record_parse((const char *)data, size, &r, buf, sizeof(buf), &err) != 0) return 0;
    size_t n = billing_record_json(&r, json, sizeof(json));
    if (n == 0) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)json[i] < 0x20) abort();
    return 0;
}
