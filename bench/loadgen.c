/*
 * loadgen: the shared load generator of the namewire benchmark suite.
 *
 * One thread, one epoll set, non-blocking sockets.  Two modes:
 *
 *   echo (default)  Ping-pong.  Every connection keeps exactly one frame in flight: it sends
 *                   a 4-byte big-endian length followed by the payload, waits until the same
 *                   bytes have come back (each byte is compared as it arrives), then sends the
 *                   next one.  Prints round trips per second once a second on stderr and a
 *                   final machine-readable line on stdout:
 *                     RESULT {"mode":"echo","conns":100,"seconds":5.000,"round_trips":...,
 *                             "rps":...,"rps_median":...,"slices":50,"p50_us":...,"p99_us":...,
 *                             "client_cpu":0.98,
 *                             "errors":0,"error":""}
 *                   rps is the mean over the window; rps_median the median of its 100 ms slices,
 *                   p50_us/p99_us the round trip's percentiles (send of a frame's first byte to
 *                   its last echoed byte, 1 us histogram to 1 s),
 *                   which a burst of unrelated work on a shared machine moves much less.
 *                   client_cpu is the share of one CPU the generator itself used while
 *                   counting: near 1.0 means the client, not the server, set the pace.
 *                   A raw echo server passes because it returns the frame's bytes unchanged;
 *                   a framed echo must answer with the identical frame.
 *
 *   idle (-i)       Opens N connections, optionally sends one hello frame on each (-n: a
 *                   namewire hello, msgpack [0, 1, "idle-<i>", {}]), then holds them open,
 *                   draining whatever the server sends.  Prints "READY <open>" on stdout once
 *                   every connection is up and its hello written, and exits when stdin closes
 *                   (or a line arrives on it) or after the -d timeout, printing
 *                     RESULT {"mode":"idle","conns":N,"open":...,"closed":...,"answered":...,
 *                             "bytes_in":...,"errors":...}
 *                   "answered" counts connections on which the server sent anything back (a
 *                   namewire node answers a hello with its own): proof that sessions exist.
 *
 * Connects are paced (at most MAX_CONNECTING in progress) so that a listener with a short
 * accept backlog is not flooded into SYN retransmits, which would stall the test for seconds.
 *
 * Usage: loadgen [-i] [-n] [-c conns] [-d seconds] [-w warmup] [-p payload_hex] host port
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTING 128
#define MAX_FRAME 65536
#define STDIN_TAG UINT32_MAX
#define SLICE 0.1          /* seconds per rate sample: the median of these resists short stalls */
#define MAX_SLICES 100000
#define HIST 1000000       /* 1 us buckets of round-trip time, to 1 s */

enum state { ST_IDLE, ST_CONNECTING, ST_OPEN, ST_CLOSED };

struct conn {
    int fd;
    enum state st;
    uint32_t sent;     /* bytes of the current frame written so far */
    uint32_t got;      /* bytes of the current echo received so far */
    uint8_t *hello;    /* idle mode: this connection's hello frame (NULL: none) */
    uint32_t hello_len;
    int want_out;      /* EPOLLOUT currently requested */
    int answered;      /* idle mode: the server sent something (its own hello) */
    double sent_at;    /* echo mode: when the frame in flight was sent */
};

static struct conn *conns;
static int nconns = 1;
static int epfd;
static uint8_t frame[MAX_FRAME + 4];
static uint32_t frame_len;
static long long round_trips;   /* counted inside the measuring window only */
static unsigned *hist;          /* round trips by microseconds, same window */
static long long errors;
static char first_error[256];
static int measuring;
static int n_open, n_closed, n_connecting, next_to_connect, n_answered;
static long long idle_bytes_in;
static struct sockaddr_in addr;

/* CPU seconds (user + system) this process has used: the client's own load is part of the result. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The round-trip time below which a share q of the measured round trips fell (bucket middle). */
static double percentile(long long total, double q)
{
    long long want = (long long)(q * (double)total), seen = 0;
    if (total == 0)
        return 0.0;
    for (long i = 0; i < HIST; i++) {
        seen += hist[i];
        if (seen > want)
            return (double)i + 0.5;
    }
    return HIST;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail_conn(struct conn *c, const char *what, int err)
{
    errors++;
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "conn %d: %s%s%s", (int)(c - conns), what,
                 err ? ": " : "", err ? strerror(err) : "");
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->st == ST_CONNECTING)
        n_connecting--;
    if (c->st == ST_OPEN)
        n_open--;
    c->st = ST_CLOSED;
    n_closed++;
}

