/* emu_diff.h: records exchanged between the two builds of emu_diff_ops.c
 * (native AVX-512 and emulated) and emu_diff_main.c, which compares them. */
#ifndef EMU_DIFF_H
#define EMU_DIFF_H

#include <stdint.h>

enum {
    DIFF_EXACT = 0,   /* bytes identical */
    DIFF_NANEQ = 1,   /* fp32 lanes: identical, or both NaN (payload may depend on operand order) */
    DIFF_REDUCE = 2,  /* one fp32: |a - b| <= 2^-20 * scale (or both NaN) */
};

typedef struct {
    char name[56];
    int mode;
    int len;     /* bytes used in b */
    float scale; /* DIFF_REDUCE only: sum of |inputs| */
    unsigned char b[256];
} diff_rec;

#define DIFF_CAP 8192

/* Each returns the number of records written (at most cap). */
int emu_diff_f_emu(diff_rec *out, int cap);
int emu_diff_bf16_emu(diff_rec *out, int cap);
int emu_diff_f_native(diff_rec *out, int cap);
int emu_diff_bf16_native(diff_rec *out, int cap);

#endif
