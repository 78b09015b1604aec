/*
 * rpcgen: the C RPC load generator of the namewire benchmark suite (loadgen.c's sibling).
 *
 * One thread, one epoll set, non-blocking sockets, namewire's own frames.  Each of -c
 * connections sends a hello ([0, 1, "rpcgen-<i>", {}]) and -q calls [2, id, "plus", [1, 2], nil]
 * behind it, reads the server's hello (kind 0, checked), then keeps exactly -q calls in flight:
 * every reply [3, id, 3] (id and result checked) is answered with the next call, and the calls
 * a read released leave in one send().  So -c 1 -q 1000 is 1000 calls multiplexed on one
 * connection, -c 100 -q 10 the same 1000 spread over 100.  After -w seconds of warm-up it counts
 * replies for -d seconds and prints
 *   RESULT {"mode":"rpc","conns":C,"inflight":Q,"seconds":...,"calls":...,"calls_per_s":...,
 *           "p50_us":...,"p99_us":...,"client_cpu":...,"errors":0,"error":""}
 * Latency is per call, send to reply, in a 1 us histogram (to 1 s).  An error envelope, a wrong
 * answer or a closed connection fails the run.
 *
 * Usage: rpcgen [-c conns] [-q inflight per conn] [-d seconds] [-w warmup] host port
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rpc_wire.h"

#define IN_CAP (256 * 1024)
#define CALL_LEN (4 + 16)   /* framed [2, id (uint32), "plus", [1, 2], nil] */
#define HIST 1000000        /* 1 us buckets to 1 s */

struct conn {
    int fd;
    int open;          /* the server's hello arrived */
    int connected;
    uint32_t next_id;  /* slot s sends ids s, s + q, s + 2q, ... */
    double *sent_at;   /* per slot */
    uint32_t *want;    /* per slot: the id in flight */
    uint32_t in_len;
    uint8_t *out;
    uint32_t out_len, out_sent, out_cap;
    uint8_t in[IN_CAP];
};

static struct conn **conns;
static int nconns = 1, inflight = 1, epfd, measuring;
static long long calls, errors;
static char first_error[256];
static unsigned *hist;
static struct sockaddr_in addr;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void fail(struct conn *c, const char *what)
{
    errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s%s%s", what, errno ? ": " : "",
                 errno ? strerror(errno) : "");
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

static uint8_t *out_room(struct conn *c, uint32_t need)
{
    if (c->out_len + need > c->out_cap) {
        c->out_cap = (c->out_len + need) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    return c->out + c->out_len;
}

static void queue_call(struct conn *c, uint32_t slot, uint32_t id, double t)
{
    uint8_t *p = out_room(c, CALL_LEN);
    put_be32(p, CALL_LEN - 4);
    p[4] = 0x95; p[5] = 0x02; p[6] = 0xce;
    put_be32(p + 7, id);
    p[11] = 0xa4; memcpy(p + 12, "plus", 4);
    p[16] = 0x92; p[17] = 0x01; p[18] = 0x02;   /* [1, 2] */
    p[19] = 0xc0;                                /* meta: nil */
    c->out_len += CALL_LEN;
    c->want[slot] = id;
    c->sent_at[slot] = t;
}

static void flush_out(struct conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                return;
            }
            fail(c, "send");
            return;
        }
        c->out_sent += (uint32_t)n;
    }
    c->out_len = c->out_sent = 0;
}

static int on_frame(struct conn *c, const uint8_t *b, uint32_t len, double t)
{
    if (!c->open) {
        if (len < 3 || b[0] != 0x94 || b[1] != 0x00 || b[2] != 0x01) {
            errno = 0;
            fail(c, "the server's first frame is not a version-1 hello");
            return -1;
        }
        c->open = 1;
        return 0;
    }
    const uint8_t *p = b + 2, *end = b + len;
    int64_t id, result;
    if (len < 2 || b[0] != 0x93 || b[1] != 0x03 || mp_int(&p, end, &id) < 0 ||
        mp_int(&p, end, &result) < 0) {
        errno = 0;
        fail(c, len >= 2 && b[1] == 0x04 ? "the server answered with an error envelope"
                                         : "not a reply envelope [3, id, result]");
        return -1;
    }
    uint32_t slot = (uint32_t)id % (uint32_t)inflight;
    if (result != 3 || c->want[slot] != (uint32_t)id) {
        errno = 0;
        fail(c, result != 3 ? "plus(1, 2) did not answer 3" : "reply to a call not in flight");
        return -1;
    }
    if (measuring) {
        calls++;
        long us = (long)((t - c->sent_at[slot]) * 1e6);
        hist[us < HIST ? us : HIST - 1]++;
    }
    queue_call(c, slot, (uint32_t)id + (uint32_t)inflight, t);
    return 0;
}

