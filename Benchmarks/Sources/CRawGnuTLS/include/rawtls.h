#ifndef RAWTLS_H
#define RAWTLS_H

#include <stddef.h>
#include <stdint.h>

// Raw GnuTLS in C, the baseline the Swift engine is measured against: two sessions in one
// thread over memory buffers, set up as swift-gnutls sets up its own (the same priority
// string, certificates, in-handshake verification of chain, host name and purpose, session
// tickets), with none of its Swift layers.

typedef struct rawtls_config {
    const char *ca_pem;             // the root the client (and a mutual-TLS server) trusts
    const char *server_chain_pem;   // leaf first
    const char *server_key_pem;
    const char *client_chain_pem;   // NULL unless mutual
    const char *client_key_pem;
    const char *priority;
    const char *hostname;           // verified by the client, sent as SNI
    int tickets;                    // session tickets on
    int mutual;                     // the server requires and verifies a client certificate
} rawtls_config;

typedef struct rawtls_pair rawtls_pair;

// NULL on failure, with a message in `error`.
rawtls_pair *rawtls_create(const rawtls_config *config, char *error, size_t error_size);
void rawtls_destroy(rawtls_pair *pair);

// One connection: new sessions, a handshake to completion, the client reads the tickets.
// `resume`: offer the session kept from the last connection. Returns 0 or a GnuTLS error.
int rawtls_handshake(rawtls_pair *pair, int resume);
// Whether the last handshake resumed a session.
int rawtls_resumed(const rawtls_pair *pair);
// The client of the last connection sends `size` bytes in records of at most `record`;
// the server decrypts them. Returns the bytes read, or a negative GnuTLS error.
long rawtls_transfer(rawtls_pair *pair, const uint8_t *data, size_t size, size_t record);
const char *rawtls_strerror(int code);

#endif
