// The system OpenSSL (libssl-dev, OpenSSL 3) as seen by CarteCrypto. Only the EVP, X.509, PEM and
// error APIs are used (the low-level RSA_* and SHA256_* calls are deprecated in OpenSSL 3).
#ifndef CARTE_COPENSSL_SHIM_H
#define CARTE_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/ec.h>

// Macros and macro-generated inline functions Swift cannot import, wrapped once here.
static const int carte_mbstring_utf8 = MBSTRING_UTF8;
static const int carte_rsa_pkcs1_padding = RSA_PKCS1_PADDING;
static const int carte_rsa_no_padding = RSA_NO_PADDING;

static inline STACK_OF(X509) *carte_sk_x509_new(void) { return sk_X509_new_null(); }
static inline int carte_sk_x509_push(STACK_OF(X509) *s, X509 *x) { return sk_X509_push(s, x); }
static inline void carte_sk_x509_free(STACK_OF(X509) *s) { sk_X509_free(s); }
static inline long carte_bio_pending(BIO *b) { return (long)BIO_ctrl_pending(b); }
static inline void *carte_x509_get_ext_d2i(const X509 *x, int nid) { return X509_get_ext_d2i(x, nid, NULL, NULL); }
static inline void carte_asn1_bit_string_free(void *p) { ASN1_BIT_STRING_free((ASN1_BIT_STRING *)p); }
static inline int carte_asn1_bit_string_get_bit(void *p, int n) { return ASN1_BIT_STRING_get_bit((ASN1_BIT_STRING *)p, n); }
static inline void carte_basic_constraints_free(void *p) { BASIC_CONSTRAINTS_free((BASIC_CONSTRAINTS *)p); }
static inline int carte_basic_constraints_is_ca(void *p) { return ((BASIC_CONSTRAINTS *)p)->ca ? 1 : 0; }

#endif
