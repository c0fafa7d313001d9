#define _GNU_SOURCE
#include "rawserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

enum phase { HANDSHAKE, READ, SEND, BYE };

typedef struct connection {
    int fd;
    gnutls_session_t session;
    enum phase phase;
    unsigned char data[256];
    size_t length;
    // What GnuTLS wrote during one step, sent as one write (a whole flight in one segment),
    // and what one read from the socket brought (GnuTLS pulls a record header, then its body).
    unsigned char *out;
    size_t out_size, out_sent, out_capacity;
    unsigned char in[16 * 1024 + 512];
    size_t in_size, in_offset;
    uint32_t events;   // what epoll waits for
    struct connection *previous, *next;   // the open connections, for the stop
} connection;

struct rawserver {
    gnutls_certificate_credentials_t credentials;
    gnutls_priority_t priority;
    gnutls_datum_t ticket_key;
    int tickets;
    int listener, epoll, wake;
    pthread_t thread;
    int running;
    clockid_t cpu_clock;
    connection *open;
    atomic_ulong served, failed;
};

// Transport: GnuTLS's writes are gathered and sent at the end of each step (as our engine
// hands a flight to the channel as one buffer); reads fill `in` with one recv.
static ssize_t vec_push(gnutls_transport_ptr_t pointer, const giovec_t *iov, int count) {
    connection *c = pointer;
    size_t total = 0;
    for (int index = 0; index < count; index++) total += iov[index].iov_len;
    if (c->out_size + total > c->out_capacity) {
        size_t capacity = c->out_capacity ? c->out_capacity : 4096;
        while (capacity < c->out_size + total) capacity *= 2;
        unsigned char *grown = realloc(c->out, capacity);
        if (!grown) { gnutls_transport_set_errno(c->session, ENOMEM); return -1; }
        c->out = grown;
        c->out_capacity = capacity;
    }
    for (int index = 0; index < count; index++) {
        memcpy(c->out + c->out_size, iov[index].iov_base, iov[index].iov_len);
        c->out_size += iov[index].iov_len;
    }
    return (ssize_t)total;
}

static ssize_t pull(gnutls_transport_ptr_t pointer, void *data, size_t size) {
    connection *c = pointer;
    if (c->in_offset == c->in_size) {
        ssize_t got = recv(c->fd, c->in, sizeof c->in, 0);
        if (got < 0) { gnutls_transport_set_errno(c->session, errno == EWOULDBLOCK ? EAGAIN : errno); return -1; }
        if (got == 0) return 0;
        c->in_size = (size_t)got;
        c->in_offset = 0;
    }
    size_t available = c->in_size - c->in_offset;
    size_t count = size < available ? size : available;
    memcpy(data, c->in + c->in_offset, count);
    c->in_offset += count;
    return (ssize_t)count;
}

// Whether input is waiting (GnuTLS asks before some reads; never blocks: ms is ignored, as
// our engine ignores it).
static int pull_timeout(gnutls_transport_ptr_t pointer, unsigned int ms) {
    (void)ms;
    connection *c = pointer;
    if (c->in_offset < c->in_size) return 1;
    struct pollfd poller = { .fd = c->fd, .events = POLLIN };
    int ready = poll(&poller, 1, 0);
    if (ready < 0) { gnutls_transport_set_errno(c->session, errno); return -1; }
    return ready;
}

// Sends what the step wrote; 0 when all is out, 1 when the socket is full (wait for EPOLLOUT), -1 on error.
static int flush_out(connection *c) {
    while (c->out_sent < c->out_size) {
        ssize_t sent = send(c->fd, c->out + c->out_sent, c->out_size - c->out_sent, MSG_NOSIGNAL);
        if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : (errno == EINTR ? 0 : -1);
        c->out_sent += (size_t)sent;
    }
    c->out_size = c->out_sent = 0;
    return 0;
}

