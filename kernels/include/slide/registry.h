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

#include "engine.h"
#include "layer_scalar.h"

typedef void (*slide_any_fn)(void);

typedef struct {
    const char *op;    /* fwd_rows, bwd_rows, fwd_cols, bwd_cols, adam, hash */
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
    SLIDE_K("adam", "f32", "scalar", slide_adam_f32_scalar),
    SLIDE_K("hash", "f32", "scalar", slide_hash_scalar),
};

static const int slide_registry_len = (int)(sizeof(slide_registry) / sizeof(slide_registry[0]));

#endif
