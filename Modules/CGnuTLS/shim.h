#ifndef CGNUTLS_SHIM_H
#define CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <gnutls/x509-ext.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/ocsp.h>
#include <gnutls/pkcs12.h>
#include <gnutls/pkcs11.h>
#include <gnutls/system-keys.h>
#include <arpa/inet.h>

/* `gnutls_free` is a global function pointer; Swift 6 rejects it as shared mutable state. */
static inline void cgnutls_free(void *ptr) { gnutls_free(ptr); }
/* `gnutls_malloc` likewise: for memory GnuTLS frees (a signature from an external key, an OCSP staple from the status callback). */
static inline void *cgnutls_malloc(size_t size) { return gnutls_malloc(size); }

/* Function-like macros Swift cannot import. */
static inline unsigned cgnutls_curve_to_bits(gnutls_ecc_curve_t curve) {
    return GNUTLS_CURVE_TO_BITS(curve);
}
static inline unsigned cgnutls_bits_to_curve(gnutls_ecc_curve_t curve) {
    return GNUTLS_BITS_TO_CURVE(curve);
}
/* GNUTLS_FLAGS_TO_SIGN_ALGO is a function-like macro (gnutls_privkey_info_func flags). */
static inline unsigned cgnutls_flags_to_sign_algo(unsigned flags) { return GNUTLS_FLAGS_TO_SIGN_ALGO(flags); }
static inline int cgnutls_bits_are_curve(unsigned bits) { return GNUTLS_BITS_ARE_CURVE(bits); }

/* GNUTLS_PROFILE_TO_VFLAGS is a function-like macro. */
static inline unsigned cgnutls_profile_to_vflags(gnutls_certificate_verification_profiles_t profile) {
    return GNUTLS_PROFILE_TO_VFLAGS(profile);
}

#endif