static void close_connection(rawserver *server, connection *c) {
    epoll_ctl(server->epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    gnutls_deinit(c->session);
    free(c->out);
    if (c->previous) c->previous->next = c->next; else server->open = c->next;
    if (c->next) c->next->previous = c->previous;
    free(c);
}

// Sends what the last call wrote and waits for input, or for room to send the rest.
// Returns 0 when the connection failed (and is closed).
static int wait_for_socket(rawserver *server, connection *c) {
    int flushed = flush_out(c);
    if (flushed < 0) return 0;
    uint32_t events = flushed ? EPOLLOUT : EPOLLIN;
    if (events != c->events) {
        struct epoll_event event = { .events = events, .data.ptr = c };
        epoll_ctl(server->epoll, EPOLL_CTL_MOD, c->fd, &event);
        c->events = events;
    }
    return 1;
}

static void want(rawserver *server, connection *c);

// Advances one connection as far as the socket allows.
static void step(rawserver *server, connection *c) {
    if (c->out_sent < c->out_size) {
        // Writable again: send the rest before GnuTLS goes on.
        int flushed = flush_out(c);
        if (flushed < 0) goto failed;
        if (flushed) return;
    }
    for (;;) {
        int rc;
        switch (c->phase) {
        case HANDSHAKE:
            rc = gnutls_handshake(c->session);
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { want(server, c); return; }
            if (rc < 0 && gnutls_error_is_fatal(rc)) goto failed;
            if (rc == 0) c->phase = READ;
            break;
        case READ: {
            ssize_t got = gnutls_record_recv(c->session, c->data + c->length, sizeof c->data - c->length);
            if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED) { want(server, c); return; }
            if (got <= 0) goto failed;   // closed (or failed) before any application data
            c->length += (size_t)got;
            c->phase = SEND;
            break;
        }
        case SEND: {
            // After GNUTLS_E_AGAIN, GnuTLS wants the same call again (it keeps the record).
            ssize_t sent = gnutls_record_send(c->session, c->data, c->length);
            if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED) { want(server, c); return; }
            if (sent < 0) goto failed;
            c->phase = BYE;
            break;
        }
        case BYE:
            // close_notify, then the peer's (as TLSServer's close waits for it).
            rc = gnutls_bye(c->session, GNUTLS_SHUT_RDWR);
            if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) { want(server, c); return; }
            // A peer closing right after its close_notify is a normal end too.
            if (flush_out(c) < 0) goto failed;
            atomic_fetch_add(&server->served, 1);
            close_connection(server, c);
            return;
        }
    }
failed:
    atomic_fetch_add(&server->failed, 1);
    close_connection(server, c);
}

static void want(rawserver *server, connection *c) {
    if (!wait_for_socket(server, c)) {
        atomic_fetch_add(&server->failed, 1);
        close_connection(server, c);
    }
}

static void accept_all(rawserver *server) {
    for (;;) {
        int fd = accept4(server->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;   // EAGAIN: none left (other errors: try at the next wake)
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        connection *c = calloc(1, sizeof *c);
        unsigned flags = GNUTLS_SERVER | GNUTLS_NONBLOCK | (server->tickets ? 0 : GNUTLS_NO_TICKETS);
        if (!c || gnutls_init(&c->session, flags) < 0) {
            free(c);
            close(fd);
            atomic_fetch_add(&server->failed, 1);
            continue;
        }
        c->fd = fd;
        c->next = server->open;
        if (server->open) server->open->previous = c;
        server->open = c;
        if (gnutls_priority_set(c->session, server->priority) < 0
            || gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, server->credentials) < 0
            || (server->tickets && gnutls_session_ticket_enable_server(c->session, &server->ticket_key) < 0)) {
            atomic_fetch_add(&server->failed, 1);
            close_connection(server, c);
            continue;
        }
        gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_IGNORE);
        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_vec_push_function(c->session, vec_push);
        gnutls_transport_set_pull_function(c->session, pull);
        gnutls_transport_set_pull_timeout_function(c->session, pull_timeout);
        gnutls_handshake_set_timeout(c->session, 0);
        struct epoll_event event = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(server->epoll, EPOLL_CTL_ADD, fd, &event);
        c->events = EPOLLIN;
        step(server, c);
    }
}

static void *serve(void *argument) {
    rawserver *server = argument;
    struct epoll_event events[64];
    for (;;) {
        int count = epoll_wait(server->epoll, events, 64, -1);
        if (count < 0 && errno != EINTR) break;
        for (int index = 0; index < count; index++) {
            void *pointer = events[index].data.ptr;
            if (pointer == &server->wake) goto stopped;
            if (pointer == &server->listener) accept_all(server);
            else step(server, pointer);
        }
    }
stopped:
    while (server->open) close_connection(server, server->open);
    return NULL;
}

