#ifndef C_EPHEMERAL_CRYPTO_H
#define C_EPHEMERAL_CRYPTO_H
/* The SHA-256 primitives behind FrameSigner's precomputed HMAC are deprecated in OpenSSL 3 (for the provider API,
   which looks the algorithm up again on every one-shot call) but kept: they are what makes a MAC cost a copy of
   two small states instead of a provider fetch. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#ifdef __linux__
#include <malloc.h>
#endif
#endif
