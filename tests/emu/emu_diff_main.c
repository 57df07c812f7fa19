/* emu_diff_main.c: differential test of the AVX-512 emulation against the
 * real instructions. Links emu_diff_ops.c built twice (emulated and native,
 * see that file). The emulated battery always runs; the native one only
 * where the CPU has the extensions, otherwise a SKIP line is printed:
 *   SKIP avx512f: CPU lacks AVX-512 (F/BW/VL/DQ)
 *   SKIP avx512bf16: CPU lacks AVX-512 BF16
 * Otherwise: "DIFF <part> OK <records>" or FAIL lines and "DIFF <part> FAILED".
 * Exit status 0 unless a comparison failed.
 *
 * EMU_DIFF_ASSUME_CPU=1 in the environment skips the CPU check: only for a
 * build whose "native" object was made with EMU_DIFF_FAKE_NATIVE (a self-test
 * of this harness).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_diff.h"

static int is_nan_bits(const unsigned char *p) {
    unsigned u;
    memcpy(&u, p, 4);
    return (u & 0x7fffffffu) > 0x7f800000u;
}

static void dump(const char *what, const diff_rec *r) {
    printf("  %s:", what);
    for (int i = 0; i < r->len && i < 64; i += 4) {
        unsigned u;
        memcpy(&u, r->b + i, 4);
        printf(" %08x", u);
    }
    printf("%s\n", r->len > 64 ? " ..." : "");
}

static int compare(const char *part, const diff_rec *e, int ne, const diff_rec *n, int nn) {
    int fails = 0, reduce_total = 0, reduce_exact = 0;
    if (ne != nn) {
        printf("FAIL %s: %d emulated records, %d native\n", part, ne, nn);
        return 1;
    }
    for (int i = 0; i < ne; i++) {
        const diff_rec *a = &e[i], *b = &n[i];
        int ok = 1;
        if (strcmp(a->name, b->name) || a->len != b->len || a->mode != b->mode) {
            printf("FAIL %s: record %d differs in shape (%s / %s)\n", part, i, a->name, b->name);
            return 1;
        }
        if (a->mode == DIFF_EXACT) {
            ok = memcmp(a->b, b->b, (size_t)a->len) == 0;
        } else if (a->mode == DIFF_NANEQ) {
            for (int j = 0; j + 4 <= a->len; j += 4)
                if (memcmp(a->b + j, b->b + j, 4) && !(is_nan_bits(a->b + j) && is_nan_bits(b->b + j))) ok = 0;
        } else {
            float x, y;
            memcpy(&x, a->b, 4);
            memcpy(&y, b->b, 4);
            reduce_total++;
            if (memcmp(&x, &y, 4) == 0) {
                reduce_exact++;
            } else if (isnan(x) || isnan(y)) {
                ok = isnan(x) && isnan(y);
            } else if (isinf(x) || isinf(y)) {
                ok = x == y || isinf(a->scale);
            } else {
                ok = fabs((double)x - (double)y) <= 0x1p-20 * (double)a->scale;
            }
        }
        if (!ok) {
            fails++;
            if (fails <= 30) {
                printf("FAIL %s: %s\n", part, a->name);
                dump("emulated", a);
                dump("native  ", b);
            }
        }
    }
    if (reduce_total) printf("INFO %s: reduce_add bit-identical in %d of %d records\n", part, reduce_exact, reduce_total);
    if (fails) {
        printf("DIFF %s FAILED %d of %d records\n", part, fails, ne);
        return 1;
    }
    printf("DIFF %s OK %d\n", part, ne);
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    diff_rec *e = calloc(DIFF_CAP, sizeof *e), *n = calloc(DIFF_CAP, sizeof *n);
    if (!e || !n) return 2;
    int bad = 0;
    __builtin_cpu_init();
    const char *assume = getenv("EMU_DIFF_ASSUME_CPU");
    const int force = assume && assume[0] == '1';

    const int ne = emu_diff_f_emu(e, DIFF_CAP);
    printf("EMU avx512f records %d\n", ne);
    if (ne <= 0 || ne >= DIFF_CAP) bad = 1;
    if (force || (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))) {
        const int nn = emu_diff_f_native(n, DIFF_CAP);
        bad |= compare("avx512f", e, ne, n, nn);
    } else {
        printf("SKIP avx512f: CPU lacks AVX-512 (F/BW/VL/DQ)\n");
    }

    const int ne2 = emu_diff_bf16_emu(e, DIFF_CAP);
    printf("EMU avx512bf16 records %d\n", ne2);
    if (ne2 <= 0 || ne2 >= DIFF_CAP) bad = 1;
    if (force || (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16"))) {
        const int nn = emu_diff_bf16_native(n, DIFF_CAP);
        bad |= compare("avx512bf16", e, ne2, n, nn);
    } else {
        printf("SKIP avx512bf16: CPU lacks AVX-512 BF16\n");
    }
    free(e);
    free(n);
    return bad;
}
