/*
 * The msgpack subset of the direct call path (_native.c, "direct calls"): decoding a call's
 * arguments and encoding its result without the Python codec.
 *
 * It is a shortcut, never a second judge: it takes exactly the values the wire codec
 * (wire/_codecs.py: msgpack with raw=False, strict_map_key=False; a Packer with use_bin_type=True)
 * gives and takes the same way, and for anything else it answers "not mine" (NULL / -1, with no
 * exception left set), so the frame or the result goes the ordinary way, through Python, where the
 * protocol's own code decides. Not mine: ext types, invalid UTF-8, unhashable map keys, nesting
 * deeper than MP_MAX_DEPTH, trailing bytes, subclasses of the built-in types, ints beyond 64 bits.
 * tests/test_direct_calls.py holds it to byte-for-byte agreement with msgpack-python.
 */
#ifndef NAMEWIRE_NATIVE_MSGPACK_H
#define NAMEWIRE_NATIVE_MSGPACK_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MP_MAX_DEPTH 32

typedef struct {
    const unsigned char *p, *end;
} MpReader;

static inline uint64_t
mp_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The length that follows a container or string tag of `n` bytes; -1 past the end. */
static inline Py_ssize_t
mp_len(MpReader *r, int n)
{
    if (r->end - r->p < n)
        return -1;
    uint64_t v = mp_be(r->p, n);
    r->p += n;
    return (Py_ssize_t)v;
}

static PyObject *mp_decode(MpReader *r, int depth);

static PyObject *
mp_decode_str(MpReader *r, Py_ssize_t n)
{
    if (n < 0 || r->end - r->p < n)
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, n, NULL);
    r->p += n;
    return s;
}

static PyObject *
mp_decode_bin(MpReader *r, Py_ssize_t n)
{
    if (n < 0 || r->end - r->p < n)
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize((const char *)r->p, n);
    r->p += n;
    return b;
}

