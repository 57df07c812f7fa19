/* cpu.h: what the CPU and the operating system let this process execute.
 *
 * Compiled for the baseline ISA. CPUID leaves 1 and 7 (subleaves 0 and 1)
 * give the instruction-set bits; XGETBV (only after CPUID says the OS set
 * OSXSAVE) gives XCR0, whose bits say which register state the OS saves on
 * context switches: AVX needs XMM|YMM (0x6), AVX-512 needs also opmask,
 * ZMM_Hi256 and Hi16_ZMM ((xcr0 & 0xe6) == 0xe6), AMX needs XTILECFG and
 * XTILEDATA (bits 17, 18) and, on Linux, a per-process permission
 * (arch_prctl ARCH_REQ_XCOMP_PERM). /proc/cpuinfo proves none of this.
 */
#ifndef SLIDE_CPU_H
#define SLIDE_CPU_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SLIDE_X86 1
#else
#define SLIDE_X86 0
#endif

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

typedef struct {
    uint32_t max_leaf;
    uint32_t leaf1_ecx, leaf1_edx;
    uint32_t leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax;
    uint64_t xcr0;
    int osxsave;
    /* decoded: instruction support AND operating-system state support */
    int sse2, avx, fma, f16c, avx2;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_fp16;
    int amx_tile, amx_bf16, amx_os;
} slide_cpu;

static uint64_t slide_xgetbv0(void) {
#if SLIDE_X86
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv, ecx = 0 */
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

static void slide_cpu_probe(slide_cpu *c) {
    memset(c, 0, sizeof(*c));
#if SLIDE_X86
    uint32_t a, b, cx, d;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return;
    c->max_leaf = a;
    if (__get_cpuid(1, &a, &b, &cx, &d)) {
        c->leaf1_ecx = cx;
        c->leaf1_edx = d;
    }
    if (c->max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->leaf7_ebx = b;
        c->leaf7_ecx = cx;
        c->leaf7_edx = d;
        if (a >= 1) {
            __cpuid_count(7, 1, a, b, cx, d);
            c->leaf7_1_eax = a;
        }
    }
    c->osxsave = (c->leaf1_ecx >> 27) & 1;
    if (c->osxsave) c->xcr0 = slide_xgetbv0();
    const int os_avx = (c->xcr0 & 0x6) == 0x6;
    const int os_avx512 = (c->xcr0 & 0xe6) == 0xe6;
    const int os_amx = ((c->xcr0 >> 17) & 3) == 3;
    c->sse2 = (c->leaf1_edx >> 26) & 1;
    c->avx = ((c->leaf1_ecx >> 28) & 1) && os_avx;
    c->fma = ((c->leaf1_ecx >> 12) & 1) && os_avx;
    c->f16c = ((c->leaf1_ecx >> 29) & 1) && os_avx;
    c->avx2 = ((c->leaf7_ebx >> 5) & 1) && os_avx;
    c->avx512f = ((c->leaf7_ebx >> 16) & 1) && os_avx512;
    c->avx512dq = ((c->leaf7_ebx >> 17) & 1) && os_avx512;
    c->avx512bw = ((c->leaf7_ebx >> 30) & 1) && os_avx512;
    c->avx512vl = ((c->leaf7_ebx >> 31) & 1) && os_avx512;
    c->avx512_fp16 = ((c->leaf7_edx >> 23) & 1) && os_avx512;
    c->avx512_bf16 = ((c->leaf7_1_eax >> 5) & 1) && os_avx512;
    c->amx_bf16 = ((c->leaf7_edx >> 22) & 1) && os_amx;
    c->amx_tile = ((c->leaf7_edx >> 24) & 1) && os_amx;
    c->amx_os = os_amx;
#endif
}

/* Ask Linux for permission to use AMX tile data (required before the first
 * tile instruction). Returns 0 on success, -1 otherwise. */
static int slide_request_amx(void) {
#if defined(__linux__) && SLIDE_X86 && defined(SYS_arch_prctl)
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

#endif