static void set_out(struct conn *c, int want)
{
    if (c->want_out == want)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void start_connect(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->fd = -1;
        c->st = ST_CONNECTING;
        n_connecting++;
        fail_conn(c, "socket", errno);
        return;
    }
    int one = 1;
    /* Small frames, one in flight: Nagle would only add delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->st = ST_CONNECTING;
    c->want_out = 1;
    n_connecting++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        fail_conn(c, "connect", errno);
}

static void pace_connects(void)
{
    while (next_to_connect < nconns && n_connecting < MAX_CONNECTING)
        start_connect(&conns[next_to_connect++]);
}

/* Writes what is left of the outgoing bytes; asks for EPOLLOUT only when the kernel is full. */
static void flush(struct conn *c, const uint8_t *buf, uint32_t len)
{
    while (c->sent < len) {
        ssize_t n = send(c->fd, buf + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_out(c, 1);
                return;
            }
            if (errno == EINTR)
                continue;
            fail_conn(c, "send", errno);
            return;
        }
        c->sent += (uint32_t)n;
    }
    set_out(c, 0);
}

static void on_connected(struct conn *c, int idle)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail_conn(c, "connect", err);
        return;
    }
    c->st = ST_OPEN;
    n_connecting--;
    n_open++;
    c->sent = 0;
    c->got = 0;
    if (idle) {
        if (c->hello)
            flush(c, c->hello, c->hello_len);
        else
            set_out(c, 0);
    } else {
        c->sent_at = now();
        flush(c, frame, frame_len);
    }
}

static void on_readable_echo(struct conn *c)
{
    uint8_t buf[MAX_FRAME + 4];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0) {
            fail_conn(c, "server closed the connection", 0);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            fail_conn(c, "recv", errno);
            return;
        }
        if (c->got + (uint32_t)n > frame_len) {
            fail_conn(c, "server sent more bytes than the frame in flight", 0);
            return;
        }
        if (memcmp(buf, frame + c->got, (size_t)n) != 0) {
            fail_conn(c, "echoed bytes differ from the frame sent", 0);
            return;
        }
        c->got += (uint32_t)n;
        if (c->got == frame_len) {
            double t = now();
            if (measuring) {
                round_trips++;
                long us = (long)((t - c->sent_at) * 1e6);
                hist[us < HIST ? us : HIST - 1]++;
            }
            c->got = 0;
            c->sent = 0;
            c->sent_at = t;
            flush(c, frame, frame_len);
            return;
        }
    }
}

static void on_readable_idle(struct conn *c)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            idle_bytes_in += n;
            if (!c->answered) {
                c->answered = 1;
                n_answered++;
            }
            continue;
        }
        if (n == 0) {
            fail_conn(c, "server closed the connection", 0);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno != EINTR) {
            fail_conn(c, "recv", errno);
            return;
        }
    }
}

static int parse_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t len = strlen(hex);
    if (len % 2 || len / 2 > cap)
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (int)(len / 2);
}

/* msgpack [0, 1, "idle-<i>", {}] with the 4-byte length in front: namewire's Hello envelope. */
static void build_hello(struct conn *c, int i)
{
    char name[32];
    int nlen = snprintf(name, sizeof name, "idle-%d", i);
    uint32_t body = 3 + 1 + (uint32_t)nlen + 1;
    c->hello = malloc(4 + body);
    uint8_t *p = c->hello;
    p[0] = (uint8_t)(body >> 24); p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);  p[3] = (uint8_t)body;
    p += 4;
    *p++ = 0x94;                       /* fixarray of 4 */
    *p++ = 0x00;                       /* kind 0: hello */
    *p++ = 0x01;                       /* protocol version 1 */
    *p++ = (uint8_t)(0xa0 | nlen);     /* fixstr (names here are under 32 bytes) */
    memcpy(p, name, (size_t)nlen);
    p += nlen;
    *p++ = 0x80;                       /* empty fixmap: info */
    c->hello_len = 4 + body;
}

/* Raises the descriptor limit: root may lift the hard limit too, others get the soft one raised. */
static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur >= want)
        return;
    struct rlimit up = {want, want > rl.rlim_max ? want : rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [-i] [-n] [-c conns] [-d seconds] [-w warmup] [-p payload_hex] host port\n"
            "  default payload: 91a6686168616861 (msgpack [\"hahaha\"])\n");
    exit(64);
}

