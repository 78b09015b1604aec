/*
 * The few pieces of namewire's wire format the C RPC programs share (docs/architecture.md):
 * a frame is a 4-byte big-endian length and a msgpack body; a body is an envelope array whose
 * first item is its kind (0 hello, 2 call, 3 reply, 4 error).
 */
#include <stdint.h>
#include <string.h>

/* A msgpack unsigned or small negative integer at *p (bounded by end); -1 on anything else. */
static __attribute__((unused)) int mp_int(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    const uint8_t *q = *p;
    if (q >= end)
        return -1;
    uint8_t b = *q++;
    if (b <= 0x7f) { *out = b; }
    else if (b >= 0xe0) { *out = (int8_t)b; }
    else if (b == 0xcc && end - q >= 1) { *out = q[0]; q += 1; }
    else if (b == 0xcd && end - q >= 2) { *out = (q[0] << 8) | q[1]; q += 2; }
    else if (b == 0xce && end - q >= 4) {
        *out = ((int64_t)q[0] << 24) | (q[1] << 16) | (q[2] << 8) | q[3]; q += 4;
    } else if (b == 0xd0 && end - q >= 1) { *out = (int8_t)q[0]; q += 1; }
    else if (b == 0xd1 && end - q >= 2) { *out = (int16_t)((q[0] << 8) | q[1]); q += 2; }
    else if (b == 0xd2 && end - q >= 4) {
        *out = (int32_t)(((uint32_t)q[0] << 24) | (q[1] << 16) | (q[2] << 8) | q[3]); q += 4;
    } else
        return -1;
    *p = q;
    return 0;
}

/* Appends the msgpack encoding of the 32-bit signed ``v``, smallest form; returns bytes written. */
static __attribute__((unused)) int mp_put_int(uint8_t *p, int64_t v)
{
    if (v >= 0 && v <= 0x7f) { p[0] = (uint8_t)v; return 1; }
    if (v < 0 && v >= -32) { p[0] = (uint8_t)(int8_t)v; return 1; }
    if (v >= 0 && v <= 0xff) { p[0] = 0xcc; p[1] = (uint8_t)v; return 2; }
    if (v >= 0 && v <= 0xffff) { p[0] = 0xcd; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v; return 3; }
    if (v >= 0 && v <= 0xffffffffLL) {
        p[0] = 0xce; p[1] = (uint8_t)(v >> 24); p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 8); p[4] = (uint8_t)v; return 5;
    }
    p[0] = 0xd2; p[1] = (uint8_t)(v >> 24); p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 8); p[4] = (uint8_t)v; return 5;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* A framed hello [0, 1, name, info] with ``info_mp`` (msgpack bytes of a map) as its info. */
static int build_hello_frame(uint8_t *out, const char *name, const uint8_t *info_mp, int info_len)
{
    int nlen = (int)strlen(name); /* under 32 bytes: a fixstr */
    uint8_t *p = out + 4;
    *p++ = 0x94; *p++ = 0x00; *p++ = 0x01;
    *p++ = (uint8_t)(0xa0 | nlen);
    memcpy(p, name, (size_t)nlen); p += nlen;
    memcpy(p, info_mp, (size_t)info_len); p += info_len;
    put_be32(out, (uint32_t)(p - out - 4));
    return (int)(p - out);
}
