// The system OpenSSL (libssl-dev, OpenSSL 3) as seen by CarteCrypto and CarteRights. CarteCrypto uses
// the EVP, X.509, PEM and error APIs; CarteRights adds libssl (TLS) and one deprecated family, RSA_METHOD,
// the only way OpenSSL 3 lets a TLS handshake sign with a key that lives on a smart card without a
// provider (what libp11's engine does too), hence OPENSSL_SUPPRESS_DEPRECATED.
#ifndef CARTE_COPENSSL_SHIM_H
#define CARTE_COPENSSL_SHIM_H
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/ssl.h>
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
static const int carte_rsa_pkcs1_pss_padding = RSA_PKCS1_PSS_PADDING;
static const int carte_rsa_pss_saltlen_digest = RSA_PSS_SALTLEN_DIGEST;
static const int carte_rsa_pss_saltlen_auto = RSA_PSS_SALTLEN_AUTO;

static inline STACK_OF(X509) *carte_sk_x509_new(void) { return sk_X509_new_null(); }
static inline int carte_sk_x509_push(STACK_OF(X509) *s, X509 *x) { return sk_X509_push(s, x); }
static inline void carte_sk_x509_free(STACK_OF(X509) *s) { sk_X509_free(s); }
static inline long carte_bio_pending(BIO *b) { return (long)BIO_ctrl_pending(b); }
static inline void *carte_x509_get_ext_d2i(const X509 *x, int nid) { return X509_get_ext_d2i(x, nid, NULL, NULL); }
static inline void carte_asn1_bit_string_free(void *p) { ASN1_BIT_STRING_free((ASN1_BIT_STRING *)p); }
static inline int carte_asn1_bit_string_get_bit(void *p, int n) { return ASN1_BIT_STRING_get_bit((ASN1_BIT_STRING *)p, n); }
static inline void carte_basic_constraints_free(void *p) { BASIC_CONSTRAINTS_free((BASIC_CONSTRAINTS *)p); }
static inline int carte_basic_constraints_is_ca(void *p) { return ((BASIC_CONSTRAINTS *)p)->ca ? 1 : 0; }

// libssl macros.
static const int carte_tls1_2_version = TLS1_2_VERSION;
static inline int carte_ssl_ctx_set_min_proto(SSL_CTX *c, int v) { return (int)SSL_CTX_set_min_proto_version(c, v); }
static inline int carte_ssl_ctx_set_max_proto(SSL_CTX *c, int v) { return (int)SSL_CTX_set_max_proto_version(c, v); }
static inline int carte_ssl_ctx_set1_sigalgs(SSL_CTX *c, const char *l) { return (int)SSL_CTX_set1_sigalgs_list(c, l); }
static inline int carte_ssl_ctx_set1_client_sigalgs(SSL_CTX *c, const char *l) { return (int)SSL_CTX_set1_client_sigalgs_list(c, l); }
static inline int carte_ssl_ctx_add_extra_chain_cert(SSL_CTX *c, X509 *x) { return (int)SSL_CTX_add_extra_chain_cert(c, x); }
static inline int carte_ssl_set_tlsext_host_name(SSL *s, const char *n) { return (int)SSL_set_tlsext_host_name(s, n); }
static inline int carte_ssl_ctx_set_session_cache_off(SSL_CTX *c) { return (int)SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF); }
static const unsigned long carte_ssl_op_no_ticket = SSL_OP_NO_TICKET;
static const unsigned long carte_ssl_op_no_renegotiation = SSL_OP_NO_RENEGOTIATION;
static inline int carte_rsa_set_app_data(RSA *r, void *p) { return RSA_set_ex_data(r, 0, p); }
static inline void *carte_rsa_get_app_data(const RSA *r) { return RSA_get_ex_data(r, 0); }

#endif
