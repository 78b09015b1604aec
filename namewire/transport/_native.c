/*
 * namewire.transport._native: the per-packet path of stream sockets, in C (Linux, epoll).
 *
 * Why: on loopback a ping-pong echo spends ~4.5 us per packet in the kernel; a Python server on
 * uvloop's transports adds ~0.7 us of loop machinery and ~1.5 us of Python per packet before the
 * handler does any work. This module keeps the syscalls (one recv, one send per packet) and does
 * the rest in C: framing, the receive queue, the write buffer, and resuming the handler.
 *
 * Reactor  one epoll set per event loop, nested in it: the loop watches the epoll fd with
 *          add_reader() and calls poll(), which handles every ready connection in one go and
 *          then writes out what the handlers wrote (one send per connection per poll).
 * Conn     one connection: framing (4-byte big-endian length + body), received packets waiting
 *          for recv(), the output buffer, and the handler "fiber".
 *
 * The fiber. A Listener runs each connection's handler coroutine inside an asyncio Task (the
 * "host"), but while the handler waits in recv() on its own connection the host is not involved:
 * a packet arriving resumes the coroutine directly from poll(), in the host's context and with
 * the host as asyncio.current_task(), and the handler runs until it waits in recv() again. Only
 * other awaits (a future, sleep(0)), the end of the handler and cancellation go through the host
 * task (Python, _native_stream.py). A coroutine not run as a fiber (any other task awaiting
 * recv()) gets an ordinary future.
 *
 * Python decides everything that is not per packet: errors, end of stream, closing, lingering.
 * The C side reports those through owner._event(kind, arg); the owner is the Conn itself (its
 * Python subclass, NativeStreamSocket).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

#include "_native_msgpack.h"

#define SCRATCH_SIZE (256 * 1024)
#define MAX_EVENTS 256
#define HEADER_SIZE 4
#define MAX_BODY 0xFFFFFFFFu
/* A packet this large is sent straight from its bytes object when nothing is buffered. */
#define DIRECT_SEND_MIN (64 * 1024)
/* A body larger than this is first gathered in a staging buffer that grows with what arrives, and
 * gets its bytes object of the full size only once a quarter of it is in (STAGE_COMMIT_DIV): a
 * peer announcing a frame and then sending nothing costs this much, not the announced size. */
#define STAGE_MIN (64 * 1024)
#define STAGE_COMMIT_DIV 4
/* Direct calls: at most this many arguments (more go through Python), and the replies of one
 * read are sent early once this many bytes wait, so the caller works on them meanwhile. */
#define DIRECT_MAX_ARGS 16
/* The envelope kinds of a call and a reply (wire/_envelopes.py; the module exports them, and the
 * tests check that they agree). */
#define WIRE_KIND_CALL 2
#define WIRE_KIND_REPLY 3
#define DIRECT_FLUSH_BYTES (16 * 1024)
/* An emptied output buffer larger than this is given back to the allocator. */
#define OUT_KEEP (64 * 1024)
/* The first output buffer of a connection, doubled as writes need: an idle connection that only
 * wrote its hello keeps this much (a busy one grows to its batch size once and keeps that). */
#define OUT_FIRST 256

/* Events reported to Python through owner._event(kind, arg). */
enum {
    EV_EOF = 0,        /* the peer closed its side: arg = bytes of an incomplete frame */
    EV_RECV_ERROR = 1, /* arg = errno */
    EV_OVERSIZE = 2,   /* arg = announced frame size */
    EV_DRAINED = 3,    /* output fell to the low-water mark while someone waits for it */
    EV_SEND_ERROR = 4, /* arg = errno */
    EV_FIBER = 5,      /* the fiber left recv(): arg = (kind, obj), kinds below */
};

/* How a fiber step ended. */
enum { STEP_YIELD = 0, STEP_RETURN = 1, STEP_RAISE = 2, STEP_PARKED = 3 };

typedef struct ConnObject ConnObject;

typedef struct {
    PyObject_HEAD
    int epfd;
    char *scratch;
    PyObject *loop;
    PyObject *call_soon;
    PyObject *enter_task;
    PyObject *leave_task;
    PyObject *flush_cb;  /* bound self.flush, handed to call_soon */
    ConnObject *dirty;   /* connections with output to send (each holds a reference) */
    /* fd -> Conn for every connection in the epoll set. The reactor holds them, not the set
     * itself: a loop closed with connections still open then leaves a cycle the garbage
     * collector can see (loop, reactor, connections), instead of immortal connections that keep
     * their loop alive. */
    PyObject *members;
    PyObject *detached;  /* epoll references dropped during poll(), released after it */
    PyObject *weakrefs;
    int in_poll;
    int flush_scheduled;
    Py_ssize_t conns;
} ReactorObject;

struct ConnObject {
    PyObject_HEAD
    ReactorObject *reactor;
    int fd;
    int registered; /* in the epoll set (the set holds a reference) */
    uint32_t events;
    int framed;
    uint32_t max_frame;
    Py_ssize_t queue_limit;
    Py_ssize_t high_water;
    Py_ssize_t low_water;
    /* read side */
    unsigned char hdr[HEADER_SIZE];
    int hdr_have;
    int in_body;        /* a header was read: body_size bytes of body follow */
    Py_ssize_t body_size;
    Py_ssize_t partial_have; /* bytes of that body received */
    PyObject *partial;  /* the body's bytes object, once committed (see body_room) */
    char *stage;        /* the body so far, before it is committed */
    Py_ssize_t stage_cap;
    PyObject *queue; /* list of packets; queue[qhead:] wait for recv() */
    Py_ssize_t qhead;
    Py_ssize_t queued; /* bytes in the queue */
    int reading;       /* EPOLLIN wanted (not ended) */
    int eof;           /* the peer closed its side */
    int paused;        /* reading paused: the queue is over its limit */
    int user_paused;   /* reading paused by pause_reading() (session mode), independent of it */
    PyObject *receiver; /* session mode: called with each read's whole frames, as one list */
    PyObject *batch;    /* the frames cut from the read being handled, for the receiver */
    /* direct calls (session mode; see "direct calls" below) */
    PyObject *direct;     /* dict: function name -> callable answered here, or NULL */
    PyObject *stats_of;   /* stats_of(name) -> the CallStats counting it, or NULL: not counted */
    PyObject *aside;      /* aside(body, outcome, failed, started): what C does not answer */
    PyObject *last_func;  /* the name of the last function called directly, and its stats */
    PyObject *last_stats;
    long long stats_base;     /* last_stats.calls when this read began counting in it (-1: not) */
    long long stats_pending;  /* calls counted here since, not yet written back (direct_settle) */
    uint32_t peer_max_frame;
    double read_started;  /* CLOCK_MONOTONIC (perf_counter) at the read's first direct call */
    unsigned long long direct_calls, direct_in, direct_out;
    PyObject *pending;    /* matched replies: the core's table of calls made, id -> (future, ...) */
    unsigned long long direct_replies;
    int finished;      /* no packet will be queued any more */
    PyObject *recv_exc; /* raised by recv() once finished and drained */
    PyObject *send_exc; /* raised by send() */
    PyObject *waiter;   /* the future of a task waiting in recv() */
    /* fiber */
    PyObject *coro;
    PyObject *host;
    PyObject *context;
    int in_fiber; /* the fiber's coroutine is running now */
    int parked;   /* the fiber waits in recv() */
    /* write side */
    char *out;
    Py_ssize_t out_start, out_end, out_cap;
    ConnObject *next_dirty;
    int is_dirty;
    int want_drain;
    unsigned long long send_calls;
    PyObject *dict;
    PyObject *weakrefs;
};

static PyTypeObject ReactorType;
static PyTypeObject ConnType;
static PyTypeObject RecvOpType;
static PyTypeObject DoneType;
static PyObject *Park; /* what a parked fiber yields */
static PyObject *Done; /* the awaitable send() returns when it need not wait */
static PyObject *str_event, *str_drain, *str_result, *str_create_future, *str_throw;
static PyObject *str_set_result, *str_set_exception, *str_done, *str_blocking;

/* --- small helpers ------------------------------------------------------------------------ */

/* The exception being raised, taken out of the error indicator (normalized, with its traceback),
 * and put back. Public API only: 3.12 has a one-object form; 3.11 has only the deprecated triple. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Steals `exc` (NULL: nothing to restore). */
static void
restore_exception(PyObject *exc)
{
    if (exc == NULL)
        return;
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Return `value` from send()/__next__: raise StopIteration(value). A tuple or an exception must be
 * wrapped in the StopIteration first, or raising it would unpack or raise the value itself
 * (what CPython's generators do, without its private _PyGen_SetStopIterationValue). */
static void
set_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return;
    }
    if (!PyTuple_Check(value) && !PyExceptionInstance_Check(value)) {
        PyErr_SetObject(PyExc_StopIteration, value);
        return;
    }
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop == NULL)
        return;
    PyErr_SetObject(PyExc_StopIteration, stop);
    Py_DECREF(stop);
}

static void
report(ConnObject *c, int kind, PyObject *arg)
{
    PyObject *k = PyLong_FromLong(kind);
    PyObject *r = k ? PyObject_CallMethodObjArgs((PyObject *)c, str_event, k, arg, NULL) : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(r);
    Py_XDECREF(k);
}

