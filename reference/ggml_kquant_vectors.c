// Dequantization vectors for ggml's K-quant blocks (and Q8_0/Q4_0), made by ggml's own C reference code.
// Build against a ggml checkout (ggml-org/ggml, src/ggml-quants.c; the committed JSON came from commit d99724f2) and run:
//   gcc -O2 -I $GGML/include -I $GGML/src reference/ggml_kquant_vectors.c $GGML/src/ggml-quants.c -lm -o /tmp/kq
//   /tmp/kq > quant/src/test/resources/ggml_kquant_vectors.json
// Per type: blocks quantized by ggml's `quantize_row_*_ref` from random floats (xorshift, fixed seed), blocks of random
// bytes with small finite scales (every 6-bit scale/min and high bit pattern), and an all-zero block; then
// `dequantize_row_*` of all of them. Hex is the raw block bytes; floats are printed as their IEEE bits.
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "ggml.h"
#include "ggml-common.h"
#include "ggml-quants.h"
#include "ggml-impl.h"

// Symbols of ggml.c the reference quantizers touch (abort/log); unused here.
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "abort %s:%d\n", file, line); __builtin_trap(); }
void ggml_log_internal(enum ggml_log_level level, const char * format, ...) { (void) level; (void) format; }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; __builtin_trap(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; __builtin_trap(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; return "?"; }

static uint32_t s = 2463534242u;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s; }
static float frand(void) { return ((rnd() >> 8) / 16777216.0f) * 2 - 1; }

static void put_half(uint8_t * p, float v) { ggml_fp16_t h = GGML_FP32_TO_FP16(v); memcpy(p, &h, 2); }

static void emit(const char * name, const uint8_t * b, size_t bytes, const float * y, int n, int last) {
    printf("  \"%s\": {\"hex\": \"", name);
    for (size_t i = 0; i < bytes; i++) printf("%02x", b[i]);
    printf("\", \"dequant_f32_hex\": [");
    for (int i = 0; i < n; i++) { uint32_t u; memcpy(&u, &y[i], 4); printf("%s\"%08x\"", i ? ", " : "", u); }
    printf("]}%s\n", last ? "" : ",");
}

#define NB 6
int main(void) {
    static float x[NB * QK_K], y[NB * QK_K];
    for (int i = 0; i < NB * QK_K; i++) x[i] = frand() * (i % 7 == 0 ? 3.0f : 0.5f);
    printf("{\n  \"generator\": \"reference/ggml_kquant_vectors.c against ggml-org/ggml src/ggml-quants.c\",\n");
    {   // Q4_K: 3 quantized, 2 random, 1 zero
        static block_q4_K b[NB];
        quantize_row_q4_K_ref(x, b, 3 * QK_K);
        for (int k = 3; k < 5; k++) { uint8_t * p = (uint8_t *) &b[k]; for (size_t j = 0; j < sizeof b[k]; j++) p[j] = rnd(); put_half(p, 0.01f * (k + 1)); put_half(p + 2, 0.003f * k); }
        memset(&b[5], 0, sizeof b[5]);
        dequantize_row_q4_K(b, y, NB * QK_K);
        emit("q4_K", (uint8_t *) b, sizeof b, y, NB * QK_K, 0);
    }
    {
        static block_q5_K b[NB];
        quantize_row_q5_K_ref(x, b, 3 * QK_K);
        for (int k = 3; k < 5; k++) { uint8_t * p = (uint8_t *) &b[k]; for (size_t j = 0; j < sizeof b[k]; j++) p[j] = rnd(); put_half(p, 0.02f * k); put_half(p + 2, 0.001f * k); }
        memset(&b[5], 0, sizeof b[5]);
        dequantize_row_q5_K(b, y, NB * QK_K);
        emit("q5_K", (uint8_t *) b, sizeof b, y, NB * QK_K, 0);
    }
    {
        static block_q6_K b[NB];
        quantize_row_q6_K_ref(x, b, 3 * QK_K);
        for (int k = 3; k < 5; k++) { uint8_t * p = (uint8_t *) &b[k]; for (size_t j = 0; j < sizeof b[k]; j++) p[j] = rnd(); put_half(p + 208, 0.005f * k); }
        memset(&b[5], 0, sizeof b[5]);
        dequantize_row_q6_K(b, y, NB * QK_K);
        emit("q6_K", (uint8_t *) b, sizeof b, y, NB * QK_K, 0);
    }
    {
        static block_q8_0 b[NB * QK_K / QK8_0];
        quantize_row_q8_0_ref(x, b, NB * QK_K);
        dequantize_row_q8_0(b, y, NB * QK_K);
        emit("q8_0", (uint8_t *) b, sizeof b, y, NB * QK_K, 0);
    }
    {
        static block_q4_0 b[NB * QK_K / QK4_0];
        quantize_row_q4_0_ref(x, b, NB * QK_K);
        dequantize_row_q4_0(b, y, NB * QK_K);
        emit("q4_0", (uint8_t *) b, sizeof b, y, NB * QK_K, 0);
    }
    printf("  \"input_f32_hex\": [");
    for (int i = 0; i < NB * QK_K; i++) { uint32_t u; memcpy(&u, &x[i], 4); printf("%s\"%08x\"", i ? ", " : "", u); }
    printf("]\n}\n");
    return 0;
}
