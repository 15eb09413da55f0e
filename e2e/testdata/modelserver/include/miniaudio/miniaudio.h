/*
 * A stand-in for miniaudio.h, which the Go module of Ollama does not carry
 * and Debian does not package. Ollama's mtmd helper decodes audio input with
 * it; `make e2e-model-server` builds Ollama against this header instead, so
 * every audio buffer is refused as undecodable. Text models, the only ones
 * that target serves, never reach it.
 */
#ifndef SLUICE_MINIAUDIO_STUB_H
#define SLUICE_MINIAUDIO_STUB_H

#include <stddef.h>

typedef int ma_result;
typedef unsigned long long ma_uint64;
typedef unsigned int ma_uint32;
typedef enum { ma_format_unknown = 0, ma_format_f32 = 5 } ma_format;
typedef enum { ma_encoding_format_wav = 1 } ma_encoding_format;

#define MA_SUCCESS 0
#define MA_ERROR (-1)

typedef struct { ma_format format; ma_uint32 channels; ma_uint32 sampleRate; } ma_decoder_config;
typedef struct { int unused; } ma_decoder;
typedef struct { int unused; } ma_encoder_config;
typedef struct { int unused; } ma_encoder;

static inline ma_decoder_config ma_decoder_config_init(ma_format f, ma_uint32 ch, ma_uint32 rate) {
    ma_decoder_config c;
    c.format = f;
    c.channels = ch;
    c.sampleRate = rate;
    return c;
}
static inline ma_result ma_decoder_init_memory(const void *d, size_t n, const ma_decoder_config *c, ma_decoder *dec) {
    (void)d; (void)n; (void)c; (void)dec;
    return MA_ERROR;
}
static inline ma_result ma_decoder_get_length_in_pcm_frames(ma_decoder *dec, ma_uint64 *n) {
    (void)dec; *n = 0;
    return MA_ERROR;
}
static inline ma_result ma_decoder_read_pcm_frames(ma_decoder *dec, void *out, ma_uint64 n, ma_uint64 *read) {
    (void)dec; (void)out; (void)n; *read = 0;
    return MA_ERROR;
}
static inline ma_result ma_decoder_uninit(ma_decoder *dec) {
    (void)dec;
    return MA_SUCCESS;
}

#endif