static void
report_int(ConnObject *c, int kind, long long value)
{
    PyObject *arg = PyLong_FromLongLong(value);
    if (arg == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    report(c, kind, arg);
    Py_DECREF(arg);
}

static inline int
wants_read(ConnObject *c)
{
    return c->reading && !c->paused && !c->user_paused;
}

static int
epoll_update(ConnObject *c)
{
    uint32_t want = (wants_read(c) ? EPOLLIN : 0) | (c->out_end > c->out_start ? EPOLLOUT : 0);
    if (c->fd < 0 || !c->registered || want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->reactor->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->events = want;
    return 0;
}

static void
epoll_update_or_report(ConnObject *c)
{
    if (epoll_update(c) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
}

/* --- the output buffer -------------------------------------------------------------------- */

static void flush_conn(ConnObject *c);

static void
mark_dirty(ConnObject *c)
{
    if (c->is_dirty)
        return;
    ReactorObject *r = c->reactor;
    c->is_dirty = 1;
    Py_INCREF(c);
    c->next_dirty = r->dirty;
    r->dirty = c;
    if (!r->in_poll && !r->flush_scheduled) {
        PyObject *h = PyObject_CallOneArg(r->call_soon, r->flush_cb);
        if (h == NULL) {
            /* Loop closed: nothing will run the flush; write now instead. */
            PyErr_Clear();
            return;
        }
        Py_DECREF(h);
        r->flush_scheduled = 1;
    }
}

static int
out_reserve(ConnObject *c, Py_ssize_t more)
{
    if (c->out_start > 0 && c->out_start == c->out_end)
        c->out_start = c->out_end = 0;
    if (c->out_end + more <= c->out_cap)
        return 0;
    Py_ssize_t used = c->out_end - c->out_start;
    if (c->out_start > 0 && used + more <= c->out_cap) {
        memmove(c->out, c->out + c->out_start, used);
        c->out_start = 0;
        c->out_end = used;
        return 0;
    }
    Py_ssize_t cap = c->out_cap ? c->out_cap : OUT_FIRST;
    while (cap < used + more)
        cap *= 2;
    char *buf = PyMem_Malloc(cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (used)
        memcpy(buf, c->out + c->out_start, used);
    PyMem_Free(c->out);
    c->out = buf;
    c->out_cap = cap;
    c->out_start = 0;
    c->out_end = used;
    return 0;
}

static void
out_reset(ConnObject *c)
{
    c->out_start = c->out_end = 0;
    if (c->out_cap > OUT_KEEP) {
        PyMem_Free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

/* Send what is buffered; on EAGAIN wait for EPOLLOUT. Reports a failure once. */
static void
flush_conn(ConnObject *c)
{
    while (c->out_start < c->out_end && c->fd >= 0) {
        ssize_t n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        c->send_calls++;
        if (n >= 0) {
            c->out_start += n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        int err = errno;
        out_reset(c);
        epoll_update_or_report(c);
        report_int(c, EV_SEND_ERROR, err);
        return;
    }
    Py_ssize_t pending = c->out_end - c->out_start;
    if (pending == 0)
        out_reset(c);
    epoll_update_or_report(c);
    if (c->want_drain && pending <= c->low_water) {
        c->want_drain = 0;
        report(c, EV_DRAINED, Py_None);
    }
}

static void
flush_dirty(ReactorObject *r)
{
    while (r->dirty != NULL) {
        ConnObject *c = r->dirty;
        r->dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->is_dirty = 0;
        flush_conn(c);
        Py_DECREF(c);
    }
}

/* --- the fiber ---------------------------------------------------------------------------- */

/* Run the fiber's coroutine one step: send `value` or throw `exc` (a new reference each is NOT
 * taken). `enter` makes the host the current task for the step (when called from poll()).
 * Returns the STEP_* kind and sets *out (a new reference), or -1 with an exception set when the
 * step could not even be started. */
static int
fiber_step(ConnObject *c, PyObject *value, PyObject *exc, int enter, PyObject **out)
{
    PyObject *coro = c->coro;
    if (coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no fiber on this connection");
        return -1;
    }
    Py_INCREF(coro);
    int entered_ctx = 0, entered_task = 0;
    if (enter) {
        if (c->context != NULL) {
            if (PyContext_Enter(c->context) < 0)
                goto fail;
            entered_ctx = 1;
        }
        PyObject *args[2] = {c->reactor->loop, c->host};
        PyObject *t = PyObject_Vectorcall(c->reactor->enter_task, args, 2, NULL);
        if (t == NULL)
            goto fail;
        Py_DECREF(t);
        entered_task = 1;
    }
    c->parked = 0;
    c->in_fiber = 1;
    int kind;
    PyObject *result = NULL;
    if (exc == NULL) {
        PySendResult sr = PyIter_Send(coro, value ? value : Py_None, &result);
        kind = sr == PYGEN_NEXT ? STEP_YIELD : sr == PYGEN_RETURN ? STEP_RETURN : STEP_RAISE;
    }
    else {
        result = PyObject_CallMethodOneArg(coro, str_throw, exc);
        if (result != NULL)
            kind = STEP_YIELD;
        else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            PyObject *stop = take_exception();
            result = stop ? PyObject_GetAttrString(stop, "value") : Py_NewRef(Py_None);
            Py_XDECREF(stop);
            if (result == NULL)
                kind = STEP_RAISE;
            else
                kind = STEP_RETURN;
        }
        else
            kind = STEP_RAISE;
    }
    c->in_fiber = 0;
    if (kind == STEP_RAISE) {
        PyObject *exc = take_exception();
        result = exc ? exc : Py_NewRef(Py_None);
    }
    else if (kind == STEP_YIELD && result == Park && c->parked)
        kind = STEP_PARKED;
    if (entered_task) {
        PyObject *args[2] = {c->reactor->loop, c->host};
        PyObject *t = PyObject_Vectorcall(c->reactor->leave_task, args, 2, NULL);
        if (t == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(t);
    }
    if (entered_ctx && PyContext_Exit(c->context) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_DECREF(coro);
    *out = result;
    return kind;
fail:
    if (entered_ctx)
        PyContext_Exit(c->context);
    Py_DECREF(coro);
    return -1;
}

/* Resume the parked fiber from poll() (or finish()); whatever it does other than waiting in
 * recv() again is handed to the host. */
static void
fiber_resume(ConnObject *c, PyObject *value, PyObject *exc)
{
    PyObject *obj = NULL;
    int kind = fiber_step(c, value, exc, 1, &obj);
    if (kind < 0) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    if (kind != STEP_PARKED) {
        PyObject *arg = Py_BuildValue("(iO)", kind, obj);
        if (arg == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        else {
            report(c, EV_FIBER, arg);
            Py_DECREF(arg);
        }
    }
    Py_XDECREF(obj);
}

/* --- the read side ------------------------------------------------------------------------ */

static void
set_paused(ConnObject *c, int paused)
{
    if (c->paused == paused)
        return;
    c->paused = paused;
    epoll_update_or_report(c);
}

static void direct_settle(ConnObject *c);
static int try_shortcut(ConnObject *c, const unsigned char *body, Py_ssize_t size);

/* Session mode: hand the frames cut from one read to the receiver, as one list (one call per
 * read instead of one per frame; the list becomes the receiver's). */
static void
flush_batch(ConnObject *c)
{
    direct_settle(c);
    PyObject *batch = c->batch;
    if (batch == NULL)
        return;
    c->batch = NULL;
    if (c->receiver != NULL) {
        PyObject *receiver = Py_NewRef(c->receiver);
        PyObject *r = PyObject_CallOneArg(receiver, batch);
        if (r == NULL)
            PyErr_WriteUnraisable(receiver);
        Py_XDECREF(r);
        Py_DECREF(receiver);
    }
    Py_DECREF(batch);
}

/* --- direct calls ------------------------------------------------------------------------------
 *
 * Why: a call to a plain function costs the Python session ~6 us (decode, the Call envelope, the
 * dispatch, encoding and queueing the reply), the function itself ~0.1 us. In session mode the
 * node may hand a Conn a table of the functions it may answer here, with no Python in between:
 * functions that are synchronous, take no Caller, and need nothing from the node per call (no
 * policy, no tracing, a name held; the node empties the table otherwise). A frame
 * [0, id, func, args, meta] for a function in the table is decoded here, the function called, and
 * [1, id, result] written; everything else goes to the receiver as before. A call whose function
 * raised, returned a coroutine or a result this side cannot encode goes to aside(), already
 * called, so that Python answers it: a function is never called twice.
 *
 * Order is kept: once one frame of a read went to the batch for Python, the rest of that read
 * follows it there. A connection over its high-water mark takes the Python way too, which feels
 * back-pressure (writing_paused) where this side would not. */

static int append_out(ConnObject *c, const char *data, Py_ssize_t size, int with_header);
static PyObject *str_calls, *str_observe;
static MpBuf direct_out; /* one reply being encoded (no Python code runs while it is) */

static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The call in `body` ran, and Python answers it: its bytes object is made only now. */
static void
direct_aside(ConnObject *c, const unsigned char *body, Py_ssize_t size, PyObject *outcome,
             int failed)
{
    direct_settle(c);
    if (c->aside == NULL)
        return;
    PyObject *packet = PyBytes_FromStringAndSize((const char *)body, size);
    if (packet == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    PyObject *started = PyFloat_FromDouble(c->read_started);
    if (started == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
        Py_DECREF(packet);
        return;
    }
    PyObject *args[4] = {packet, outcome, failed ? Py_True : Py_False, started};
    PyObject *aside = Py_NewRef(c->aside);
    PyObject *r = PyObject_Vectorcall(aside, args, 4, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(aside);
    Py_XDECREF(r);
    Py_DECREF(aside);
    Py_DECREF(started);
    Py_DECREF(packet);
}

/* Write the calls counted here back into their CallStats: before any Python of the node runs
 * (aside(), the batch) and at the end of each read, so that counts lag by one read at most and
 * the Python path always counts on from the right number. */
static void
direct_settle(ConnObject *c)
{
    if (c->stats_base < 0)
        return;
    long long total = c->stats_base + c->stats_pending;
    c->stats_base = -1;
    c->stats_pending = 0;
    PyObject *value = PyLong_FromLongLong(total);
    if (value == NULL || PyObject_SetAttr(c->last_stats, str_calls, value) < 0)
        PyErr_WriteUnraisable(c->last_stats);
    Py_XDECREF(value);
}

/* Count a call answered here; one in eight (SAMPLE_EVERY) is timed, as the Python path does:
 * the first, then every eighth. */
static void
direct_count(ConnObject *c)
{
    if (c->stats_of == NULL)
        return;
    if (c->last_stats == NULL) {
        c->last_stats = PyObject_CallOneArg(c->stats_of, c->last_func);
        if (c->last_stats == NULL) {
            PyErr_WriteUnraisable(c->stats_of);
            return;
        }
    }
    PyObject *stats = c->last_stats;
    if (stats == Py_None)
        return;
    if (c->stats_base < 0) {
        PyObject *calls = PyObject_GetAttr(stats, str_calls);
        long long n = calls != NULL ? PyLong_AsLongLong(calls) : -1;
        Py_XDECREF(calls);
        if (n < 0) {
            PyErr_WriteUnraisable(stats);
            return;
        }
        c->stats_base = n;
        c->stats_pending = 0;
    }
    long long n = c->stats_base + c->stats_pending++;
    if (n & 7)
        return;
    PyObject *seconds = PyFloat_FromDouble(monotonic_now() - c->read_started);
    PyObject *r = seconds != NULL ? PyObject_CallMethodOneArg(stats, str_observe, seconds) : NULL;
    if (r == NULL)
        PyErr_WriteUnraisable(stats);
    Py_XDECREF(r);
    Py_XDECREF(seconds);
}

/* The function of a call frame's name, if it is one answered here (borrowed; NULL: not). */
static PyObject *
direct_function(ConnObject *c, const char *name, Py_ssize_t n)
{
    Py_ssize_t last_n;
    const char *last = c->last_func != NULL ? PyUnicode_AsUTF8AndSize(c->last_func, &last_n) : NULL;
    if (last == NULL || last_n != n || memcmp(last, name, n) != 0) {
        PyObject *func = PyUnicode_DecodeUTF8(name, n, NULL);
        if (func == NULL)
            return NULL;
        direct_settle(c);
        Py_XSETREF(c->last_func, func);
        Py_CLEAR(c->last_stats);
    }
    return PyDict_GetItemWithError(c->direct, c->last_func);
}

/* Answer the frame `body` here if it is a call of a function in the table: 1 when it was taken
 * (answered, or called and handed to aside()), 0 when it goes to Python untouched. Called on the
 * bytes as read, before any bytes object is made for them. */
static int
try_direct(ConnObject *c, const unsigned char *body, Py_ssize_t size)
{
    if (c->fd < 0 || c->send_exc != NULL || PyDict_GET_SIZE(c->direct) == 0
        || c->out_end - c->out_start > c->high_water)
        return 0;
    if (size < 6 || body[0] != 0x95 || body[1] != WIRE_KIND_CALL) /* [2, ...] of five: a call */
        return 0;
    MpReader r = {body + 2, body + size};
    /* The id goes back in the reply as it came: an unsigned int. */
    const unsigned char *id = r.p;
    unsigned char tag = *r.p++;
    if (tag >= 0xcc && tag <= 0xcf) {
        int n = 1 << (tag - 0xcc);
        if (r.end - r.p < n)
            return 0;
        r.p += n;
    }
    else if (tag > 0x7f)
        return 0;
    Py_ssize_t id_len = r.p - id;
    if (r.p >= r.end)
        return 0;
    tag = *r.p++;
    Py_ssize_t name_n = tag >= 0xa0 && tag <= 0xbf ? tag & 0x1f : tag == 0xd9 ? mp_len(&r, 1) : -1;
    if (name_n < 0 || r.end - r.p < name_n)
        return 0;
    const char *name = (const char *)r.p;
    r.p += name_n;
    if (r.p >= r.end)
        return 0;
    tag = *r.p++;
    Py_ssize_t nargs = tag >= 0x90 && tag <= 0x9f ? tag & 0x0f : tag == 0xdc ? mp_len(&r, 2) : -1;
    if (nargs < 0 || nargs > DIRECT_MAX_ARGS)
        return 0;
    PyObject *fn = direct_function(c, name, name_n);
    if (fn == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *args[DIRECT_MAX_ARGS];
    Py_ssize_t have = 0;
    while (have < nargs && (args[have] = mp_decode(&r, 1)) != NULL)
        have++;
    int ok = have == nargs && r.p < r.end;
    if (ok && *r.p == 0xc0)
        r.p++;
    else if (ok && ((*r.p >= 0x80 && *r.p <= 0x8f) || *r.p == 0xde || *r.p == 0xdf)) {
        /* The metadata (a budget, a request id) means nothing to a synchronous function, but it
         * must decode as Python would decode it. */
        PyObject *meta = mp_decode(&r, 0);
        ok = meta != NULL;
        Py_XDECREF(meta);
    }
    else
        ok = 0;
    if (!ok || r.p != r.end) {
        PyErr_Clear();
        for (Py_ssize_t i = 0; i < have; i++)
            Py_DECREF(args[i]);
        return 0;
    }
    if (c->read_started == 0.0)
        c->read_started = monotonic_now();
    Py_INCREF(fn); /* the call may change the table */
    PyObject *result = PyObject_Vectorcall(fn, args, nargs, NULL);
    Py_DECREF(fn);
    for (Py_ssize_t i = 0; i < nargs; i++)
        Py_DECREF(args[i]);
    c->direct_calls++;
    c->direct_in += size;
    if (result == NULL) {
        PyObject *exc = take_exception();
        direct_aside(c, body, size, exc != NULL ? exc : Py_None, 1);
        Py_XDECREF(exc);
        return 1;
    }
    if (c->fd < 0) { /* the function ended the connection: nobody to answer */
        Py_DECREF(result);
        return 1;
    }
    MpBuf *out = &direct_out;
    out->len = 0;
    static const unsigned char reply_head[2] = {0x93, WIRE_KIND_REPLY};
    int encoded = !PyCoro_CheckExact(result) && mp_put(out, reply_head, 2) == 0
                  && mp_put(out, id, id_len) == 0 && mp_encode(out, result, 0) == 0
                  && out->len <= (Py_ssize_t)c->peer_max_frame;
    if (!encoded) {
        PyErr_Clear();
        direct_aside(c, body, size, result, 0);
        Py_DECREF(result);
        return 1;
    }
    Py_DECREF(result);
    if (append_out(c, out->data, out->len, 1) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    c->direct_out += out->len;
    direct_count(c);
    if (c->out_end - c->out_start >= DIRECT_FLUSH_BYTES && !(c->events & EPOLLOUT))
        flush_conn(c);
    return 1;
}

/* A reply [3, id, result] to a call of ours, matched here: the call's entry leaves the core's
 * pending table and its future gets the result, as RpcConnection._receive and Session._dispatch
 * would do. 1 when taken; 0 (nothing changed) for anything else, an id not pending included. */
static int
try_reply(ConnObject *c, const unsigned char *body, Py_ssize_t size)
{
    if (size < 4 || body[0] != 0x93 || body[1] != WIRE_KIND_REPLY)
        return 0;
    MpReader r = {body + 2, body + size};
    unsigned char tag = *r.p++;
    uint64_t id;
    if (tag <= 0x7f)
        id = tag;
    else if (tag >= 0xcc && tag <= 0xcf) {
        int n = 1 << (tag - 0xcc);
        if (r.end - r.p < n)
            return 0;
        id = mp_be(r.p, n);
        r.p += n;
    }
    else
        return 0;
    PyObject *key = PyLong_FromUnsignedLongLong(id);
    if (key == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *entry = PyDict_GetItemWithError(c->pending, key);
    if (entry == NULL || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 1) {
        PyErr_Clear();
        Py_DECREF(key);
        return 0;
    }
    PyObject *result = mp_decode(&r, 0);
    if (result == NULL || r.p != r.end) {
        PyErr_Clear();
        Py_XDECREF(result);
        Py_DECREF(key);
        return 0;
    }
    PyObject *fut = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    if (PyDict_DelItem(c->pending, key) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_DECREF(key);
    c->direct_replies++;
    c->direct_in += size;
    PyObject *done = PyObject_CallMethodNoArgs(fut, str_done);
    int is_done = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    if (is_done == 0) {
        PyObject *rr = PyObject_CallMethodOneArg(fut, str_set_result, result);
        Py_XDECREF(rr);
    }
    if (PyErr_Occurred())
        PyErr_WriteUnraisable(fut);
    Py_DECREF(fut);
    Py_DECREF(result);
    return 1;
}

/* A frame the reactor may handle itself (session mode): a reply matched, or a call answered.
 * Never once a frame of this read went to Python: order is kept. */
static int
try_shortcut(ConnObject *c, const unsigned char *body, Py_ssize_t size)
{
    if (c->batch != NULL)
        return 0;
    if (c->pending != NULL && try_reply(c, body, size))
        return 1;
    return c->direct != NULL && try_direct(c, body, size);
}

/* A packet arrived: hand it to whoever waits for it, or queue it. Steals `packet`. */
static void
deliver(ConnObject *c, PyObject *packet)
{
    if (c->receiver != NULL) {
        if (c->batch == NULL && (c->batch = PyList_New(0)) == NULL) {
            PyErr_WriteUnraisable((PyObject *)c);
            Py_DECREF(packet);
            return;
        }
        if (PyList_Append(c->batch, packet) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_DECREF(packet);
        return;
    }
    if (c->parked && c->qhead == PyList_GET_SIZE(c->queue)) {
        fiber_resume(c, packet, NULL);
        Py_DECREF(packet);
        return;
    }
    if (c->waiter != NULL && c->qhead == PyList_GET_SIZE(c->queue)) {
        PyObject *w = c->waiter;
        c->waiter = NULL;
        PyObject *done = PyObject_CallMethodNoArgs(w, str_done);
        int is_done = done == NULL ? -1 : PyObject_IsTrue(done);
        Py_XDECREF(done);
        if (is_done == 0) {
            PyObject *r = PyObject_CallMethodOneArg(w, str_set_result, packet);
            Py_XDECREF(r);
            if (r != NULL) {
                Py_DECREF(w);
                Py_DECREF(packet);
                return;
            }
        }
        if (PyErr_Occurred())
            PyErr_WriteUnraisable((PyObject *)c);
        Py_DECREF(w);
    }
    Py_ssize_t size = PyBytes_GET_SIZE(packet);
    if (PyList_Append(c->queue, packet) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_DECREF(packet);
    c->queued += size;
    if (c->queued > c->queue_limit)
        set_paused(c, 1);
}

/* --- assembling a frame body ------------------------------------------------------------------ */

static void
stage_trim(ConnObject *c)
{
    if (c->stage_cap > STAGE_MIN) {
        PyMem_Free(c->stage);
        c->stage = NULL;
        c->stage_cap = 0;
    }
}

static void
body_reset(ConnObject *c)
{
    Py_CLEAR(c->partial);
    c->in_body = 0;
    c->partial_have = 0;
    PyMem_Free(c->stage);
    c->stage = NULL;
    c->stage_cap = 0;
}

/* A header announced `size` bytes that are not all here yet. */
static int
body_begin(ConnObject *c, Py_ssize_t size)
{
    c->in_body = 1;
    c->body_size = size;
    c->partial_have = 0;
    if (size <= STAGE_MIN) {
        c->partial = PyBytes_FromStringAndSize(NULL, size);
        return c->partial != NULL ? 0 : -1;
    }
    if (c->stage == NULL) {
        c->stage = PyMem_Malloc(STAGE_MIN);
        if (c->stage == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->stage_cap = STAGE_MIN;
    }
    return 0;
}

/* Where the next bytes of the body go, and how many fit there (never past the body's end). A full
 * stage doubles, or once a quarter of the body is in, moves into the body's own bytes object,
 * which big reads then fill directly. NULL with an exception set when out of memory. */
static char *
body_room(ConnObject *c, Py_ssize_t *room)
{
    Py_ssize_t size = c->body_size, have = c->partial_have;
    if (c->partial == NULL && have == c->stage_cap) {
        if (have >= size / STAGE_COMMIT_DIV) {
            PyObject *p = PyBytes_FromStringAndSize(NULL, size);
            if (p == NULL)
                return NULL;
            memcpy(PyBytes_AS_STRING(p), c->stage, have);
            c->partial = p;
            stage_trim(c);
        }
        else {
            Py_ssize_t cap = c->stage_cap * 2 < size ? c->stage_cap * 2 : size;
            char *grown = PyMem_Realloc(c->stage, cap);
            if (grown == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            c->stage = grown;
            c->stage_cap = cap;
        }
    }
    if (c->partial != NULL) {
        *room = size - have;
        return PyBytes_AS_STRING(c->partial) + have;
    }
    *room = c->stage_cap - have;
    return c->stage + have;
}

/* Out of memory while assembling input: that frame is lost, so the connection ends with ENOMEM
 * after the frames before it (stopping to read in silence would leave it hanging). Returns -1. */
static int
input_lost(ConnObject *c)
{
    PyErr_WriteUnraisable((PyObject *)c);
    flush_batch(c);
    report_int(c, EV_RECV_ERROR, ENOMEM);
    return -1;
}

/* `n` more bytes of the body were written where body_room said; a complete body is delivered.
 * -1 (reported) when out of memory. */
static int
body_took(ConnObject *c, Py_ssize_t n)
{
    c->partial_have += n;
    if (c->partial_have < c->body_size)
        return 0;
    PyObject *p = c->partial;
    c->partial = NULL;
    if (p == NULL) /* not reached with STAGE_COMMIT_DIV > 1, but cheap to get right */
        p = PyBytes_FromStringAndSize(c->stage, c->body_size);
    c->in_body = 0;
    c->partial_have = 0;
    stage_trim(c);
    if (p == NULL)
        return input_lost(c);
    if (c->receiver != NULL
        && try_shortcut(c, (const unsigned char *)PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p)))
        Py_DECREF(p);
    else
        deliver(c, p);
    return 0;
}

static Py_ssize_t
partial_frame_bytes(ConnObject *c)
{
    return c->hdr_have + (c->in_body ? c->partial_have + HEADER_SIZE : 0);
}

/* Cut `data` into frames; returns -1 when the connection must stop reading (error reported). */
static int
feed(ConnObject *c, const unsigned char *data, Py_ssize_t n)
{
    Py_ssize_t pos = 0;
    while (pos < n && c->fd >= 0 && !c->finished) {
        if (c->in_body) {
            Py_ssize_t room;
            char *dst = body_room(c, &room);
            if (dst == NULL)
                return input_lost(c);
            Py_ssize_t take = room < n - pos ? room : n - pos;
            memcpy(dst, data + pos, take);
            pos += take;
            if (body_took(c, take) < 0)
                return -1;
            continue;
        }
        uint32_t size;
        if (c->hdr_have == 0 && n - pos >= HEADER_SIZE) {
            const unsigned char *h = data + pos;
            size = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
            pos += HEADER_SIZE;
        }
        else {
            while (c->hdr_have < HEADER_SIZE && pos < n)
                c->hdr[c->hdr_have++] = data[pos++];
            if (c->hdr_have < HEADER_SIZE)
                break;
            const unsigned char *h = c->hdr;
            size = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
            c->hdr_have = 0;
        }
        if (size > c->max_frame) {
            flush_batch(c); /* the frames before the bad one were good */
            report_int(c, EV_OVERSIZE, size);
            return -1;
        }
        if ((Py_ssize_t)size <= n - pos) {
            if (c->receiver != NULL && try_shortcut(c, data + pos, size)) {
                pos += size;
                continue;
            }
            PyObject *p = PyBytes_FromStringAndSize((const char *)data + pos, size);
            if (p == NULL)
                return input_lost(c);
            pos += size;
            deliver(c, p);
        }
        else if (body_begin(c, size) < 0)
            return input_lost(c);
    }
    return 0;
}

static void
read_once(ConnObject *c, char *scratch)
{
    c->read_started = 0.0;
    char *buf = scratch;
    Py_ssize_t cap = SCRATCH_SIZE;
    int direct = 0;
    if (c->in_body && c->body_size - c->partial_have >= SCRATCH_SIZE) {
        /* A big frame: read its body straight into where it is being assembled. */
        Py_ssize_t room;
        char *dst = body_room(c, &room);
        if (dst != NULL) {
            buf = dst;
            cap = room;
            direct = 1;
        }
        else
            PyErr_WriteUnraisable((PyObject *)c); /* through the scratch buffer, then */
    }
    ssize_t n;
    do
        n = recv(c->fd, buf, cap, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        int err = errno;
        c->reading = 0;
        epoll_update_or_report(c);
        report_int(c, EV_RECV_ERROR, err);
        return;
    }
    if (n == 0) {
        c->reading = 0;
        c->eof = 1;
        epoll_update_or_report(c);
        report_int(c, EV_EOF, partial_frame_bytes(c));
        return;
    }
    int failed;
    if (!c->framed) {
        PyObject *p = PyBytes_FromStringAndSize(buf, n);
        failed = p == NULL ? input_lost(c) : 0; /* lost bytes: the stream cannot go on */
        if (p != NULL)
            deliver(c, p);
    }
    else
        failed = direct ? body_took(c, n) : feed(c, (const unsigned char *)buf, n);
    if (failed < 0) {
        c->reading = 0;
        epoll_update_or_report(c);
    }
}

static void
handle_readable(ConnObject *c, char *scratch)
{
    read_once(c, scratch);
    flush_batch(c);
}

/* --- the recv() awaitable ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    ConnObject *conn;
    PyObject *fut; /* task mode: the future yielded to the task */
    int state;     /* 0 new, 1 parked as a fiber, 2 waiting on fut, 3 done */
} RecvOpObject;

static PyObject *
queue_pop(ConnObject *c)
{
    PyObject *p = PyList_GET_ITEM(c->queue, c->qhead);
    Py_INCREF(p);
    PyList_SET_ITEM(c->queue, c->qhead, Py_NewRef(Py_None));
    Py_DECREF(p); /* the list's reference, now replaced by None */
    c->qhead++;
    Py_ssize_t len = PyList_GET_SIZE(c->queue);
    if (c->qhead == len) {
        if (PyList_SetSlice(c->queue, 0, len, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->qhead = 0;
    }
    else if (c->qhead > 64 && c->qhead * 2 > len) {
        if (PyList_SetSlice(c->queue, 0, c->qhead, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)c);
        c->qhead = 0;
    }
    c->queued -= PyBytes_GET_SIZE(p);
    if (c->paused && c->queued <= c->queue_limit / 2)
        set_paused(c, 0);
    return p;
}

static void
requeue_front(ConnObject *c, PyObject *packet)
{
    if (c->queue == NULL)
        return;
    if (PyList_Insert(c->queue, c->qhead, packet) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    else
        c->queued += PyBytes_GET_SIZE(packet);
}

static PySendResult
recvop_send(RecvOpObject *op, PyObject *arg, PyObject **result)
{
    ConnObject *c = op->conn;
    if (op->state == 1) { /* resumed by the reactor with a packet, or by finish() with None */
        op->state = 3;
        *result = Py_NewRef(arg);
        return PYGEN_RETURN;
    }
    if (op->state == 2) {
        PyObject *fut = op->fut;
        op->fut = NULL;
        op->state = 3;
        if (c->waiter == fut)
            Py_CLEAR(c->waiter);
        PyObject *r = PyObject_CallMethodNoArgs(fut, str_result);
        Py_DECREF(fut);
        if (r == NULL)
            return PYGEN_ERROR;
        *result = r;
        return PYGEN_RETURN;
    }
    if (op->state == 3) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited recv()");
        return PYGEN_ERROR;
    }
    if (c->qhead < PyList_GET_SIZE(c->queue)) {
        op->state = 3;
        *result = queue_pop(c);
        return PYGEN_RETURN;
    }
    if (c->finished) {
        op->state = 3;
        if (c->recv_exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(c->recv_exc), c->recv_exc);
            return PYGEN_ERROR;
        }
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (c->parked || c->waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "recv() is already awaited by another task");
        return PYGEN_ERROR;
    }
    if (c->in_fiber) {
        op->state = 1;
        c->parked = 1;
        *result = Py_NewRef(Park);
        return PYGEN_NEXT;
    }
    PyObject *fut = PyObject_CallMethodNoArgs(c->reactor->loop, str_create_future);
    if (fut == NULL)
        return PYGEN_ERROR;
    if (PyObject_SetAttr(fut, str_blocking, Py_True) < 0) {
        Py_DECREF(fut);
        return PYGEN_ERROR;
    }
    c->waiter = Py_NewRef(fut);
    op->fut = Py_NewRef(fut);
    op->state = 2;
    *result = fut;
    return PYGEN_NEXT;
}

/* Cancelled or closed while waiting: give a packet that was already handed over back to the
 * queue, so that the next recv() gets it, and forget the wait. */
static void
recvop_abandon(RecvOpObject *op)
{
    ConnObject *c = op->conn;
    if (op->state == 1) {
        c->parked = 0;
    }
    else if (op->state == 2) {
        PyObject *fut = op->fut;
        op->fut = NULL;
        if (c->waiter == fut)
            Py_CLEAR(c->waiter);
        else {
            /* Already completed by deliver(): keep its packet. */
            PyObject *done = PyObject_CallMethodNoArgs(fut, str_done);
            if (done == Py_True) {
                PyObject *pending = take_exception();
                PyObject *r = PyObject_CallMethodNoArgs(fut, str_result);
                if (r != NULL && PyBytes_Check(r))
                    requeue_front(c, r);
                Py_XDECREF(r);
                PyErr_Clear();
                restore_exception(pending);
            }
            Py_XDECREF(done);
        }
        Py_DECREF(fut);
    }
    op->state = 3;
}

static PyObject *
recvop_iternext(RecvOpObject *op)
{
    PyObject *result = NULL;
    PySendResult r = recvop_send(op, Py_None, &result);
    if (r == PYGEN_NEXT)
        return result;
    if (r == PYGEN_RETURN) {
        set_stop_iteration(result);
        Py_DECREF(result);
    }
    return NULL;
}

/* throw(exc) / throw(type[, value[, tb]]) of the awaitables: raise what was thrown, as a
 * coroutine that does not catch it would. */
static int
check_throw_args(Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return -1;
    }
    return 0;
}

static PyObject *
raise_thrown(PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *typ = args[0];
    if (PyExceptionInstance_Check(typ))
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    else if (PyExceptionClass_Check(typ))
        PyErr_SetObject(typ, nargs > 1 ? args[1] : Py_None);
    else
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
    return NULL;
}

static PyObject *
recvop_throw(RecvOpObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_throw_args(nargs) < 0)
        return NULL;
    recvop_abandon(op);
    return raise_thrown(args, nargs);
}

static PyObject *
recvop_close(RecvOpObject *op, PyObject *unused)
{
    recvop_abandon(op);
    Py_RETURN_NONE;
}

static PyObject *
recvop_send_method(RecvOpObject *op, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult r = recvop_send(op, arg, &result);
    if (r == PYGEN_NEXT)
        return result;
    if (r == PYGEN_RETURN) {
        set_stop_iteration(result);
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *
self_await(PyObject *self)
{
    return Py_NewRef(self);
}

static void
recvop_dealloc(RecvOpObject *op)
{
    if (op->state == 1 || op->state == 2) {
        /* Dropped while waiting (its coroutine was closed): an exception may be in flight. */
        PyObject *pending = take_exception();
        recvop_abandon(op);
        restore_exception(pending);
    }
    Py_XDECREF(op->conn);
    Py_XDECREF(op->fut);
    PyObject_Free(op);
}

static PyAsyncMethods recvop_async = {
    .am_await = self_await,
    .am_send = (sendfunc)recvop_send,
};

static PyMethodDef recvop_methods[] = {
    {"send", (PyCFunction)recvop_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))recvop_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)recvop_close, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject RecvOpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "namewire.transport._native.RecvOp",
    .tp_basicsize = sizeof(RecvOpObject),
    .tp_dealloc = (destructor)recvop_dealloc,
    .tp_as_async = &recvop_async,
    .tp_iter = self_await,
    .tp_iternext = (iternextfunc)recvop_iternext,
    .tp_methods = recvop_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* --- the awaitable send() returns when it does not wait ----------------------------------- */

static PySendResult
done_send(PyObject *self, PyObject *arg, PyObject **result)
{
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

static PyObject *
done_iternext(PyObject *self)
{
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

/* send/throw/close make it a full coroutine (asyncio.create_task and gather accept it). It is
 * stateless, so one instance serves every send(). */
static PyObject *
done_send_method(PyObject *self, PyObject *arg)
{
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyObject *
done_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_throw_args(nargs) < 0)
        return NULL;
    return raise_thrown(args, nargs);
}

static PyObject *
done_close(PyObject *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyMethodDef done_methods[] = {
    {"send", (PyCFunction)done_send_method, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))done_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)done_close, METH_NOARGS, NULL},
    {NULL},
};

static PyAsyncMethods done_async = {.am_await = self_await, .am_send = done_send};

static PyTypeObject DoneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "namewire.transport._native.Done",
    .tp_basicsize = sizeof(PyObject),
    .tp_as_async = &done_async,
    .tp_iter = self_await,
    .tp_iternext = done_iternext,
    .tp_methods = done_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* --- Conn ----------------------------------------------------------------------------------- */

static int
conn_init(ConnObject *c, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"reactor", "fd", "framed", "max_frame", "queue_limit", "high_water", NULL};
    PyObject *reactor;
    int fd, framed;
    unsigned long long max_frame;
    Py_ssize_t queue_limit, high_water;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!ipKnn", kwlist, &ReactorType, &reactor, &fd,
                                     &framed, &max_frame, &queue_limit, &high_water))
        return -1;
    if (c->reactor != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Conn is already initialised");
        return -1;
    }
    if (max_frame == 0 || max_frame > MAX_BODY || queue_limit <= 0 || high_water < 0) {
        PyErr_SetString(PyExc_ValueError, "bad max_frame, queue_limit or high_water");
        return -1;
    }
    c->queue = PyList_New(0);
    if (c->queue == NULL)
        return -1;
    c->reactor = (ReactorObject *)Py_NewRef(reactor);
    c->framed = framed;
    c->max_frame = (uint32_t)max_frame;
    c->queue_limit = queue_limit;
    c->high_water = high_water;
    c->low_water = high_water / 4;
    c->reading = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(c->reactor->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    c->fd = fd;
    c->events = EPOLLIN;
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL || PyDict_SetItem(c->reactor->members, key, (PyObject *)c) < 0) {
        Py_XDECREF(key);
        epoll_ctl(c->reactor->epfd, EPOLL_CTL_DEL, fd, NULL);
        c->fd = -1;
        return -1;
    }
    Py_DECREF(key);
    c->registered = 1; /* held by reactor.members until detach() */
    c->reactor->conns++;
    return 0;
}

static PyObject *
conn_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ConnObject *c = (ConnObject *)type->tp_alloc(type, 0);
    if (c != NULL) {
        c->fd = -1;
        c->stats_base = -1;
    }
    return (PyObject *)c;
}

static int
conn_traverse(ConnObject *c, visitproc visit, void *arg)
{
    Py_VISIT(c->reactor);
    Py_VISIT(c->partial);
    Py_VISIT(c->queue);
    Py_VISIT(c->recv_exc);
    Py_VISIT(c->send_exc);
    Py_VISIT(c->waiter);
    Py_VISIT(c->coro);
    Py_VISIT(c->host);
    Py_VISIT(c->context);
    Py_VISIT(c->receiver);
    Py_VISIT(c->batch);
    Py_VISIT(c->direct);
    Py_VISIT(c->stats_of);
    Py_VISIT(c->aside);
    Py_VISIT(c->last_func);
    Py_VISIT(c->last_stats);
    Py_VISIT(c->pending);
    Py_VISIT(c->dict);
    return 0;
}

static int
conn_clear(ConnObject *c)
{
    Py_CLEAR(c->partial);
    Py_CLEAR(c->queue);
    Py_CLEAR(c->recv_exc);
    Py_CLEAR(c->send_exc);
    Py_CLEAR(c->waiter);
    Py_CLEAR(c->coro);
    Py_CLEAR(c->host);
    Py_CLEAR(c->context);
    Py_CLEAR(c->receiver);
    Py_CLEAR(c->batch);
    Py_CLEAR(c->direct);
    Py_CLEAR(c->stats_of);
    Py_CLEAR(c->aside);
    Py_CLEAR(c->last_func);
    Py_CLEAR(c->last_stats);
    Py_CLEAR(c->pending);
    Py_CLEAR(c->dict);
    return 0;
}

static void
conn_dealloc(ConnObject *c)
{
    PyObject_GC_UnTrack(c);
    if (c->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)c);
    conn_clear(c);
    if (c->reactor != NULL && c->fd >= 0) {
        /* Only a connection collected with its reactor gets here still registered. */
        if (c->registered && c->reactor->epfd >= 0)
            epoll_ctl(c->reactor->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->reactor->conns--;
    }
    Py_CLEAR(c->reactor);
    PyMem_Free(c->out);
    PyMem_Free(c->stage);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *
conn_recv(ConnObject *c, PyObject *unused)
{
    RecvOpObject *op = PyObject_New(RecvOpObject, &RecvOpType);
    if (op == NULL)
        return NULL;
    op->conn = (ConnObject *)Py_NewRef(c);
    op->fut = NULL;
    op->state = 0;
    return (PyObject *)op;
}

static int
append_out(ConnObject *c, const char *data, Py_ssize_t size, int with_header)
{
    if (size >= DIRECT_SEND_MIN && c->out_start == c->out_end && c->fd >= 0) {
        /* Nothing buffered: send a big packet straight from the caller's buffer. */
        unsigned char h[HEADER_SIZE] = {size >> 24, size >> 16, size >> 8, size};
        struct iovec iov[2] = {{h, with_header ? HEADER_SIZE : 0}, {(void *)data, size}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        Py_ssize_t total = size + (with_header ? HEADER_SIZE : 0);
        ssize_t n;
        do
            n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        c->send_calls++;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            report_int(c, EV_SEND_ERROR, errno);
            return 0;
        }
        if (n < 0)
            n = 0;
        if (n == total)
            return 0;
        if (out_reserve(c, total - n) < 0)
            return -1;
        Py_ssize_t hdr_left = with_header && n < HEADER_SIZE ? HEADER_SIZE - n : 0;
        if (hdr_left) {
            memcpy(c->out + c->out_end, h + (HEADER_SIZE - hdr_left), hdr_left);
            c->out_end += hdr_left;
        }
        Py_ssize_t body_sent = n - (with_header ? HEADER_SIZE - hdr_left : 0);
        if (body_sent < 0)
            body_sent = 0;
        memcpy(c->out + c->out_end, data + body_sent, size - body_sent);
        c->out_end += size - body_sent;
        epoll_update_or_report(c);
        return 0;
    }
    if (out_reserve(c, size + (with_header ? HEADER_SIZE : 0)) < 0)
        return -1;
    unsigned char *p = (unsigned char *)c->out + c->out_end;
    if (with_header) {
        p[0] = size >> 24;
        p[1] = size >> 16;
        p[2] = size >> 8;
        p[3] = size;
        p += HEADER_SIZE;
        c->out_end += HEADER_SIZE;
    }
    memcpy(p, data, size);
    c->out_end += size;
    mark_dirty(c);
    return 0;
}

static PyObject *
conn_send(ConnObject *c, PyObject *packet)
{
    if (c->send_exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(c->send_exc), c->send_exc);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (c->framed && (size_t)view.len > MAX_BODY) {
        PyErr_Format(PyExc_ValueError, "packet of %zd bytes does not fit in a frame", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    int r = (view.len || c->framed) ? append_out(c, view.buf, view.len, c->framed) : 0;
    PyBuffer_Release(&view);
    if (r < 0)
        return NULL;
    if (c->out_end - c->out_start > c->high_water && c->fd >= 0) {
        /* Over the high-water mark: write now, and wait if that was not enough. */
        flush_conn(c);
        if (c->out_end - c->out_start > c->high_water && c->fd >= 0) {
            c->low_water = c->high_water / 4;
            c->want_drain = 1;
            return PyObject_CallMethodNoArgs((PyObject *)c, str_drain);
        }
    }
    return Py_NewRef(Done);
}

/* No packet will be queued any more: recv() drains the queue, then returns None or raises exc.
 * A receiver waiting now is woken. */
static PyObject *
conn_finish(ConnObject *c, PyObject *exc)
{
    if (c->finished)
        Py_RETURN_NONE;
    c->finished = 1;
    c->reading = 0;
    epoll_update_or_report(c);
    body_reset(c);
    if (exc != Py_None)
        c->recv_exc = Py_NewRef(exc);
    if (c->qhead < PyList_GET_SIZE(c->queue))
        Py_RETURN_NONE;
    if (c->parked) {
        /* Not resumed here: finish() may be called from another task, and a fiber step must
         * not run inside another task's step. */
        PyObject *cb = PyObject_GetAttrString((PyObject *)c, "resume_finished");
        PyObject *h = cb ? PyObject_CallOneArg(c->reactor->call_soon, cb) : NULL;
        Py_XDECREF(cb);
        if (h == NULL)
            return NULL;
        Py_DECREF(h);
    }
    else if (c->waiter != NULL) {
        PyObject *w = c->waiter;
        c->waiter = NULL;
        PyObject *done = PyObject_CallMethodNoArgs(w, str_done);
        if (done == Py_False) {
            PyObject *r = exc == Py_None ? PyObject_CallMethodOneArg(w, str_set_result, Py_None)
                                         : PyObject_CallMethodOneArg(w, str_set_exception, exc);
            if (r == NULL)
                PyErr_WriteUnraisable((PyObject *)c);
            Py_XDECREF(r);
        }
        else if (done == NULL)
            PyErr_WriteUnraisable((PyObject *)c);
        Py_XDECREF(done);
        Py_DECREF(w);
    }
    Py_RETURN_NONE;
}

/* Give up the epoll set's reference (its entry in reactor.members). Inside poll() the
 * connection may still appear further down the batch of events being handled, so it must outlive
 * the batch: if it cannot be kept that long, it is kept for good (a leak beats a crash). */
static void
drop_epoll_ref(ConnObject *c, int fd)
{
    ReactorObject *r = c->reactor;
    if (r->members == NULL)
        return;
    if (r->in_poll && (r->detached == NULL || PyList_Append(r->detached, (PyObject *)c) < 0)) {
        PyErr_WriteUnraisable((PyObject *)c);
        return;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL || PyDict_DelItem(r->members, key) < 0)
        PyErr_WriteUnraisable((PyObject *)c);
    Py_XDECREF(key);
}

/* The end of the stream reaches a fiber waiting in recv() (scheduled by finish()). */
static PyObject *
conn_resume_finished(ConnObject *c, PyObject *unused)
{
    if (!c->parked || !c->finished || c->qhead < PyList_GET_SIZE(c->queue))
        Py_RETURN_NONE;
    if (c->recv_exc == NULL)
        fiber_resume(c, Py_None, NULL);
    else
        fiber_resume(c, NULL, c->recv_exc);
    Py_RETURN_NONE;
}

/* Stop watching the socket: out of the epoll set, output dropped. The fd stays open (Python
 * owns the socket object). */
static PyObject *
conn_detach(ConnObject *c, PyObject *unused)
{
    if (c->fd < 0)
        Py_RETURN_NONE;
    int registered = c->registered, fd = c->fd;
    if (registered) {
        epoll_ctl(c->reactor->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->registered = 0;
    }
    c->fd = -1;
    c->reading = 0;
    c->reactor->conns--;
    out_reset(c);
    c->want_drain = 0;
    body_reset(c);
    /* The receiver is usually the handler of the object that owns this Conn: a cycle (and so
     * are the direct-call hooks, bound to the session). */
    Py_CLEAR(c->receiver);
    Py_CLEAR(c->direct);
    Py_CLEAR(c->stats_of);
    Py_CLEAR(c->aside);
    Py_CLEAR(c->pending);
    direct_settle(c);
    Py_CLEAR(c->last_func);
    Py_CLEAR(c->last_stats);
    if (registered)
        drop_epoll_ref(c, fd); /* last: may release c */
    Py_RETURN_NONE;
}

/* Report EV_DRAINED once no more than `low` bytes are pending; True if that is already so. */
static PyObject *
conn_expect_drain(ConnObject *c, PyObject *arg)
{
    Py_ssize_t low = PyLong_AsSsize_t(arg);
    if (low < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "low must not be negative");
        return NULL;
    }
    if (c->out_end - c->out_start <= low || c->fd < 0) {
        c->want_drain = 0;
        Py_RETURN_TRUE;
    }
    c->low_water = low;
    c->want_drain = 1;
    Py_RETURN_FALSE;
}

static PyObject *
conn_set_send_error(ConnObject *c, PyObject *exc)
{
    if (c->send_exc == NULL)
        c->send_exc = Py_NewRef(exc);
    Py_RETURN_NONE;
}

static PyObject *
conn_start_fiber(ConnObject *c, PyObject *args)
{
    PyObject *coro, *host, *context;
    if (!PyArg_ParseTuple(args, "OOO", &coro, &host, &context))
        return NULL;
    Py_XSETREF(c->coro, Py_NewRef(coro));
    Py_XSETREF(c->host, Py_NewRef(host));
    Py_XSETREF(c->context, context == Py_None ? NULL : Py_NewRef(context));
    Py_RETURN_NONE;
}

/* One step of the fiber from its host task: drive(value, exc) -> (kind, obj). */
static PyObject *
conn_drive(ConnObject *c, PyObject *args)
{
    PyObject *value, *exc;
    if (!PyArg_ParseTuple(args, "OO", &value, &exc))
        return NULL;
    PyObject *obj = NULL;
    int kind = fiber_step(c, value, exc == Py_None ? NULL : exc, 0, &obj);
    if (kind < 0)
        return NULL;
    PyObject *r = Py_BuildValue("(iN)", kind, obj);
    if (kind == STEP_RETURN || kind == STEP_RAISE) {
        Py_CLEAR(c->coro);
        Py_CLEAR(c->host);
        Py_CLEAR(c->context);
    }
    return r;
}

/* The host was cancelled while the fiber waits in recv(): stop waiting (returns whether it did). */
static PyObject *
conn_unpark(ConnObject *c, PyObject *unused)
{
    if (!c->parked)
        Py_RETURN_FALSE;
    c->parked = 0;
    Py_RETURN_TRUE;
}

static PyObject *
conn_end_fiber(ConnObject *c, PyObject *unused)
{
    Py_CLEAR(c->coro);
    Py_CLEAR(c->host);
    Py_CLEAR(c->context);
    c->parked = 0;
    Py_RETURN_NONE;
}

/* --- session mode --------------------------------------------------------------------------- */

static PyObject *
conn_set_receiver(ConnObject *c, PyObject *callback)
{
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "the receiver must be callable or None");
        return NULL;
    }
    Py_XSETREF(c->receiver, callback == Py_None ? NULL : Py_NewRef(callback));
    Py_RETURN_NONE;
}

/* serve_direct(table, stats_of, aside, peer_max_frame): answer calls of the functions in `table`
 * here (see "direct calls"); serve_direct(None) stops. The table is read at each call, so its
 * owner may change it at any time. */
static PyObject *
conn_serve_direct(ConnObject *c, PyObject *args)
{
    PyObject *table, *stats_of = Py_None, *aside = Py_None;
    unsigned long long peer_max_frame = MAX_BODY;
    if (!PyArg_ParseTuple(args, "O|OOK", &table, &stats_of, &aside, &peer_max_frame))
        return NULL;
    if (table != Py_None && !PyDict_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "the table must be a dict or None");
        return NULL;
    }
    if ((stats_of != Py_None && !PyCallable_Check(stats_of))
        || (table != Py_None && !PyCallable_Check(aside))) {
        PyErr_SetString(PyExc_TypeError, "stats_of must be callable or None, aside callable");
        return NULL;
    }
    if (peer_max_frame == 0 || peer_max_frame > MAX_BODY) {
        PyErr_Format(PyExc_ValueError, "peer_max_frame must be in 1..%u", MAX_BODY);
        return NULL;
    }
    int on = table != Py_None;
    Py_XSETREF(c->direct, on ? Py_NewRef(table) : NULL);
    Py_XSETREF(c->stats_of, on && stats_of != Py_None ? Py_NewRef(stats_of) : NULL);
    Py_XSETREF(c->aside, on ? Py_NewRef(aside) : NULL);
    direct_settle(c);
    Py_CLEAR(c->last_func);
    Py_CLEAR(c->last_stats);
    c->peer_max_frame = (uint32_t)peer_max_frame;
    Py_RETURN_NONE;
}

/* take_direct_counts() -> (calls answered, replies matched, bytes in, bytes out) here since the
 * last take. */
static PyObject *
conn_take_direct_counts(ConnObject *c, PyObject *unused)
{
    PyObject *r = Py_BuildValue("(KKKK)", c->direct_calls, c->direct_replies, c->direct_in,
                                c->direct_out);
    if (r != NULL)
        c->direct_calls = c->direct_replies = c->direct_in = c->direct_out = 0;
    return r;
}

/* match_replies(pending): match replies here against the core's table of calls made (a dict
 * id -> (future, ...); see try_reply); match_replies(None) stops. */
static PyObject *
conn_match_replies(ConnObject *c, PyObject *pending)
{
    if (pending != Py_None && !PyDict_CheckExact(pending)) {
        PyErr_SetString(PyExc_TypeError, "pending must be a dict or None");
        return NULL;
    }
    Py_XSETREF(c->pending, pending == Py_None ? NULL : Py_NewRef(pending));
    Py_RETURN_NONE;
}

/* write(data) -> bool: send bytes that already carry their frame headers (what the socket does
 * not take now is buffered and sent on EPOLLOUT). True: the output is over the high-water mark;
 * EV_DRAINED follows at the low mark. */
static PyObject *
conn_write(ConnObject *c, PyObject *data)
{
    if (c->send_exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(c->send_exc), c->send_exc);
        return NULL;
    }
    if (c->fd < 0) /* detached: nothing would ever send it */
        Py_RETURN_FALSE;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int r = view.len ? append_out(c, view.buf, view.len, 0) : 0;
    PyBuffer_Release(&view);
    if (r < 0)
        return NULL;
    /* Sent at once, not after the loop's turn: the session already joins what a turn writes and
     * decides when to write early (FLUSH_FRAMES), so that a peer can work on the first replies
     * of a batch while this side works on the rest. Not while waiting for room (EPOLLOUT). */
    if (c->fd >= 0 && !(c->events & EPOLLOUT))
        flush_conn(c);
    if (c->out_end - c->out_start > c->high_water && c->fd >= 0) {
        c->low_water = c->high_water / 4;
        c->want_drain = 1;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *
conn_pause_reading(ConnObject *c, PyObject *unused)
{
    c->user_paused = 1;
    if (epoll_update(c) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
conn_resume_reading(ConnObject *c, PyObject *unused)
{
    c->user_paused = 0;
    if (epoll_update(c) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
get_out_buffered(ConnObject *c, void *unused)
{
    return PyLong_FromSsize_t(c->out_end - c->out_start);
}

static PyObject *
get_max_frame(ConnObject *c, void *unused)
{
    return PyLong_FromUnsignedLong(c->max_frame);
}

static int
set_max_frame(ConnObject *c, PyObject *value, void *unused)
{
    unsigned long long v = value ? PyLong_AsUnsignedLongLong(value) : 0;
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v == 0 || v > MAX_BODY) {
        PyErr_Format(PyExc_ValueError, "max_frame must be in 1..%u", MAX_BODY);
        return -1;
    }
    c->max_frame = (uint32_t)v;
    return 0;
}

static PyObject *
get_buffered(ConnObject *c, void *unused)
{
    return PyLong_FromSsize_t(partial_frame_bytes(c));
}

static PyObject *
get_send_calls(ConnObject *c, void *unused)
{
    return PyLong_FromUnsignedLongLong(c->send_calls);
}

static PyObject *
get_attached(ConnObject *c, void *unused)
{
    return PyBool_FromLong(c->fd >= 0);
}

static PyGetSetDef conn_getset[] = {
    {"buffered", (getter)get_buffered, NULL, "bytes received of an incomplete frame", NULL},
    {"send_calls", (getter)get_send_calls, NULL, "send syscalls made so far", NULL},
    {"attached", (getter)get_attached, NULL, "still watched by the reactor", NULL},
    {"out_buffered", (getter)get_out_buffered, NULL, "bytes written and not yet sent", NULL},
    {"max_frame", (getter)get_max_frame, (setter)set_max_frame, "largest frame body accepted", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyMethodDef conn_methods[] = {
    {"recv", (PyCFunction)conn_recv, METH_NOARGS, "await recv(): the next packet, or None at the end"},
    {"send", (PyCFunction)conn_send, METH_O, "await send(packet): queue a packet for sending"},
    {"finish", (PyCFunction)conn_finish, METH_O, "no more packets; recv() then returns None or raises"},
    {"resume_finished", (PyCFunction)conn_resume_finished, METH_NOARGS, "end a parked fiber's recv()"},
    {"detach", (PyCFunction)conn_detach, METH_NOARGS, "stop watching the socket"},
    {"expect_drain", (PyCFunction)conn_expect_drain, METH_O, "report EV_DRAINED at <= low bytes"},
    {"set_send_error", (PyCFunction)conn_set_send_error, METH_O, "send() raises this from now on"},
    {"start_fiber", (PyCFunction)conn_start_fiber, METH_VARARGS, "start_fiber(coro, host, context)"},
    {"drive", (PyCFunction)conn_drive, METH_VARARGS, "drive(value, exc) -> (kind, obj)"},
    {"unpark", (PyCFunction)conn_unpark, METH_NOARGS, "stop the fiber's wait in recv()"},
    {"end_fiber", (PyCFunction)conn_end_fiber, METH_NOARGS, "forget the fiber"},
    {"set_receiver", (PyCFunction)conn_set_receiver, METH_O, "session mode: frames go to callback(list)"},
    {"serve_direct", (PyCFunction)conn_serve_direct, METH_VARARGS, "answer calls of these functions in C"},
    {"match_replies", (PyCFunction)conn_match_replies, METH_O, "match replies against this table"},
    {"take_direct_counts", (PyCFunction)conn_take_direct_counts, METH_NOARGS, "(calls, in, out) since the last take"},
    {"write", (PyCFunction)conn_write, METH_O, "queue framed bytes; True: over the high-water mark"},
    {"pause_reading", (PyCFunction)conn_pause_reading, METH_NOARGS, "stop reading"},
    {"resume_reading", (PyCFunction)conn_resume_reading, METH_NOARGS, "read again"},
    {NULL},
};

static PyTypeObject ConnType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "namewire.transport._native.Conn",
    .tp_basicsize = sizeof(ConnObject),
    .tp_dealloc = (destructor)conn_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)conn_traverse,
    .tp_clear = (inquiry)conn_clear,
    .tp_methods = conn_methods,
    .tp_getset = conn_getset,
    .tp_init = (initproc)conn_init,
    .tp_new = conn_new,
    .tp_dictoffset = offsetof(ConnObject, dict),
    .tp_weaklistoffset = offsetof(ConnObject, weakrefs),
};

/* --- Reactor -------------------------------------------------------------------------------- */

static int
reactor_init(ReactorObject *r, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"loop", "enter_task", "leave_task", NULL};
    PyObject *loop, *enter, *leave;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO", kwlist, &loop, &enter, &leave))
        return -1;
    if (r->epfd >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "Reactor is already initialised");
        return -1;
    }
    r->call_soon = PyObject_GetAttrString(loop, "call_soon");
    if (r->call_soon == NULL)
        return -1;
    r->flush_cb = PyObject_GetAttrString((PyObject *)r, "flush");
    if (r->flush_cb == NULL)
        return -1;
    r->detached = PyList_New(0);
    if (r->detached == NULL)
        return -1;
    r->members = PyDict_New();
    if (r->members == NULL)
        return -1;
    r->scratch = PyMem_Malloc(SCRATCH_SIZE);
    if (r->scratch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    r->loop = Py_NewRef(loop);
    r->enter_task = Py_NewRef(enter);
    r->leave_task = Py_NewRef(leave);
    return 0;
}

static PyObject *
reactor_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ReactorObject *r = (ReactorObject *)type->tp_alloc(type, 0);
    if (r != NULL)
        r->epfd = -1;
    return (PyObject *)r;
}

static int
reactor_traverse(ReactorObject *r, visitproc visit, void *arg)
{
    Py_VISIT(r->loop);
    Py_VISIT(r->call_soon);
    Py_VISIT(r->enter_task);
    Py_VISIT(r->leave_task);
    Py_VISIT(r->flush_cb);
    Py_VISIT(r->detached);
    Py_VISIT(r->members);
    return 0;
}

static int
reactor_clear(ReactorObject *r)
{
    /* Garbage (with its loop, most likely): nothing may poll it again. Closing the set before
     * its members go means no event can name a freed connection. */
    if (r->epfd >= 0) {
        close(r->epfd);
        r->epfd = -1;
    }
    Py_CLEAR(r->members);
    Py_CLEAR(r->loop);
    Py_CLEAR(r->call_soon);
    Py_CLEAR(r->enter_task);
    Py_CLEAR(r->leave_task);
    Py_CLEAR(r->flush_cb);
    Py_CLEAR(r->detached);
    return 0;
}

static void
reactor_dealloc(ReactorObject *r)
{
    PyObject_GC_UnTrack(r);
    if (r->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)r);
    reactor_clear(r);
    if (r->epfd >= 0)
        close(r->epfd);
    PyMem_Free(r->scratch);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *
reactor_poll(ReactorObject *r, PyObject *unused)
{
    struct epoll_event events[MAX_EVENTS];
    if (r->epfd < 0)
        Py_RETURN_NONE;
    int n;
    do
        n = epoll_wait(r->epfd, events, MAX_EVENTS, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    r->in_poll = 1;
    for (int i = 0; i < n; i++) {
        ConnObject *c = events[i].data.ptr;
        uint32_t ev = events[i].events;
        Py_INCREF(c);
        if (c->fd >= 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && wants_read(c))
            handle_readable(c, r->scratch);
        else if (c->fd >= 0 && c->registered && (ev & (EPOLLHUP | EPOLLERR)) &&
                 c->out_end == c->out_start) {
            /* Reading is paused or over and the connection is gone: epoll reports that until
             * the socket leaves the set, so take it out, and say why unless it simply ended. */
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            c->registered = 0;
            c->events = 0;
            drop_epoll_ref(c, c->fd);
            int was_reading = c->reading;
            c->reading = 0;
            if (err || (was_reading && !c->eof))
                report_int(c, EV_RECV_ERROR, err ? err : ECONNRESET);
        }
        if (c->fd >= 0 && (ev & (EPOLLOUT | EPOLLERR)) && c->out_end > c->out_start)
            flush_conn(c);
        Py_DECREF(c);
    }
    flush_dirty(r);
    r->in_poll = 0;
    if (PyList_GET_SIZE(r->detached) && PyList_SetSlice(r->detached, 0, PY_SSIZE_T_MAX, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
reactor_flush(ReactorObject *r, PyObject *unused)
{
    r->flush_scheduled = 0;
    flush_dirty(r);
    Py_RETURN_NONE;
}

static PyObject *
reactor_fileno(ReactorObject *r, PyObject *unused)
{
    return PyLong_FromLong(r->epfd);
}

static PyObject *
reactor_close(ReactorObject *r, PyObject *unused)
{
    if (r->epfd >= 0) {
        close(r->epfd);
        r->epfd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *
reactor_get_conns(ReactorObject *r, void *unused)
{
    return PyLong_FromSsize_t(r->conns);
}

static PyGetSetDef reactor_getset[] = {
    {"conns", (getter)reactor_get_conns, NULL, "connections being watched", NULL},
    {NULL},
};

static PyMethodDef reactor_methods[] = {
    {"poll", (PyCFunction)reactor_poll, METH_NOARGS, "handle every ready connection"},
    {"flush", (PyCFunction)reactor_flush, METH_NOARGS, "send what handlers wrote"},
    {"fileno", (PyCFunction)reactor_fileno, METH_NOARGS, "the epoll fd, for loop.add_reader"},
    {"close", (PyCFunction)reactor_close, METH_NOARGS, "close the epoll fd"},
    {NULL},
};

static PyTypeObject ReactorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "namewire.transport._native.Reactor",
    .tp_basicsize = sizeof(ReactorObject),
    .tp_dealloc = (destructor)reactor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)reactor_traverse,
    .tp_clear = (inquiry)reactor_clear,
    .tp_methods = reactor_methods,
    .tp_getset = reactor_getset,
    .tp_init = (initproc)reactor_init,
    .tp_new = reactor_new,
    .tp_weaklistoffset = offsetof(ReactorObject, weakrefs),
};

/* --- module --------------------------------------------------------------------------------- */

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "namewire.transport._native",
    .m_doc = "The per-packet path of namewire stream sockets (epoll, framing, fibers).",
    .m_size = -1,
};

#define INTERN(var, text)                                                                        \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                        \
        return NULL;

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&ReactorType) < 0 || PyType_Ready(&ConnType) < 0 ||
        PyType_Ready(&RecvOpType) < 0 || PyType_Ready(&DoneType) < 0)
        return NULL;
    INTERN(str_event, "_event");
    INTERN(str_drain, "_drain");
    INTERN(str_result, "result");
    INTERN(str_create_future, "create_future");
    INTERN(str_throw, "throw");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_done, "done");
    INTERN(str_blocking, "_asyncio_future_blocking");
    INTERN(str_calls, "calls");
    INTERN(str_observe, "observe");
    Park = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    Done = PyType_GenericAlloc(&DoneType, 0);
    if (Park == NULL || Done == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Reactor", (PyObject *)&ReactorType) < 0 ||
        PyModule_AddObjectRef(m, "Conn", (PyObject *)&ConnType) < 0 ||
        PyModule_AddObjectRef(m, "RecvOp", (PyObject *)&RecvOpType) < 0 ||
        PyModule_AddObjectRef(m, "Done", (PyObject *)&DoneType) < 0 ||
        PyModule_AddIntConstant(m, "EV_EOF", EV_EOF) < 0 ||
        PyModule_AddIntConstant(m, "EV_RECV_ERROR", EV_RECV_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "EV_OVERSIZE", EV_OVERSIZE) < 0 ||
        PyModule_AddIntConstant(m, "EV_DRAINED", EV_DRAINED) < 0 ||
        PyModule_AddIntConstant(m, "EV_SEND_ERROR", EV_SEND_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "EV_FIBER", EV_FIBER) < 0 ||
        PyModule_AddIntConstant(m, "STEP_YIELD", STEP_YIELD) < 0 ||
        PyModule_AddIntConstant(m, "STEP_RETURN", STEP_RETURN) < 0 ||
        PyModule_AddIntConstant(m, "STEP_RAISE", STEP_RAISE) < 0 ||
        PyModule_AddIntConstant(m, "STEP_PARKED", STEP_PARKED) < 0 ||
        PyModule_AddIntConstant(m, "WIRE_KIND_CALL", WIRE_KIND_CALL) < 0 ||
        PyModule_AddIntConstant(m, "WIRE_KIND_REPLY", WIRE_KIND_REPLY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