static void on_readable(struct conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        if (n == 0)
            errno = 0;
        fail(c, "the server closed the connection");
        return;
    }
    c->in_len += (uint32_t)n;
    double t = now();
    uint32_t pos = 0;
    while (c->in_len - pos >= 4) {
        uint32_t size = get_be32(c->in + pos);
        if (size > IN_CAP - 4) {
            errno = 0;
            fail(c, "frame too large");
            return;
        }
        if (c->in_len - pos - 4 < size)
            break;
        if (on_frame(c, c->in + pos + 4, size, t) < 0)
            return;
        pos += 4 + size;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    flush_out(c);
}

static void start(struct conn *c, int i)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        fail(c, "connect");
    char name[32];
    snprintf(name, sizeof name, "rpcgen-%d", i);
    static const uint8_t empty_map[] = {0x80};
    uint8_t *p = out_room(c, 64);
    c->out_len += (uint32_t)build_hello_frame(p, name, empty_map, 1);
    double t = now();
    for (int s = 0; s < inflight; s++)
        queue_call(c, (uint32_t)s, (uint32_t)s, t);
}

static double percentile(long long total, double q)
{
    long long want = (long long)(q * (double)total), seen = 0;
    for (long i = 0; i < HIST; i++) {
        seen += hist[i];
        if (seen > want)
            return (double)i + 0.5;
    }
    return HIST;
}

int main(int argc, char **argv)
{
    double seconds = 5.0, warmup = 0.5;
    int opt;
    while ((opt = getopt(argc, argv, "c:q:d:w:")) != -1) {
        switch (opt) {
        case 'c': nconns = atoi(optarg); break;
        case 'q': inflight = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        default: goto usage;
        }
    }
    if (argc - optind != 2 || nconns < 1 || inflight < 1 || seconds <= 0) {
    usage:
        fprintf(stderr, "usage: rpcgen [-c conns] [-q inflight per conn] [-d seconds] [-w warmup] host port\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {(rlim_t)nconns + 64, (rlim_t)nconns + 64};
    struct rlimit cur;
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_cur < rl.rlim_cur)
        setrlimit(RLIMIT_NOFILE, &rl);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
        fprintf(stderr, "rpcgen: bad IPv4 address %s\n", argv[optind]);
        return 64;
    }
    hist = calloc(HIST, sizeof *hist);
    conns = calloc((size_t)nconns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = conns[i] = calloc(1, sizeof **conns);
        c->sent_at = calloc((size_t)inflight, sizeof *c->sent_at);
        c->want = calloc((size_t)inflight, sizeof *c->want);
        start(c, i);
    }
    struct epoll_event evs[1024];
    double t0 = now(), t_measure = 0, cpu0 = 0, t_end = 0;
    int ready = 0;
    for (;;) {
        double t = now();
        if (!ready) {
            int all = 1;
            for (int i = 0; i < nconns; i++)
                if (conns[i]->fd >= 0 && !conns[i]->open)
                    all = 0;
            if (all) {
                ready = 1;
                t_measure = t + warmup;
            } else if (t - t0 > 30) {
                errno = 0;
                snprintf(first_error, sizeof first_error, "no hello from the server within 30 s");
                errors++;
                break;
            }
        }
        if (ready && !measuring && t >= t_measure) {
            measuring = 1;
            t_measure = t;
            t_end = t + seconds;
            cpu0 = cpu_seconds();
        }
        if (measuring && t >= t_end)
            break;
        if (errors)
            break;
        int n = epoll_wait(epfd, evs, 1024, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->fd < 0)
                continue;
            if (!c->connected && (evs[k].events & EPOLLOUT)) {
                c->connected = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                flush_out(c);
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                flush_out(c);
            }
            if (c->fd >= 0 && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c);
        }
    }
    double elapsed = measuring ? now() - t_measure : 0;
    double cpu = elapsed > 0 ? (cpu_seconds() - cpu0) / elapsed : 0;
    printf("RESULT {\"mode\":\"rpc\",\"conns\":%d,\"inflight\":%d,\"seconds\":%.3f,\"calls\":%lld,"
           "\"calls_per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"client_cpu\":%.3f,"
           "\"errors\":%lld,\"error\":\"%s\"}\n",
           nconns, inflight, elapsed, calls, elapsed > 0 ? calls / elapsed : 0.0,
           calls ? percentile(calls, 0.5) : 0, calls ? percentile(calls, 0.99) : 0, cpu, errors,
           first_error);
    return errors ? 1 : 0;
}
