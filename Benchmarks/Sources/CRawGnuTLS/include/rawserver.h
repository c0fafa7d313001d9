#ifndef RAWSERVER_H
#define RAWSERVER_H

#include <stddef.h>

// Raw GnuTLS in C on a real socket: the loopback baseline for `TLSServer`. One thread runs
// an epoll loop over non-blocking sockets on 127.0.0.1, as one NIO event loop would; each
// connection is a TLS handshake (the same certificates, priority string and session
// tickets as our server), an echo of the first application data, then close_notify both
// ways (gnutls_bye(GNUTLS_SHUT_RDWR)) and the close.

typedef struct rawserver_config {
    const char *chain_pem;   // leaf first
    const char *key_pem;
    const char *priority;
    int tickets;             // session tickets on, as our server configuration has them
} rawserver_config;

typedef struct rawserver rawserver;

// Binds 127.0.0.1 on a free port (written to `port`) and starts the serving thread.
// NULL on failure, with a message in `error`.
rawserver *rawserver_start(const rawserver_config *config, int *port, char *error, size_t error_size);
// Stops the serving thread (it closes every connection still open), joins it and frees.
void rawserver_stop(rawserver *server);
// Connections completed with their echo so far, and connections that failed.
unsigned long rawserver_served(rawserver *server);
unsigned long rawserver_failed(rawserver *server);
// CPU seconds the serving thread has used.
double rawserver_cpu_seconds(rawserver *server);

#endif
