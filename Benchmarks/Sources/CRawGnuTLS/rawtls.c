#include "rawtls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

typedef struct buffer {
    uint8_t *bytes;
    size_t size, offset, capacity;
    gnutls_session_t reader;
} buffer;

struct rawtls_pair {
    rawtls_config config;
    gnutls_certificate_credentials_t client_credentials, server_credentials;
    gnutls_priority_t priority;
    gnutls_datum_t ticket_key;
    gnutls_datum_t session_data;
    gnutls_session_t client, server;
    buffer to_server, to_client;
    uint8_t scratch[16 * 1024 + 256];
    gnutls_typed_vdata_st client_vdata[2], server_vdata[1];
};

static ssize_t push(gnutls_transport_ptr_t pointer, const void *data, size_t size) {
    buffer *b = pointer;
    if (b->size + size > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 16 * 1024 + 512;
        while (capacity < b->size + size) capacity *= 2;
        uint8_t *grown = realloc(b->bytes, capacity);
        if (!grown) { errno = ENOMEM; return -1; }
        b->bytes = grown;
        b->capacity = capacity;
    }
    memcpy(b->bytes + b->size, data, size);
    b->size += size;
    return (ssize_t)size;
}

static ssize_t pull(gnutls_transport_ptr_t pointer, void *data, size_t size) {
    buffer *b = pointer;
    size_t available = b->size - b->offset;
    if (available == 0) {
        gnutls_transport_set_errno(b->reader, EAGAIN);
        return -1;
    }
    size_t count = size < available ? size : available;
    memcpy(data, b->bytes + b->offset, count);
    b->offset += count;
    if (b->offset == b->size) b->offset = b->size = 0;
    return (ssize_t)count;
}

static int pull_timeout(gnutls_transport_ptr_t pointer, unsigned int ms) {
    (void)ms;
    buffer *b = pointer;
    if (b->size > b->offset) return 1;
    gnutls_transport_set_errno(b->reader, EAGAIN);
    return -1;
}

