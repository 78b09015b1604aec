/*
 * rpc_epoll: the ceiling of namewire's RPC on this machine, a C PlusServer.
 *
 * One thread, level-triggered epoll, non-blocking sockets.  It speaks namewire's own protocol
 * as far as a plus server needs: it reads the caller's hello and answers with its own
 * ([0, 1, "PlusServer", {"max_frame": 16777216, "window": [1000, 4194304]}]), then answers every
 * call envelope [2, id, "plus", [a, b], meta] with the reply [3, id, a + b].  All the replies
 * of one read leave in one send(), as namewire's node does.  Anything else (another function, a
 * bad frame) closes that connection with a line on stderr; the server carries on.
 *
 * Usage: rpc_epoll PORT
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
#include <sys/socket.h>
#include <unistd.h>

#include "../rpc_wire.h"

#define IN_CAP (256 * 1024)
#define MAX_BODY 4096

struct conn {
    int fd;
    int hello_seen;
    uint32_t in_len;
    uint32_t out_len, out_sent;
    uint32_t out_cap;
    uint8_t *out;
    uint8_t in[IN_CAP];
};

static int epfd;
static uint8_t hello_frame[128];
static int hello_len;

static void drop(struct conn *c, const char *why)
{
    if (why)
        fprintf(stderr, "rpc_epoll: closing connection: %s\n", why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

static uint8_t *out_room(struct conn *c, uint32_t need)
{
    if (c->out_len + need > c->out_cap) {
        c->out_cap = (c->out_len + need) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    return c->out + c->out_len;
}

/* One frame body; 0 on success, -1 when the connection must close. */
static int on_frame(struct conn *c, const uint8_t *b, uint32_t len)
{
    const uint8_t *p = b, *end = b + len;
    if (!c->hello_seen) {
        if (len < 3 || b[0] != 0x94 || b[1] != 0x00 || b[2] != 0x01)
            return -1; /* not a version-1 hello */
        c->hello_seen = 1;
        memcpy(out_room(c, (uint32_t)hello_len), hello_frame, (size_t)hello_len);
        c->out_len += (uint32_t)hello_len;
        return 0;
    }
    if (len < 2 || (b[0] != 0x95 && b[0] != 0x94) || b[1] != 0x02)
        return -1; /* only calls are expected */
    p += 2;
    int64_t id, x, y;
    if (mp_int(&p, end, &id) < 0 || end - p < 5 || p[0] != 0xa4 || memcmp(p + 1, "plus", 4) != 0)
        return -1;
    p += 5;
    if (p >= end || *p++ != 0x92 || mp_int(&p, end, &x) < 0 || mp_int(&p, end, &y) < 0)
        return -1;
    uint8_t *o = out_room(c, 4 + 2 + 5 + 5);
    uint8_t *q = o + 4;
    *q++ = 0x93; *q++ = 0x03;
    q += mp_put_int(q, id);
    q += mp_put_int(q, x + y);
    put_be32(o, (uint32_t)(q - o - 4));
    c->out_len += (uint32_t)(q - o);
    return 0;
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
            return; /* the read side sees the error */
        }
        c->out_sent += (uint32_t)n;
    }
    if (c->out_sent) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (c->out_len > 0)
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
    c->out_len = c->out_sent = 0;
}

static void on_readable(struct conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        drop(c, NULL);
        return;
    }
    c->in_len += (uint32_t)n;
    uint32_t pos = 0;
    while (c->in_len - pos >= 4) {
        uint32_t size = get_be32(c->in + pos);
        if (size > MAX_BODY) {
            drop(c, "frame over 4096 bytes");
            return;
        }
        if (c->in_len - pos - 4 < size)
            break;
        if (on_frame(c, c->in + pos + 4, size) < 0) {
            drop(c, "not a plus call (or a bad hello)");
            return;
        }
        pos += 4 + size;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    flush_out(c);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: rpc_epoll PORT\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    /* info: {"max_frame": 16777216, "window": [1000, 4194304]} */
    static const uint8_t info[] = {
        0x82, 0xa9, 'm', 'a', 'x', '_', 'f', 'r', 'a', 'm', 'e', 0xce, 0x01, 0x00, 0x00, 0x00,
        0xa6, 'w', 'i', 'n', 'd', 'o', 'w', 0x92, 0xcd, 0x03, 0xe8, 0xce, 0x00, 0x40, 0x00, 0x00};
    hello_len = build_hello_frame(hello_frame, "PlusServer", info, (int)sizeof info);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("rpc_epoll: bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(epfd, evs, 1024, -1);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                flush_out(c);
                continue;
            }
            on_readable(c);
        }
    }
}
