/*
 * SPOP frame header: the 4-byte length prefix, frame type, flags, stream-id
 * and frame-id (doc/SPOE.txt section 3.2).
 *
 * The parser decides from the length prefix alone whether a frame is too big,
 * so a hostile peer cannot make the agent buffer more than one frame's worth
 * of bytes before being refused.
 */
#include <arpa/inet.h>
#include <string.h>

#include "spop.h"

int spop_frame_parse(const uint8_t *buf, size_t len, uint32_t max_frame_size, struct spop_frame *f,
                     size_t *consumed)
{
    if (len < 4) return SPOP_INCOMPLETE;
    uint32_t flen;
    memcpy(&flen, buf, 4);
    flen = ntohl(flen);
    if (flen > max_frame_size) return SPOP_ERR_TOO_BIG;
    /* type + flags + two one-byte varints at the very least */
    if (flen < 7) return SPOP_ERR_INVALID;
    if (len - 4 < flen) return SPOP_INCOMPLETE;

    struct spop_reader r = {buf + 4, buf + 4 + flen};
    f->type = *r.p++;
    memcpy(&f->flags, r.p, 4);
    f->flags = ntohl(f->flags);
    r.p += 4;
    if (!spop_get_varint(&r, &f->stream_id) || !spop_get_varint(&r, &f->frame_id))
        return SPOP_ERR_INVALID;
    f->payload = r.p;
    f->payload_len = (size_t)(r.end - r.p);
    *consumed = 4 + (size_t)flen;
    return SPOP_OK;
}

size_t spop_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                        uint64_t frame_id)
{
    size_t start = w->len;
    uint8_t hdr[9] = {0, 0, 0, 0, type};
    uint32_t nflags = htonl(flags ? flags : SPOP_FLAG_FIN);

    memcpy(hdr + 5, &nflags, 4);
    spop_put_bytes(w, hdr, sizeof(hdr));
    spop_put_varint(w, stream_id);
    spop_put_varint(w, frame_id);
    return start;
}

bool spop_frame_end(struct spop_writer *w, size_t start, uint32_t max_frame_size)
{
    if (w->overflow) return false;
    size_t flen = w->len - start - 4;
    if (flen > max_frame_size) {
        w->overflow = true;
        return false;
    }
    uint32_t n = htonl((uint32_t)flen);
    memcpy(w->buf + start, &n, 4);
    return true;
}
