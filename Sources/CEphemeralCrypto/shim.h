#ifndef C_EPHEMERAL_CRYPTO_H
#define C_EPHEMERAL_CRYPTO_H
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#ifdef __linux__
#include <malloc.h>
#endif
#endif