static void destroy(rawserver *server) {
    if (server->listener >= 0) close(server->listener);
    if (server->epoll >= 0) close(server->epoll);
    if (server->wake >= 0) close(server->wake);
    if (server->credentials) gnutls_certificate_free_credentials(server->credentials);
    if (server->priority) gnutls_priority_deinit(server->priority);
    if (server->ticket_key.data) {
        memset(server->ticket_key.data, 0, server->ticket_key.size);
        gnutls_free(server->ticket_key.data);
    }
    free(server);
}

rawserver *rawserver_start(const rawserver_config *config, int *port, char *error, size_t error_size) {
    rawserver *server = calloc(1, sizeof *server);
    if (!server) { snprintf(error, error_size, "out of memory"); return NULL; }
    server->listener = server->epoll = server->wake = -1;
    server->tickets = config->tickets;
    const char *step_name = "gnutls_certificate_allocate_credentials";
    int rc = gnutls_certificate_allocate_credentials(&server->credentials);
    if (rc >= 0) {
        step_name = "gnutls_certificate_set_x509_key_mem2";
        gnutls_datum_t chain = { (unsigned char *)config->chain_pem, (unsigned)strlen(config->chain_pem) };
        gnutls_datum_t key = { (unsigned char *)config->key_pem, (unsigned)strlen(config->key_pem) };
        rc = gnutls_certificate_set_x509_key_mem2(server->credentials, &chain, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    }
    if (rc >= 0) { step_name = "gnutls_priority_init"; rc = gnutls_priority_init(&server->priority, config->priority, NULL); }
    if (rc >= 0 && config->tickets) { step_name = "gnutls_session_ticket_key_generate"; rc = gnutls_session_ticket_key_generate(&server->ticket_key); }
    if (rc < 0) {
        snprintf(error, error_size, "%s: %s", step_name, gnutls_strerror(rc));
        destroy(server);
        return NULL;
    }
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t length = sizeof address;
    int one = 1;
    server->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    server->epoll = epoll_create1(EPOLL_CLOEXEC);
    server->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (server->listener < 0 || server->epoll < 0 || server->wake < 0
        || setsockopt(server->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(server->listener, (struct sockaddr *)&address, sizeof address) < 0
        || listen(server->listener, 256) < 0
        || getsockname(server->listener, (struct sockaddr *)&address, &length) < 0) {
        snprintf(error, error_size, "listening on 127.0.0.1: %s", strerror(errno));
        destroy(server);
        return NULL;
    }
    struct epoll_event listen_event = { .events = EPOLLIN, .data.ptr = &server->listener };
    struct epoll_event wake_event = { .events = EPOLLIN, .data.ptr = &server->wake };
    epoll_ctl(server->epoll, EPOLL_CTL_ADD, server->listener, &listen_event);
    epoll_ctl(server->epoll, EPOLL_CTL_ADD, server->wake, &wake_event);
    *port = ntohs(address.sin_port);
    if ((rc = pthread_create(&server->thread, NULL, serve, server)) != 0) {
        snprintf(error, error_size, "pthread_create: %s", strerror(rc));
        destroy(server);
        return NULL;
    }
    server->running = 1;
    if (pthread_getcpuclockid(server->thread, &server->cpu_clock) != 0) server->cpu_clock = (clockid_t)-1;
    return server;
}

void rawserver_stop(rawserver *server) {
    if (!server) return;
    if (server->running) {
        uint64_t one = 1;
        while (write(server->wake, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_join(server->thread, NULL);
    }
    destroy(server);
}

unsigned long rawserver_served(rawserver *server) { return atomic_load(&server->served); }
unsigned long rawserver_failed(rawserver *server) { return atomic_load(&server->failed); }

double rawserver_cpu_seconds(rawserver *server) {
    struct timespec spec;
    if (server->cpu_clock == (clockid_t)-1 || clock_gettime(server->cpu_clock, &spec) != 0) return 0;
    return (double)spec.tv_sec + (double)spec.tv_nsec / 1e9;
}
