// libgit2 1.5 has no timeout on its connections: an origin that accepts a connection and then
// never answers (a hung server, a proxy that swallows the request, a half-open network path)
// held a fetch or push, and `plan`, `apply` or the daemon with it, for ever (outside review:
// 400 s of silence over http, the same over ssh). This stream replaces libgit2's plain socket
// stream for every connection it opens: http directly, https under libgit2's TLS stream (which
// opens its socket through the same registry), and ssh, whose transport hands the socket to
// libssh2. A watchdog shuts a socket down once the kernel has seen no data either way on it for
// the idle limit; the read or write waiting on it then returns, and the fetch or push fails
// with a message that names the wait.
//
// The ssh transport of libgit2 1.5 reads the socket of its stream as a `git_socket_stream`
// (`GIT_CONTAINER_OF(io, git_socket_stream, parent)->s`): `bulwark_stream` begins with that
// struct's fields, in its order (parent, host, port, s), so that the cast finds the socket.

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <git2/errors.h>
#include <git2/sys/stream.h>

#include "GitStream.h"

typedef struct {
    git_stream parent;
    char *host;
    char *port;
    int s;
} bulwark_stream;

static int connect_ms = 30000;
static int idle_ms = 120000;

// The sockets open now, for the watchdog; each slot's `idle` is set when it shut the socket down.
#define SLOTS 64
static struct {
    int fd;
    int idle;
} slots[SLOTS];
static int slots_used = 0;
static long shutdowns = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;

static void set_error(const char *format, const char *a, const char *b, const char *c) {
    char message[512];
    snprintf(message, sizeof message, format, a, b, c);
    git_error_set_str(GIT_ERROR_NET, message);
}

