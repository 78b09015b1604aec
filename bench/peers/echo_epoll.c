/*
 * echo_epoll: the C baseline of the echo benchmark.  One thread, level-triggered epoll,
 * non-blocking sockets; whatever a client sends is written straight back.  Nothing framed or
 * decoded: this is the ceiling a single core reaches on this machine, syscalls and all.
 *
 * Usage: echo_epoll PORT [HOST]      (HOST defaults to 127.0.0.1)
 *
 * A write the kernel only partly takes keeps the rest in a per-connection buffer; the
 * connection then stops reading until that buffer is flushed (EPOLLOUT), so memory is bounded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    size_t pending_off, pending_len;   /* bytes read but not yet written back */
    char buf[BUF];
};

static int epfd;

static void drop(struct conn *c)
{
    close(c->fd);
    free(c);
}

static void watch(struct conn *c, int op, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, op, c->fd, &ev);
}

/* Returns 0 when everything pending was written, 1 when the kernel is full, -1 on error. */
static int flush(struct conn *c)
{
    while (c->pending_len) {
        ssize_t n = send(c->fd, c->buf + c->pending_off, c->pending_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        }
        c->pending_off += (size_t)n;
        c->pending_len -= (size_t)n;
    }
    c->pending_off = 0;
    return 0;
}

static void on_event(struct conn *c, unsigned events)
{
    if (c->pending_len) {
        int r = flush(c);
        if (r < 0) {
            drop(c);
            return;
        }
        if (r > 0)
            return;
        watch(c, EPOLL_CTL_MOD, EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf, BUF, 0);
        if (n == 0) {
            drop(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                drop(c);
            return;
        }
        c->pending_off = 0;
        c->pending_len = (size_t)n;
        int r = flush(c);
        if (r < 0) {
            drop(c);
            return;
        }
        if (r > 0) {
            watch(c, EPOLL_CTL_MOD, EPOLLOUT);
            return;
        }
        if ((size_t)n < BUF)
            return;   /* a short read means the socket is drained: skip the extra EAGAIN recv */
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: echo_epoll PORT [HOST]\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "echo_epoll: bad IPv4 address\n");
        return 64;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("echo_epoll: bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "echo_epoll listening on %s:%s\n", argc > 2 ? argv[2] : "127.0.0.1", argv[1]);

    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(epfd, evs, 1024, -1);
        if (n < 0 && errno != EINTR) {
            perror("echo_epoll: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = malloc(sizeof *c);
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    c->pending_off = c->pending_len = 0;
                    watch(c, EPOLL_CTL_ADD, EPOLLIN);
                }
                continue;
            }
            on_event(evs[i].data.ptr, evs[i].events);
        }
    }
}