static PyObject *
mp_decode_array(MpReader *r, Py_ssize_t n, int depth)
{
    /* Each element takes at least one byte: a length beyond what is left is a lie. */
    if (n < 0 || n > r->end - r->p || depth >= MP_MAX_DEPTH)
        return NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = mp_decode(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
mp_decode_map(MpReader *r, Py_ssize_t n, int depth)
{
    if (n < 0 || n > (r->end - r->p) / 2 || depth >= MP_MAX_DEPTH)
        return NULL;
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = mp_decode(r, depth + 1);
        PyObject *value = key != NULL ? mp_decode(r, depth + 1) : NULL;
        int failed = value == NULL || PyDict_SetItem(dict, key, value) < 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (failed) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* One value; NULL when it is not one this subset takes (an exception may be set: the caller
 * clears it, the Python codec will meet the same bytes and say what is wrong). */
static PyObject *
mp_decode(MpReader *r, int depth)
{
    if (r->p >= r->end)
        return NULL;
    unsigned char tag = *r->p++;
    if (tag <= 0x7f)
        return PyLong_FromLong(tag);
    if (tag >= 0xe0)
        return PyLong_FromLong((int8_t)tag);
    if (tag >= 0xa0 && tag <= 0xbf)
        return mp_decode_str(r, tag & 0x1f);
    if (tag >= 0x90 && tag <= 0x9f)
        return mp_decode_array(r, tag & 0x0f, depth);
    if (tag >= 0x80 && tag <= 0x8f)
        return mp_decode_map(r, tag & 0x0f, depth);
    Py_ssize_t left = r->end - r->p;
    switch (tag) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int n = 1 << (tag - 0xcc);
        if (left < n)
            return NULL;
        uint64_t v = mp_be(r->p, n);
        r->p += n;
        return PyLong_FromUnsignedLongLong(v);
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (tag - 0xd0);
        if (left < n)
            return NULL;
        uint64_t v = mp_be(r->p, n);
        r->p += n;
        int64_t s = n == 1 ? (int8_t)v : n == 2 ? (int16_t)v : n == 4 ? (int32_t)v : (int64_t)v;
        return PyLong_FromLongLong(s);
    }
    case 0xca: {
        if (left < 4)
            return NULL;
        uint32_t bits = (uint32_t)mp_be(r->p, 4);
        r->p += 4;
        float f;
        memcpy(&f, &bits, 4);
        return PyFloat_FromDouble(f);
    }
    case 0xcb: {
        if (left < 8)
            return NULL;
        uint64_t bits = mp_be(r->p, 8);
        r->p += 8;
        double d;
        memcpy(&d, &bits, 8);
        return PyFloat_FromDouble(d);
    }
    case 0xd9: return mp_decode_str(r, mp_len(r, 1));
    case 0xda: return mp_decode_str(r, mp_len(r, 2));
    case 0xdb: return mp_decode_str(r, mp_len(r, 4));
    case 0xc4: return mp_decode_bin(r, mp_len(r, 1));
    case 0xc5: return mp_decode_bin(r, mp_len(r, 2));
    case 0xc6: return mp_decode_bin(r, mp_len(r, 4));
    case 0xdc: return mp_decode_array(r, mp_len(r, 2), depth);
    case 0xdd: return mp_decode_array(r, mp_len(r, 4), depth);
    case 0xde: return mp_decode_map(r, mp_len(r, 2), depth);
    case 0xdf: return mp_decode_map(r, mp_len(r, 4), depth);
    default: /* ext types (0xc7-0xc9, 0xd4-0xd8) and the unused tag 0xc1 */
        return NULL;
    }
}

/* --- encoding -------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} MpBuf;

static int
mp_grow(MpBuf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int
mp_put(MpBuf *b, const void *src, Py_ssize_t n)
{
    if (mp_grow(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

/* A tag and a big-endian number of `n` bytes. */
static inline int
mp_put_tagged(MpBuf *b, unsigned char tag, uint64_t v, int n)
{
    unsigned char out[9];
    out[0] = tag;
    for (int i = 0; i < n; i++)
        out[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return mp_put(b, out, 1 + n);
}

/* What msgpack-python's packer writes for an int: the smallest form, unsigned when >= 0. */
static int
mp_put_int(MpBuf *b, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        return mp_put_tagged(b, 0xcf, u, 8);
    }
    if (overflow < 0 || (v == -1 && PyErr_Occurred()))
        return -1;
    if (v >= 0) {
        if (v < 0x80)
            return mp_put_tagged(b, (unsigned char)v, 0, 0);
        if (v < 0x100)
            return mp_put_tagged(b, 0xcc, v, 1);
        if (v < 0x10000)
            return mp_put_tagged(b, 0xcd, v, 2);
        if (v < 0x100000000LL)
            return mp_put_tagged(b, 0xce, v, 4);
        return mp_put_tagged(b, 0xcf, v, 8);
    }
    if (v >= -32)
        return mp_put_tagged(b, (unsigned char)(int8_t)v, 0, 0);
    if (v >= -128)
        return mp_put_tagged(b, 0xd0, (uint8_t)(int8_t)v, 1);
    if (v >= -32768)
        return mp_put_tagged(b, 0xd1, (uint16_t)(int16_t)v, 2);
    if (v >= -2147483648LL)
        return mp_put_tagged(b, 0xd2, (uint32_t)(int32_t)v, 4);
    return mp_put_tagged(b, 0xd3, (uint64_t)v, 8);
}

/* The header of a string (str8 and up, as use_bin_type=True allows), a bin, an array or a map. */
static int
mp_put_head(MpBuf *b, Py_ssize_t n, unsigned char fix, Py_ssize_t fix_max, unsigned char t8,
            unsigned char t16, unsigned char t32)
{
    if (n <= fix_max)
        return mp_put_tagged(b, (unsigned char)(fix | n), 0, 0);
    if (t8 && n < 0x100)
        return mp_put_tagged(b, t8, n, 1);
    if (n < 0x10000)
        return mp_put_tagged(b, t16, n, 2);
    if ((uint64_t)n <= 0xffffffffULL)
        return mp_put_tagged(b, t32, n, 4);
    return -1;
}

/* Append `obj`; -1 when it is not a value this subset writes (or out of memory): the caller
 * clears any exception and lets the Python codec try, which raises EncodeError if it cannot. */
static int
mp_encode(MpBuf *b, PyObject *obj, int depth)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (obj == Py_None)
        return mp_put_tagged(b, 0xc0, 0, 0);
    if (obj == Py_True)
        return mp_put_tagged(b, 0xc3, 0, 0);
    if (obj == Py_False)
        return mp_put_tagged(b, 0xc2, 0, 0);
    if (type == &PyLong_Type)
        return mp_put_int(b, obj);
    if (type == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(obj);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        return mp_put_tagged(b, 0xcb, bits, 8);
    }
    if (type == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(obj, &n); /* fails on lone surrogates */
        if (s == NULL || mp_put_head(b, n, 0xa0, 31, 0xd9, 0xda, 0xdb) < 0)
            return -1;
        return mp_put(b, s, n);
    }
    if (type == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(obj);
        if (mp_put_head(b, n, 0, -1, 0xc4, 0xc5, 0xc6) < 0)
            return -1;
        return mp_put(b, PyBytes_AS_STRING(obj), n);
    }
    if (depth >= MP_MAX_DEPTH)
        return -1;
    if (type == &PyList_Type || type == &PyTuple_Type) {
        /* A list cannot change under us: nothing here runs Python code. */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);
        PyObject **items = PySequence_Fast_ITEMS(obj);
        if (mp_put_head(b, n, 0x90, 15, 0, 0xdc, 0xdd) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            if (mp_encode(b, items[i], depth + 1) < 0)
                return -1;
        return 0;
    }
    if (type == &PyDict_Type) {
        if (mp_put_head(b, PyDict_GET_SIZE(obj), 0x80, 15, 0, 0xde, 0xdf) < 0)
            return -1;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(obj, &pos, &key, &value))
            if (mp_encode(b, key, depth + 1) < 0 || mp_encode(b, value, depth + 1) < 0)
                return -1;
        return 0;
    }
    return -1;
}

#endif
