# cython: language_level=3
"""kernels._emu: the AVX-512 kernels compiled against a portable emulation of
the intrinsics they use (kernels/include/slide/emu/avx512_emu.h).

For testing the AVX-512 kernel logic (masks, tails, gathers, bf16 pairing) on
any x86-64 CPU, including ones without AVX-512. Slow by design and never
chosen automatically: the selector offers these kernels under the ISA names
`avx512@emu` and `avx512_bf16@emu` only when they are forced. On CPUs with
AVX-512 the tests also run the same source natively and compare.
"""

from libc.stdint cimport uintptr_t

cdef extern from *:
    """
    #define SLIDE_EMULATE_AVX512 1
    #include "slide/layer_avx512_bf16.h"
    #include "slide/hash_avx512.h"

    typedef void (*slide_emu_fn)(void);
    typedef struct { const char *op, *dtype, *isa; slide_emu_fn fn; } slide_emu_entry;
    #define SLIDE_E(op, dt, isa, f) {op, dt, isa, (slide_emu_fn)(f)}
    static const slide_emu_entry slide_emu_table[] = {
        SLIDE_E("fwd_rows", "f32", "avx512@emu", slide_fwd_rows_f32_avx512),
        SLIDE_E("fwd_rows", "bf16", "avx512@emu", slide_fwd_rows_bf16_avx512),
        SLIDE_E("fwd_rows", "bf16act", "avx512@emu", slide_fwd_rows_bf16act_avx512),
        SLIDE_E("bwd_rows", "f32", "avx512@emu", slide_bwd_rows_f32_avx512),
        SLIDE_E("bwd_rows", "bf16", "avx512@emu", slide_bwd_rows_bf16_avx512),
        SLIDE_E("fwd_cols", "f32", "avx512@emu", slide_fwd_cols_f32_avx512),
        SLIDE_E("fwd_cols", "bf16", "avx512@emu", slide_fwd_cols_bf16_avx512),
        SLIDE_E("fwd_cols", "bf16act", "avx512@emu", slide_fwd_cols_bf16act_avx512),
        SLIDE_E("bwd_cols", "f32", "avx512@emu", slide_bwd_cols_f32_avx512),
        SLIDE_E("bwd_cols", "bf16", "avx512@emu", slide_bwd_cols_bf16_avx512),
        SLIDE_E("adam", "f32", "avx512@emu", slide_adam_f32_avx512),
        SLIDE_E("row_adam", "f32", "avx512@emu", slide_row_adam_f32_avx512),
        SLIDE_E("hash", "f32", "avx512@emu", slide_hash_avx512),
        SLIDE_E("fwd_rows", "bf16", "avx512_bf16@emu", slide_fwd_rows_bf16_avx512_bf16),
        SLIDE_E("fwd_rows", "bf16act", "avx512_bf16@emu", slide_fwd_rows_bf16act_avx512_bf16),
    };
    static const int slide_emu_len = (int)(sizeof(slide_emu_table) / sizeof(slide_emu_table[0]));
    """
    ctypedef void (*slide_emu_fn)()
    ctypedef struct slide_emu_entry:
        const char *op
        const char *dtype
        const char *isa
        slide_emu_fn fn
    const slide_emu_entry slide_emu_table[]
    const int slide_emu_len


def kernel_table():
    """(op, dtype, isa, address) of every emulated kernel."""
    return [(slide_emu_table[i].op.decode(), slide_emu_table[i].dtype.decode(), slide_emu_table[i].isa.decode(),
             <uintptr_t>slide_emu_table[i].fn) for i in range(slide_emu_len)]


def register():
    """Make the emulated kernels available to the engine (kernels._core)."""
    from kernels import _core

    _core.register_kernels(kernel_table())
