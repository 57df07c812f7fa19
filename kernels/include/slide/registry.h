/* registry.h: the table of compiled kernels, as data.
 *
 * One entry per (op, dtype, isa). The Python selector reads this table,
 * intersects it with what the CPU can run and picks one entry per op; the
 * engine then calls through the entry's function pointer. ISA-specific
 * entries exist only when the compiler could target that ISA
 * (SLIDE_COMPILED_* from setup.py); whether the CPU can run them is decided
 * at run time, never here.
 */
#ifndef SLIDE_REGISTRY_H
#define SLIDE_REGISTRY_H

#include "cpu.h"
#include "batch.h"
#include "engine.h"
#include "layer_scalar.h"
#if defined(SLIDE_COMPILED_AVX2)
#include "hash_avx2.h"
#include "layer_avx2.h"
#endif
#if defined(SLIDE_COMPILED_AVX512)
#include "hash_avx512.h"
#include "layer_avx512.h"
#endif
#if defined(SLIDE_COMPILED_AVX512BF16)
#include "layer_avx512_bf16.h"
#endif

typedef void (*slide_any_fn)(void);

typedef struct {
    const char *op;    /* fwd_rows, bwd_rows, fwd_cols, bwd_cols, adam, row_adam, hash, hash_rows */
    const char *dtype; /* f32, bf16 (bf16 weights), bf16act (bf16 weights and activations) */
    const char *isa;   /* scalar, avx2, avx512, avx512_bf16 */
    slide_any_fn fn;
} slide_kernel_entry;

#define SLIDE_K(op, dtype, isa, fn) {op, dtype, isa, (slide_any_fn)(fn)}

static const slide_kernel_entry slide_registry[] = {
    SLIDE_K("fwd_rows", "f32", "scalar", slide_fwd_rows_f32_scalar),
    SLIDE_K("bwd_rows", "f32", "scalar", slide_bwd_rows_f32_scalar),
    SLIDE_K("fwd_cols", "f32", "scalar", slide_fwd_cols_f32_scalar),
    SLIDE_K("bwd_cols", "f32", "scalar", slide_bwd_cols_f32_scalar),
    SLIDE_K("fwd_rows", "bf16", "scalar", slide_fwd_rows_bf16_scalar),
    SLIDE_K("bwd_rows", "bf16", "scalar", slide_bwd_rows_bf16_scalar),
    SLIDE_K("fwd_cols", "bf16", "scalar", slide_fwd_cols_bf16_scalar),
    SLIDE_K("bwd_cols", "bf16", "scalar", slide_bwd_cols_bf16_scalar),
    SLIDE_K("fwd_rows", "bf16act", "scalar", slide_fwd_rows_bf16act_scalar),
    SLIDE_K("fwd_cols", "bf16act", "scalar", slide_fwd_cols_bf16act_scalar),
    SLIDE_K("adam", "f32", "scalar", slide_adam_f32_scalar),
    SLIDE_K("row_adam", "f32", "scalar", slide_row_adam_f32_scalar),
    SLIDE_K("hash", "f32", "scalar", slide_hash_scalar),
    SLIDE_K("hash_rows", "f32", "scalar", slide_hash_rows_scalar),
#if defined(SLIDE_COMPILED_AVX2)
    SLIDE_K("fwd_rows", "f32", "avx2", slide_fwd_rows_f32_avx2),
    SLIDE_K("fwd_rows", "bf16", "avx2", slide_fwd_rows_bf16_avx2),
    SLIDE_K("fwd_rows", "bf16act", "avx2", slide_fwd_rows_bf16act_avx2),
    SLIDE_K("bwd_rows", "f32", "avx2", slide_bwd_rows_f32_avx2),
    SLIDE_K("bwd_rows", "bf16", "avx2", slide_bwd_rows_bf16_avx2),
    SLIDE_K("fwd_cols", "f32", "avx2", slide_fwd_cols_f32_avx2),
    SLIDE_K("fwd_cols", "bf16", "avx2", slide_fwd_cols_bf16_avx2),
    SLIDE_K("fwd_cols", "bf16act", "avx2", slide_fwd_cols_bf16act_avx2),
    SLIDE_K("bwd_cols", "f32", "avx2", slide_bwd_cols_f32_avx2),
    SLIDE_K("bwd_cols", "bf16", "avx2", slide_bwd_cols_bf16_avx2),
    SLIDE_K("adam", "f32", "avx2", slide_adam_f32_avx2),
    SLIDE_K("row_adam", "f32", "avx2", slide_row_adam_f32_avx2),
    SLIDE_K("hash", "f32", "avx2", slide_hash_avx2),
    SLIDE_K("hash_rows", "f32", "avx2", slide_hash_rows_avx2),
#endif
#if defined(SLIDE_COMPILED_AVX512)
    SLIDE_K("fwd_rows", "f32", "avx512", slide_fwd_rows_f32_avx512),
    SLIDE_K("fwd_rows", "bf16", "avx512", slide_fwd_rows_bf16_avx512),
    SLIDE_K("fwd_rows", "bf16act", "avx512", slide_fwd_rows_bf16act_avx512),
    SLIDE_K("bwd_rows", "f32", "avx512", slide_bwd_rows_f32_avx512),
    SLIDE_K("bwd_rows", "bf16", "avx512", slide_bwd_rows_bf16_avx512),
    SLIDE_K("fwd_cols", "f32", "avx512", slide_fwd_cols_f32_avx512),
    SLIDE_K("fwd_cols", "bf16", "avx512", slide_fwd_cols_bf16_avx512),
    SLIDE_K("fwd_cols", "bf16act", "avx512", slide_fwd_cols_bf16act_avx512),
    SLIDE_K("bwd_cols", "f32", "avx512", slide_bwd_cols_f32_avx512),
    SLIDE_K("bwd_cols", "bf16", "avx512", slide_bwd_cols_bf16_avx512),
    SLIDE_K("adam", "f32", "avx512", slide_adam_f32_avx512),
    SLIDE_K("row_adam", "f32", "avx512", slide_row_adam_f32_avx512),
    SLIDE_K("hash", "f32", "avx512", slide_hash_avx512),
#endif
#if defined(SLIDE_COMPILED_AVX512BF16)
    SLIDE_K("fwd_rows", "bf16", "avx512_bf16", slide_fwd_rows_bf16_avx512_bf16),
    SLIDE_K("fwd_rows", "bf16act", "avx512_bf16", slide_fwd_rows_bf16act_avx512_bf16),
#endif
};

/* ISAs this build compiled kernels for (bit 0 avx2, 1 avx512, 2 avx512_bf16, 3 amx). */
static int slide_compiled_isas(void) {
    int m = 0;
#if defined(SLIDE_COMPILED_AVX2)
    m |= 1;
#endif
#if defined(SLIDE_COMPILED_AVX512)
    m |= 2;
#endif
#if defined(SLIDE_COMPILED_AVX512BF16)
    m |= 4;
#endif
#if defined(SLIDE_COMPILED_AMX)
    m |= 8;
#endif
    return m;
}

static const int slide_registry_len = (int)(sizeof(slide_registry) / sizeof(slide_registry[0]));

#endif