static int load_credentials(gnutls_certificate_credentials_t *credentials, const char *chain, const char *key, const char *ca) {
    int rc = gnutls_certificate_allocate_credentials(credentials);
    if (rc < 0) return rc;
    if (chain && key) {
        gnutls_datum_t c = { (unsigned char *)chain, (unsigned)strlen(chain) };
        gnutls_datum_t k = { (unsigned char *)key, (unsigned)strlen(key) };
        rc = gnutls_certificate_set_x509_key_mem2(*credentials, &c, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (rc < 0) return rc;
    }
    if (ca) {
        gnutls_datum_t a = { (unsigned char *)ca, (unsigned)strlen(ca) };
        rc = gnutls_certificate_set_x509_trust_mem(*credentials, &a, GNUTLS_X509_FMT_PEM);
        if (rc < 0) return rc;
    }
    gnutls_certificate_set_verify_flags(*credentials, GNUTLS_PROFILE_TO_VFLAGS(GNUTLS_PROFILE_MEDIUM));
    return 0;
}

rawtls_pair *rawtls_create(const rawtls_config *config, char *error, size_t error_size) {
    rawtls_pair *pair = calloc(1, sizeof *pair);
    if (!pair) return NULL;
    pair->config = *config;
    const char *step = "gnutls_certificate_set_x509_key_mem2 (server)";
    int rc = load_credentials(&pair->server_credentials, config->server_chain_pem, config->server_key_pem, config->mutual ? config->ca_pem : NULL);
    if (rc >= 0) {
        step = "client credentials";
        rc = load_credentials(&pair->client_credentials, config->mutual ? config->client_chain_pem : NULL,
                              config->mutual ? config->client_key_pem : NULL, config->ca_pem);
    }
    if (rc >= 0) { step = "gnutls_priority_init"; rc = gnutls_priority_init(&pair->priority, config->priority, NULL); }
    if (rc >= 0 && config->tickets) { step = "gnutls_session_ticket_key_generate"; rc = gnutls_session_ticket_key_generate(&pair->ticket_key); }
    if (rc < 0) {
        snprintf(error, error_size, "%s: %s", step, gnutls_strerror(rc));
        rawtls_destroy(pair);
        return NULL;
    }
    pair->client_vdata[0] = (gnutls_typed_vdata_st){ GNUTLS_DT_DNS_HOSTNAME, (unsigned char *)config->hostname, 0 };
    pair->client_vdata[1] = (gnutls_typed_vdata_st){ GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_SERVER, 0 };
    pair->server_vdata[0] = (gnutls_typed_vdata_st){ GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0 };
    return pair;
}

static void close_sessions(rawtls_pair *pair) {
    if (pair->client) gnutls_deinit(pair->client);
    if (pair->server) gnutls_deinit(pair->server);
    pair->client = pair->server = NULL;
    pair->to_server.size = pair->to_server.offset = 0;
    pair->to_client.size = pair->to_client.offset = 0;
}

void rawtls_destroy(rawtls_pair *pair) {
    if (!pair) return;
    close_sessions(pair);
    if (pair->client_credentials) gnutls_certificate_free_credentials(pair->client_credentials);
    if (pair->server_credentials) gnutls_certificate_free_credentials(pair->server_credentials);
    if (pair->priority) gnutls_priority_deinit(pair->priority);
    if (pair->ticket_key.data) gnutls_free(pair->ticket_key.data);
    if (pair->session_data.data) gnutls_free(pair->session_data.data);
    free(pair->to_server.bytes);
    free(pair->to_client.bytes);
    free(pair);
}

static int make_session(rawtls_pair *pair, gnutls_session_t *session, int server) {
    unsigned flags = GNUTLS_NONBLOCK | (server ? GNUTLS_SERVER : GNUTLS_CLIENT);
    if (!pair->config.tickets) flags |= GNUTLS_NO_TICKETS;
    int rc = gnutls_init(session, flags);
    if (rc < 0) return rc;
    if ((rc = gnutls_priority_set(*session, pair->priority)) < 0) return rc;
    rc = gnutls_credentials_set(*session, GNUTLS_CRD_CERTIFICATE, server ? pair->server_credentials : pair->client_credentials);
    if (rc < 0) return rc;
    buffer *in = server ? &pair->to_server : &pair->to_client;
    buffer *out = server ? &pair->to_client : &pair->to_server;
    in->reader = *session;
    gnutls_transport_set_ptr2(*session, in, out);
    gnutls_transport_set_push_function(*session, push);
    gnutls_transport_set_pull_function(*session, pull);
    gnutls_transport_set_pull_timeout_function(*session, pull_timeout);
    gnutls_handshake_set_timeout(*session, 0);
    if (server) {
        gnutls_certificate_server_set_request(*session, pair->config.mutual ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE);
        if (pair->config.tickets && (rc = gnutls_session_ticket_enable_server(*session, &pair->ticket_key)) < 0) return rc;
        if (pair->config.mutual) gnutls_session_set_verify_cert2(*session, pair->server_vdata, 1, 0);
    } else {
        rc = gnutls_server_name_set(*session, GNUTLS_NAME_DNS, pair->config.hostname, strlen(pair->config.hostname));
        if (rc < 0) return rc;
        gnutls_session_set_verify_cert2(*session, pair->client_vdata, 2, 0);
    }
    return 0;
}

int rawtls_handshake(rawtls_pair *pair, int resume) {
    close_sessions(pair);
    int rc = make_session(pair, &pair->client, 0);
    if (rc >= 0) rc = make_session(pair, &pair->server, 1);
    if (rc < 0) return rc;
    if (resume && pair->session_data.data) gnutls_session_set_data(pair->client, pair->session_data.data, pair->session_data.size);
    int client_done = 0, server_done = 0;
    for (int round = 0; round < 32 && !(client_done && server_done); round++) {
        if (!client_done) {
            rc = gnutls_handshake(pair->client);
            if (rc == 0) client_done = 1;
            else if (rc != GNUTLS_E_AGAIN && gnutls_error_is_fatal(rc)) return rc;
        }
        if (!server_done) {
            rc = gnutls_handshake(pair->server);
            if (rc == 0) server_done = 1;
            else if (rc != GNUTLS_E_AGAIN && gnutls_error_is_fatal(rc)) return rc;
        }
    }
    if (!(client_done && server_done)) return GNUTLS_E_INTERNAL_ERROR;
    // TLS 1.3 tickets arrive after the handshake: the client reads them, as a first read would.
    for (int reads = 0; reads < 8 && pair->to_client.size > pair->to_client.offset; reads++) {
        rc = (int)gnutls_record_recv(pair->client, pair->scratch, sizeof pair->scratch);
        if (rc == GNUTLS_E_AGAIN) continue;
        if (rc < 0 && gnutls_error_is_fatal(rc)) return rc;
    }
    if (pair->config.tickets && !gnutls_session_is_resumed(pair->client)) {
        if (pair->session_data.data) { gnutls_free(pair->session_data.data); pair->session_data.data = NULL; }
        rc = gnutls_session_get_data2(pair->client, &pair->session_data);
        if (rc < 0) return rc;
    }
    return 0;
}

int rawtls_resumed(const rawtls_pair *pair) {
    return pair->client ? gnutls_session_is_resumed(pair->client) : 0;
}

long rawtls_transfer(rawtls_pair *pair, const uint8_t *data, size_t size, size_t record) {
    long received = 0;
    size_t offset = 0;
    while (offset < size) {
        size_t chunk = size - offset < record ? size - offset : record;
        ssize_t sent = gnutls_record_send(pair->client, data + offset, chunk);
        if (sent == GNUTLS_E_AGAIN || sent == GNUTLS_E_INTERRUPTED) continue;
        if (sent < 0) return sent;
        offset += (size_t)sent;
        while (pair->to_server.size > pair->to_server.offset || gnutls_record_check_pending(pair->server) > 0) {
            ssize_t got = gnutls_record_recv(pair->server, pair->scratch, sizeof pair->scratch);
            if (got == GNUTLS_E_AGAIN) break;
            if (got < 0) return got;
            received += got;
        }
    }
    return received;
}

const char *rawtls_strerror(int code) { return gnutls_strerror(code); }
