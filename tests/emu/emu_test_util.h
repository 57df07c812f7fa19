/* emu_test_util.h: helpers shared by the C test programs under tests/emu/:
 * guarded buffers (a buffer that ends exactly where a PROT_NONE page starts,
 * so touching one element past its end faults), a SIGSEGV catcher that turns
 * a fault into a test failure, check counters and a small deterministic RNG.
 * Test code only; plain C + POSIX.
 */
#ifndef EMU_TEST_UTIL_H
#define EMU_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- checks ---------------------------------------------------------------- */

static long t_checks, t_fails;

#define T_MAX_REPORTS 40

static void t_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void t_fail(const char *fmt, ...) {
    t_fails++;
    if (t_fails > T_MAX_REPORTS) return;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static uint32_t t_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static __attribute__((unused)) float t_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#define CHECK_U(what, got, exp)                                                                        \
    do {                                                                                               \
        t_checks++;                                                                                    \
        unsigned long long g_ = (unsigned long long)(got), e_ = (unsigned long long)(exp);             \
        if (g_ != e_) t_fail("%s:%d %s: got 0x%llx, expected 0x%llx", __FILE__, __LINE__, what, g_, e_); \
    } while (0)

/* float compared by bit pattern */
#define CHECK_FBITS(what, got, exp)                                                                  \
    do {                                                                                             \
        t_checks++;                                                                                  \
        const float gf_ = (got), ef_ = (exp);                                                        \
        if (t_f2u(gf_) != t_f2u(ef_))                                                                \
            t_fail("%s:%d %s: got %a (0x%08x), expected %a (0x%08x)", __FILE__, __LINE__, what,      \
                   (double)gf_, t_f2u(gf_), (double)ef_, t_f2u(ef_));                                \
    } while (0)

/* ---- guarded buffers --------------------------------------------------------- */

typedef struct {
    void *map;
    size_t len;
} t_mapping;

#define T_MAX_MAPS 256
static t_mapping t_maps[T_MAX_MAPS];
static int t_nmaps;

static size_t t_page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* `bytes` usable bytes that end exactly at a PROT_NONE page; a PROT_NONE page
 * also precedes the mapping's first page. Contents zeroed. Freed by
 * t_guard_free_all(). */
static void *t_guard_alloc(size_t bytes) {
    const size_t pg = t_page();
    const size_t data = (bytes + pg - 1) / pg * pg;
    const size_t len = data + 2 * pg;
    if (t_nmaps == T_MAX_MAPS) {
        fprintf(stderr, "t_guard_alloc: too many mappings\n");
        abort();
    }
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        abort();
    }
    if (mprotect(m, pg, PROT_NONE) || mprotect(m + pg + data, pg, PROT_NONE)) {
        perror("mprotect");
        abort();
    }
    t_maps[t_nmaps].map = m;
    t_maps[t_nmaps].len = len;
    t_nmaps++;
    return m + pg + data - bytes;
}

static void t_guard_free_all(void) {
    for (int i = 0; i < t_nmaps; i++) munmap(t_maps[i].map, t_maps[i].len);
    t_nmaps = 0;
}

/* ---- fault catching ------------------------------------------------------------ */

static sigjmp_buf t_jmp;
static volatile sig_atomic_t t_in_guard;

static void t_on_fault(int sig) {
    if (t_in_guard) siglongjmp(t_jmp, sig);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void t_install_fault_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = t_on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* Runs fn(arg); a SIGSEGV/SIGBUS inside becomes a failure named `what`. */
static int t_guarded(const char *what, void (*fn)(void *), void *arg) {
    t_checks++;
    if (sigsetjmp(t_jmp, 1) == 0) {
        t_in_guard = 1;
        fn(arg);
        t_in_guard = 0;
        return 1;
    }
    t_in_guard = 0;
    t_fail("%s: memory fault (an access outside the buffer, e.g. to a masked-off lane)", what);
    return 0;
}

/* ---- RNG ------------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} t_rng;

static uint64_t t_next(t_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static __attribute__((unused)) float t_uniform(t_rng *r) { return (float)((double)(t_next(r) >> 11) * 0x1p-52 - 1.0); }

static __attribute__((unused)) uint32_t t_below(t_rng *r, uint32_t n) { return (uint32_t)(t_next(r) % n); }

#endif