int main(int argc, char **argv)
{
    int idle = 0, hello = 0, opt;
    double seconds = 5.0, warmup = 0.5;
    const char *payload_hex = "91a6686168616861";
    while ((opt = getopt(argc, argv, "inc:d:w:p:")) != -1) {
        switch (opt) {
        case 'i': idle = 1; break;
        case 'n': hello = 1; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'p': payload_hex = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 2 || nconns < 1 || seconds <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad IPv4 address %s\n", argv[optind]);
        return 64;
    }
    int plen = parse_hex(payload_hex, frame + 4, MAX_FRAME);
    if (plen < 0) {
        fprintf(stderr, "loadgen: payload must be hex, at most %d bytes\n", MAX_FRAME);
        return 64;
    }
    frame[0] = (uint8_t)(plen >> 24); frame[1] = (uint8_t)(plen >> 16);
    frame[2] = (uint8_t)(plen >> 8);  frame[3] = (uint8_t)plen;
    frame_len = 4 + (uint32_t)plen;

    raise_nofile((rlim_t)nconns + 64);
    conns = calloc((size_t)nconns, sizeof *conns);
    hist = calloc(HIST, sizeof *hist);
    if (conns == NULL || hist == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 2;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].st = ST_IDLE;
        if (idle && hello)
            build_hello(&conns[i], i);
    }
    if (idle) {
        /* stdin closing (or any line on it) is the signal to let go of the connections. */
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    }

    struct epoll_event evs[1024];
    double t_start = now(), deadline_connect = t_start + 30.0;
    double t_measure = 0, t_end = 0, next_report = 0, cpu_measure = 0;
    long long last_report_count = 0, last_slice_count = 0;
    double next_slice = 0, slice_start = 0;
    static double slices[MAX_SLICES];
    int nslices = 0;
    int ready = 0, stop = 0;
    pace_connects();
    while (!stop) {
        double t = now();
        if (!ready && next_to_connect == nconns && n_connecting == 0) {
            int hellos_pending = 0;
            for (int i = 0; idle && i < nconns; i++)
                if (conns[i].st == ST_OPEN && conns[i].hello && conns[i].sent < conns[i].hello_len)
                    hellos_pending = 1;
            if (!hellos_pending) {
                ready = 1;
                if (idle) {
                    printf("READY %d\n", n_open);
                    fflush(stdout);
                    t_end = t + seconds;
                } else {
                    t_measure = t + warmup;
                    t_end = t_measure + seconds;
                }
            }
        }
        if (!ready && t > deadline_connect) {
            fprintf(stderr, "loadgen: gave up connecting after 30 s (%d open, %d connecting)\n",
                    n_open, n_connecting);
            snprintf(first_error, sizeof first_error, "connect phase timed out");
            errors++;
            break;
        }
        if (ready && !idle && !measuring && t >= t_measure) {
            measuring = 1;
            t_measure = t;   /* the window starts when counting does, so rps = count / window */
            t_end = t + seconds;
            cpu_measure = cpu_seconds();
            slice_start = t;
            next_slice = t + SLICE;
            next_report = t + 1.0;
        }
        if (ready && t >= t_end)
            break;
        if (measuring && t >= next_slice && nslices < MAX_SLICES) {
            slices[nslices++] = (double)(round_trips - last_slice_count) / (t - slice_start);
            last_slice_count = round_trips;
            slice_start = t;
            next_slice = t + SLICE;
        }
        if (measuring && t >= next_report) {
            fprintf(stderr, "loadgen: %lld round trips/s\n", round_trips - last_report_count);
            last_report_count = round_trips;
            next_report += 1.0;
        }
        if (!idle && ready && n_open == 0)
            break;   /* every connection failed: nothing left to measure */
        int timeout_ms = 100;
        int n = epoll_wait(epfd, evs, 1024, timeout_ms);
        for (int k = 0; k < n; k++) {
            uint32_t tag = evs[k].data.u32;
            if (tag == STDIN_TAG) {
                stop = 1;
                continue;
            }
            struct conn *c = &conns[tag];
            if (c->st == ST_CONNECTING) {
                on_connected(c, idle);
                continue;
            }
            if (c->st != ST_OPEN)
                continue;
            if (evs[k].events & EPOLLOUT) {
                if (idle) {
                    if (c->hello)
                        flush(c, c->hello, c->hello_len);
                } else
                    flush(c, frame, frame_len);
            }
            if (c->st == ST_OPEN && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                if (idle)
                    on_readable_idle(c);
                else
                    on_readable_echo(c);
            }
        }
        pace_connects();
    }
    double elapsed = measuring ? now() - t_measure : 0.0;
    double cpu = measuring && elapsed > 0 ? (cpu_seconds() - cpu_measure) / elapsed : 0.0;
    if (idle) {
        printf("RESULT {\"mode\":\"idle\",\"conns\":%d,\"open\":%d,\"closed\":%d,\"answered\":%d,"
               "\"bytes_in\":%lld,\"errors\":%lld,\"error\":\"%s\"}\n",
               nconns, n_open, n_closed, n_answered, idle_bytes_in, errors, first_error);
    } else {
        double rps = elapsed > 0 ? (double)round_trips / elapsed : 0.0;
        double median = rps;
        if (nslices > 0) {
            qsort(slices, (size_t)nslices, sizeof slices[0], cmp_double);
            median = slices[nslices / 2];
        }
        printf("RESULT {\"mode\":\"echo\",\"conns\":%d,\"seconds\":%.3f,\"round_trips\":%lld,"
               "\"rps\":%.1f,\"rps_median\":%.1f,\"slices\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,"
               "\"client_cpu\":%.3f,\"errors\":%lld,\"error\":\"%s\"}\n",
               nconns, elapsed, round_trips, rps, median, nslices,
               percentile(round_trips, 0.50), percentile(round_trips, 0.99), cpu, errors,
               first_error);
    }
    fflush(stdout);
    return errors && !idle ? 1 : 0;
}