static void *watch(void *unused) {
    (void)unused;
    for (;;) {
        sleep(1);
        pthread_mutex_lock(&lock);
        for (int i = 0; i < slots_used; i++) {
            if (slots[i].fd < 0 || slots[i].idle) continue;
            struct tcp_info info;
            socklen_t length = sizeof info;
            memset(&info, 0, sizeof info);
            if (getsockopt(slots[i].fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) continue;
            // Milliseconds since the last data each way (acknowledgements alone do not count).
            unsigned int quiet = info.tcpi_last_data_recv < info.tcpi_last_data_sent ? info.tcpi_last_data_recv : info.tcpi_last_data_sent;
            if (quiet >= (unsigned int)idle_ms) {
                shutdown(slots[i].fd, SHUT_RDWR);
                slots[i].idle = 1;
                shutdowns++;
            }
        }
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void start_watchdog(void) {
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    // Signals are for the threads that handle them (apply's interrupts), never this one.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pthread_create(&thread, &attributes, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attributes);
}

// Watches `fd`; 0, or -1 when every slot is taken (the connection is then not made).
static int watch_socket(int fd) {
    pthread_once(&watchdog_once, start_watchdog);
    pthread_mutex_lock(&lock);
    int found = -1;
    for (int i = 0; i < slots_used; i++) if (slots[i].fd < 0) { found = i; break; }
    if (found < 0 && slots_used < SLOTS) found = slots_used++;
    if (found >= 0) { slots[found].fd = fd; slots[found].idle = 0; }
    pthread_mutex_unlock(&lock);
    return found < 0 ? -1 : 0;
}

// Stops watching `fd` (before it is closed: its number may be another file's after); whether
// the watchdog had shut it down.
static int unwatch_socket(int fd, int keep) {
    int idle = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < slots_used; i++) {
        if (slots[i].fd != fd) continue;
        idle = slots[i].idle;
        if (!keep) slots[i].fd = -1;
        break;
    }
    pthread_mutex_unlock(&lock);
    return idle;
}

static void idle_error(bulwark_stream *st) {
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%d", idle_ms / 1000);
    set_error("%s:%s sent and took nothing for %s s: the connection was closed (BULWARK_ORIGIN_IDLE_TIMEOUT)",
              st->host, st->port ? st->port : "", seconds);
}

static int stream_connect(git_stream *stream) {
    bulwark_stream *st = (bulwark_stream *)stream;
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    int code = getaddrinfo(st->host, st->port, &hints, &found);
    if (code != 0) {
        set_error("failed to resolve address for %s: %s%s", st->host, gai_strerror(code), "");
        return -1;
    }
    int s = -1, timed_out = 0, saved = 0;
    for (struct addrinfo *p = found; p != NULL; p = p->ai_next) {
        s = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (s < 0) { saved = errno; continue; }
        int done = connect(s, p->ai_addr, p->ai_addrlen);
        if (done != 0 && errno == EINPROGRESS) {
            struct pollfd fd = { .fd = s, .events = POLLOUT };
            int ready;
            do { ready = poll(&fd, 1, connect_ms); } while (ready < 0 && errno == EINTR);
            if (ready == 0) {
                timed_out = 1;
                done = -1;
            } else if (ready == 1) {
                int error = 0;
                socklen_t length = sizeof error;
                done = getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0 ? 0 : -1;
                if (done != 0) errno = error;
            } else {
                done = -1;
            }
        }
        if (done == 0) {
            int flags = fcntl(s, F_GETFL);
            if (flags >= 0 && fcntl(s, F_SETFL, flags & ~O_NONBLOCK) == 0) break;
        }
        saved = errno;
        close(s);
        s = -1;
    }
    freeaddrinfo(found);
    if (s < 0) {
        if (timed_out) {
            char seconds[32];
            snprintf(seconds, sizeof seconds, "%d", connect_ms / 1000);
            set_error("failed to connect to %s:%s: no answer within %s s", st->host, st->port ? st->port : "", seconds);
        } else {
            set_error("failed to connect to %s:%s: %s", st->host, st->port ? st->port : "", strerror(saved));
        }
        return -1;
    }
    // Data sent and never acknowledged (a path that drops packets) ends the connection after the
    // idle limit too: retransmissions count as data sent for TCP_INFO, so the watchdog alone would
    // wait for the kernel's own limit (about 15 minutes).
    unsigned int unacknowledged = (unsigned int)idle_ms;
    setsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacknowledged, sizeof unacknowledged);
    if (watch_socket(s) != 0) {
        close(s);
        set_error("failed to connect to %s:%s: %s", st->host, st->port ? st->port : "", "too many connections open at once");
        return -1;
    }
    st->s = s;
    return 0;
}

static ssize_t stream_read(git_stream *stream, void *data, size_t length) {
    bulwark_stream *st = (bulwark_stream *)stream;
    ssize_t count;
    do { count = recv(st->s, data, length, 0); } while (count < 0 && errno == EINTR);
    if (count <= 0 && unwatch_socket(st->s, 1)) {
        idle_error(st);
        return -1;
    }
    if (count < 0) {
        set_error("could not read from %s: %s%s", st->host, strerror(errno), "");
        return -1;
    }
    return count;
}

static ssize_t stream_write(git_stream *stream, const char *data, size_t length, int flags) {
    (void)flags;
    bulwark_stream *st = (bulwark_stream *)stream;
    ssize_t count;
    // Never SIGPIPE: a peer that went away is an error of this write.
    do { count = send(st->s, data, length, MSG_NOSIGNAL); } while (count < 0 && errno == EINTR);
    if (count < 0) {
        if (unwatch_socket(st->s, 1)) idle_error(st);
        else set_error("could not write to %s: %s%s", st->host, strerror(errno), "");
        return -1;
    }
    return count;
}

static int stream_close(git_stream *stream) {
    bulwark_stream *st = (bulwark_stream *)stream;
    if (st->s < 0) return 0;
    unwatch_socket(st->s, 0);
    int closed = close(st->s);
    st->s = -1;
    return closed;
}

static void stream_free(git_stream *stream) {
    bulwark_stream *st = (bulwark_stream *)stream;
    if (st->s >= 0) stream_close(stream);
    free(st->host);
    free(st->port);
    free(st);
}

static int stream_new(git_stream **out, const char *host, const char *port) {
    bulwark_stream *st = calloc(1, sizeof *st);
    if (st == NULL) return -1;
    st->host = strdup(host);
    st->port = port ? strdup(port) : NULL;
    if (st->host == NULL || (port && st->port == NULL)) {
        free(st->host);
        free(st->port);
        free(st);
        return -1;
    }
    st->parent.version = GIT_STREAM_VERSION;
    st->parent.connect = stream_connect;
    st->parent.read = stream_read;
    st->parent.write = stream_write;
    st->parent.close = stream_close;
    st->parent.free = stream_free;
    st->s = -1;
    *out = (git_stream *)st;
    return 0;
}

int bulwark_git_register_stream(int connect_seconds, int idle_seconds) {
    if (connect_seconds > 0 && connect_seconds < 86400) connect_ms = connect_seconds * 1000;
    if (idle_seconds > 0 && idle_seconds < 86400) idle_ms = idle_seconds * 1000;
    git_stream_registration registration;
    memset(&registration, 0, sizeof registration);
    registration.version = GIT_STREAM_VERSION;
    registration.init = stream_new;
    return git_stream_register(GIT_STREAM_STANDARD, &registration);
}

long bulwark_git_idle_shutdowns(void) {
    pthread_mutex_lock(&lock);
    long count = shutdowns;
    pthread_mutex_unlock(&lock);
    return count;
}
