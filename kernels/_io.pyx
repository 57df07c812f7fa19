# cython: language_level=3
"""Reading and writing the extreme-classification (XC) repository text format.

This module owns the byte-level work of the data layer; ``workbench.data``
owns everything above it (files, cache, ``Dataset``, error types).

Format: a header line ``N F L``, then exactly N point lines
``l1,l2,... f:v f:v ...`` (labels comma-separated, then space-separated
``feature:value`` pairs; either part may be empty).

``parse_xc`` works in two passes over one immutable buffer, both in C without
the GIL and without any Python object per token:

1. count newlines, colons and commas. The line count is checked against the
   header *before* anything is allocated, and the output arrays are sized from
   the counts (a valid feature token holds exactly one colon, a label field
   holds commas + 1 labels), never from the header: a header that claims
   10^12 points costs nothing.
2. parse every line into CSR arrays, sorting each line's features and
   rejecting duplicates, out-of-range ids and non-finite values.

Errors are reported as ``XCParseError(line, problem)``; ``line`` is 1-based
with the header on line 1. Every pointer access is bounded by the buffer end,
so arbitrary bytes give an error, never a crash.

Floats are parsed exactly: decimals with at most 19 significant digits and a
small exponent take Clinger's fast path in double precision (one correctly
rounded operation) followed by a rounding to float32 that is provably correct
unless the double lands exactly on a float32 rounding boundary; that case and
all others go to the C library's correctly rounded ``strtof`` in the "C"
locale.

``format_rows`` writes rows back with the shortest decimal (at most 9
significant digits) that parses back to the identical float32; every candidate
is verified with the same exact parser, so the text always round-trips.
"""

from libc.stdint cimport int32_t, int64_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memchr, memcpy
from libc.math cimport floor, log10, fabs, isinf, isnan, nextafterf, signbit, INFINITY

import numpy as np

cdef extern from *:
    """
    #include <stdlib.h>
    #include <stdio.h>
    #include <locale.h>
    /* strtof in the "C" locale, whatever LC_NUMERIC the process has set. */
    static float slide_strtof_c(const char *s, char **end) {
    #if defined(__GLIBC__)
        static locale_t c_locale = (locale_t)0;
        if (!c_locale) c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (c_locale) return strtof_l(s, end, c_locale);
    #endif
        return strtof(s, end);
    }
    #define FLT_MIN_NORMAL 1.17549435082228750797e-38
    /* Powers of ten that are exact in double precision. */
    static const double slide_pow10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    """
    float slide_strtof_c(const char *s, char **end) nogil
    const double slide_pow10[23]
    const double FLT_MIN_NORMAL
    int snprintf(char *s, size_t n, const char *fmt, ...) nogil


class XCParseError(ValueError):
    """A malformed XC text buffer. ``line`` is 1-based (header = 1) or None."""

    def __init__(self, line, problem):
        super().__init__(line, problem)
        self.line = line
        self.problem = problem

    def __str__(self):
        return self.problem if self.line is None else f"line {self.line}: {self.problem}"


# Characters are compared numerically: the buffer is unsigned bytes.
cdef enum:
    CH_TAB = 9
    CH_LF = 10
    CH_CR = 13
    CH_SPACE = 32
    CH_PLUS = 43
    CH_COMMA = 44
    CH_MINUS = 45
    CH_DOT = 46
    CH_ZERO = 48
    CH_COLON = 58
    CH_UPPER_E = 69
    CH_LOWER_E = 101

# Error codes filled in by the nogil parser and turned into messages with the GIL.
cdef enum:
    E_OK = 0
    E_BLANK_LINE
    E_BAD_LABEL
    E_EMPTY_LABEL
    E_NEG_LABEL
    E_LABEL_OVERFLOW
    E_LABEL_RANGE
    E_DUP_LABEL
    E_BAD_FEATURE
    E_NEG_FEATURE
    E_FEATURE_OVERFLOW
    E_FEATURE_RANGE
    E_DUP_FEATURE
    E_BAD_VALUE
    E_VALUE_OVERFLOW
    E_VALUE_TOO_LONG
    E_NO_MEMORY
    E_INTERNAL

# Results of the small scalar parsers.
cdef enum:
    NUM_OK = 0
    NUM_MALFORMED
    NUM_OVERFLOW
    NUM_NEGATIVE
    NUM_TOO_LONG

cdef enum:
    # A value token longer than this is rejected rather than handed to strtof:
    # no float32 needs it, and it bounds the work per token.
    MAX_VALUE_CHARS = 256
    # Lines with at most this many entries are checked/sorted by insertion sort.
    SMALL_SORT = 24
    # Worst-case bytes per written entry, to decide whether a row fits the buffer.
    LABEL_BYTES = 12     # int32 (<= 11 with sign) + comma
    FEATURE_BYTES = 32   # blank + int32 (<= 11) + colon + float (<= 16, e.g. -0.0000123456789)

ctypedef struct FeatPair:
    int32_t idx
    float val

ctypedef struct ParseError:
    int code
    int64_t line
    Py_ssize_t tok_start   # byte range of the offending text in the buffer
    Py_ssize_t tok_end
    int64_t value          # offending id, where there is one

ctypedef struct Scratch:
    FeatPair* pairs
    int32_t* ints
    Py_ssize_t cap


cdef inline bint is_blank(unsigned char c) noexcept nogil:
    return c == CH_SPACE or c == CH_TAB


cdef inline int parse_id(const unsigned char* p, const unsigned char* e, int64_t* out) noexcept nogil:
    """Non-negative decimal integer filling [p, e) exactly."""
    cdef int64_t v = 0
    cdef unsigned int d
    cdef bint overflow = False
    cdef bint negative = False
    if p < e and p[0] == CH_MINUS:
        negative = True
        p += 1
    if p == e:
        return NUM_MALFORMED
    while p < e:
        d = <unsigned int>p[0] - CH_ZERO
        if d > 9:
            return NUM_MALFORMED
        if v > (INT64_MAX - d) // 10:
            overflow = True  # keep scanning: a later junk byte makes it malformed instead
        else:
            v = v * 10 + d
        p += 1
    if negative:
        return NUM_NEGATIVE
    if overflow:
        return NUM_OVERFLOW
    out[0] = v
    return NUM_OK


cdef inline bint float_from_exact_double(double d, float* out) noexcept nogil:
    """Round a correctly rounded double to float32; False where that could be
    a double rounding (d exactly halfway between two floats)."""
    cdef uint64_t bits
    cdef float f
    cdef double back, other
    if fabs(d) >= FLT_MIN_NORMAL:
        # Normal float range: the 29 double fraction bits below float
        # precision read 1000...0 exactly at a halfway point.
        memcpy(&bits, &d, sizeof(double))
        if (bits & 0x1FFFFFFFULL) == 0x10000000ULL:
            return False
        out[0] = <float>d
        return True
    f = <float>d
    back = <double>f
    if back != d:
        other = <double>nextafterf(f, INFINITY if d > back else -INFINITY)
        if (back + other) * 0.5 == d:
            return False
    out[0] = f
    return True


cdef int parse_float(const unsigned char* p, const unsigned char* e, float* out) noexcept nogil:
    """Decimal float filling [p, e) exactly: [+-]digits[.digits][(e|E)[+-]digits]."""
    cdef const unsigned char* start = p
    cdef bint negative = False
    cdef uint64_t w = 0
    cdef int n_sig = 0
    cdef bint any_digit = False
    cdef bint inexact = False
    cdef int64_t exp_adjust = 0
    cdef int64_t exponent = 0
    cdef bint exp_negative = False
    cdef unsigned int d
    cdef int64_t e10
    cdef double x
    cdef float f
    cdef char small[257]  # MAX_VALUE_CHARS + NUL
    cdef char* end_ptr
    cdef Py_ssize_t length = e - p

    if length > MAX_VALUE_CHARS:
        return NUM_TOO_LONG
    if p < e and (p[0] == CH_PLUS or p[0] == CH_MINUS):
        negative = p[0] == CH_MINUS
        p += 1
    while p < e:
        d = <unsigned int>p[0] - CH_ZERO
        if d > 9:
            break
        any_digit = True
        if w == 0 and d == 0:
            pass  # leading zero
        elif n_sig < 19:
            w = w * 10 + d
            n_sig += 1
        else:
            exp_adjust += 1  # digit beyond uint64 precision still shifts the point
            if d != 0:
                inexact = True
        p += 1
    if p < e and p[0] == CH_DOT:
        p += 1
        while p < e:
            d = <unsigned int>p[0] - CH_ZERO
            if d > 9:
                break
            any_digit = True
            if w == 0 and d == 0:
                exp_adjust -= 1
            elif n_sig < 19:
                w = w * 10 + d
                n_sig += 1
                exp_adjust -= 1
            elif d != 0:
                inexact = True
            p += 1
    if not any_digit:
        return NUM_MALFORMED
    if p < e and (p[0] == CH_LOWER_E or p[0] == CH_UPPER_E):
        p += 1
        if p < e and (p[0] == CH_PLUS or p[0] == CH_MINUS):
            exp_negative = p[0] == CH_MINUS
            p += 1
        if p == e:
            return NUM_MALFORMED
        while p < e:
            d = <unsigned int>p[0] - CH_ZERO
            if d > 9:
                return NUM_MALFORMED
            if exponent < 100000:  # saturate: anything beyond is 0 or inf anyway
                exponent = exponent * 10 + d
            p += 1
        if exp_negative:
            exponent = -exponent
    if p != e:
        return NUM_MALFORMED

    if w == 0:
        out[0] = -0.0 if negative else 0.0
        return NUM_OK
    e10 = exponent + exp_adjust
    if not inexact and w <= (<uint64_t>1 << 53) and -22 <= e10 <= 22:
        x = <double>w
        if e10 >= 0:
            x = x * slide_pow10[e10]
        else:
            x = x / slide_pow10[-e10]
        if float_from_exact_double(x, &f):
            if isinf(f):
                return NUM_OVERFLOW
            out[0] = -f if negative else f
            return NUM_OK
    # Slow but correctly rounded path: strtof on a NUL-terminated copy of the
    # already validated token (so it cannot read past it or accept more).
    memcpy(small, start, length)
    small[length] = 0
    f = slide_strtof_c(small, &end_ptr)
    if end_ptr != small + length:
        return NUM_MALFORMED
    if isinf(f) or isnan(f):
        return NUM_OVERFLOW
    out[0] = f
    return NUM_OK


cdef int cmp_pairs(const void* a, const void* b) noexcept nogil:
    cdef int32_t x = (<const FeatPair*>a).idx
    cdef int32_t y = (<const FeatPair*>b).idx
    return (x > y) - (x < y)


cdef int cmp_ints(const void* a, const void* b) noexcept nogil:
    cdef int32_t x = (<const int32_t*>a)[0]
    cdef int32_t y = (<const int32_t*>b)[0]
    return (x > y) - (x < y)


cdef bint ensure_scratch(Scratch* s, Py_ssize_t n) noexcept nogil:
    cdef FeatPair* pairs
    cdef int32_t* ints
    cdef Py_ssize_t cap
    if n <= s.cap:
        return True
    cap = n if n > 2 * s.cap else 2 * s.cap
    pairs = <FeatPair*>realloc(s.pairs, cap * sizeof(FeatPair))
    if pairs == NULL:
        return False
    s.pairs = pairs
    ints = <int32_t*>realloc(s.ints, cap * sizeof(int32_t))
    if ints == NULL:
        return False
    s.ints = ints
    s.cap = cap
    return True


cdef int sort_line_features(int32_t* idx, float* val, Py_ssize_t k, Scratch* s,
                            int64_t* duplicate) noexcept nogil:
    """Sort one line's (id, value) pairs by id; E_DUP_FEATURE on a repeated id."""
    cdef Py_ssize_t j, m
    cdef int32_t key
    cdef float kv
    cdef bint sorted_already = True
    for j in range(1, k):
        if idx[j] <= idx[j - 1]:
            sorted_already = False
            break
    if sorted_already:
        return E_OK
    if k <= SMALL_SORT:
        for j in range(1, k):
            key = idx[j]
            kv = val[j]
            m = j - 1
            while m >= 0 and idx[m] > key:
                idx[m + 1] = idx[m]
                val[m + 1] = val[m]
                m -= 1
            idx[m + 1] = key
            val[m + 1] = kv
    else:
        if not ensure_scratch(s, k):
            return E_NO_MEMORY
        for j in range(k):
            s.pairs[j].idx = idx[j]
            s.pairs[j].val = val[j]
        qsort(s.pairs, k, sizeof(FeatPair), cmp_pairs)
        for j in range(k):
            idx[j] = s.pairs[j].idx
            val[j] = s.pairs[j].val
    for j in range(1, k):
        if idx[j] == idx[j - 1]:
            duplicate[0] = idx[j]
            return E_DUP_FEATURE
    return E_OK


cdef int check_line_labels(const int32_t* lab, Py_ssize_t k, Scratch* s,
                           int64_t* duplicate) noexcept nogil:
    """Labels keep their order, so duplicates are found on a sorted copy."""
    cdef Py_ssize_t j, m
    if k <= SMALL_SORT:
        for j in range(1, k):
            for m in range(j):
                if lab[m] == lab[j]:
                    duplicate[0] = lab[j]
                    return E_DUP_LABEL
        return E_OK
    if not ensure_scratch(s, k):
        return E_NO_MEMORY
    memcpy(s.ints, lab, k * sizeof(int32_t))
    qsort(s.ints, k, sizeof(int32_t), cmp_ints)
    for j in range(1, k):
        if s.ints[j] == s.ints[j - 1]:
            duplicate[0] = s.ints[j]
            return E_DUP_LABEL
    return E_OK


cdef inline int fail(ParseError* err, int code, int64_t line, Py_ssize_t a, Py_ssize_t b,
                     int64_t value) noexcept nogil:
    err.code = code
    err.line = line
    err.tok_start = a
    err.tok_end = b
    err.value = value
    return code


cdef int parse_points(const unsigned char* buf, Py_ssize_t n, Py_ssize_t pos, int64_t n_points,
                      int64_t n_features, int64_t n_labels,
                      int64_t* indptr, int32_t* indices, float* values, int64_t cap_nnz,
                      int64_t* label_indptr, int32_t* labels, int64_t cap_labels,
                      Scratch* scratch, ParseError* err) noexcept nogil:
    """Second pass: one line per point, starting at byte ``pos``."""
    cdef int64_t i, line_no, v, nnz = 0, nlab = 0, line_nnz_start, line_lab_start, dup = 0
    cdef Py_ssize_t e, p, t, q, c, next_pos
    cdef const unsigned char* nl
    cdef bint has_colon
    cdef int r
    cdef float fv

    indptr[0] = 0
    label_indptr[0] = 0
    for i in range(n_points):
        line_no = i + 2
        nl = <const unsigned char*>memchr(buf + pos, CH_LF, n - pos)
        if nl == NULL:
            e = n
            next_pos = n
        else:
            e = nl - buf
            next_pos = e + 1
        if e > pos and buf[e - 1] == CH_CR:
            e -= 1
        if e == pos:
            return fail(err, E_BLANK_LINE, line_no, pos, pos, 0)
        p = pos
        line_nnz_start = nnz
        line_lab_start = nlab

        # Label field: the first token, unless the line starts with a blank or
        # the first token is already a feature (holds a colon).
        if not is_blank(buf[p]):
            t = p
            has_colon = False
            while t < e and not is_blank(buf[t]):
                if buf[t] == CH_COLON:
                    has_colon = True
                t += 1
            if not has_colon:
                q = p
                while True:
                    c = q
                    while c < t and buf[c] != CH_COMMA:
                        c += 1
                    if c == q:
                        return fail(err, E_EMPTY_LABEL, line_no, p, t, 0)
                    r = parse_id(buf + q, buf + c, &v)
                    if r == NUM_MALFORMED:
                        return fail(err, E_BAD_LABEL, line_no, p, t, 0)
                    if r == NUM_NEGATIVE:
                        return fail(err, E_NEG_LABEL, line_no, q, c, 0)
                    if r == NUM_OVERFLOW:
                        return fail(err, E_LABEL_OVERFLOW, line_no, q, c, 0)
                    if v >= n_labels:
                        return fail(err, E_LABEL_RANGE, line_no, q, c, v)
                    if nlab >= cap_labels:
                        return fail(err, E_INTERNAL, line_no, q, c, 0)
                    labels[nlab] = <int32_t>v
                    nlab += 1
                    if c == t:
                        break
                    q = c + 1
                p = t
                r = check_line_labels(labels + line_lab_start, nlab - line_lab_start, scratch, &dup)
                if r != E_OK:
                    return fail(err, r, line_no, pos, t, dup)

        # Features: blank-separated id:value tokens.
        while True:
            while p < e and is_blank(buf[p]):
                p += 1
            if p >= e:
                break
            t = p
            c = -1
            while t < e and not is_blank(buf[t]):
                if c < 0 and buf[t] == CH_COLON:
                    c = t
                t += 1
            if c < 0:
                return fail(err, E_BAD_FEATURE, line_no, p, t, 0)
            r = parse_id(buf + p, buf + c, &v)
            if r == NUM_MALFORMED:
                return fail(err, E_BAD_FEATURE, line_no, p, t, 0)
            if r == NUM_NEGATIVE:
                return fail(err, E_NEG_FEATURE, line_no, p, t, 0)
            if r == NUM_OVERFLOW:
                return fail(err, E_FEATURE_OVERFLOW, line_no, p, t, 0)
            if v >= n_features:
                return fail(err, E_FEATURE_RANGE, line_no, p, t, v)
            r = parse_float(buf + c + 1, buf + t, &fv)
            if r == NUM_MALFORMED:
                return fail(err, E_BAD_VALUE, line_no, p, t, 0)
            if r == NUM_OVERFLOW:
                return fail(err, E_VALUE_OVERFLOW, line_no, p, t, 0)
            if r == NUM_TOO_LONG:
                return fail(err, E_VALUE_TOO_LONG, line_no, p, t, 0)
            if nnz >= cap_nnz:
                return fail(err, E_INTERNAL, line_no, p, t, 0)
            indices[nnz] = <int32_t>v
            values[nnz] = fv
            nnz += 1
            p = t
        r = sort_line_features(indices + line_nnz_start, values + line_nnz_start,
                               nnz - line_nnz_start, scratch, &dup)
        if r != E_OK:
            return fail(err, r, line_no, pos, e, dup)
        indptr[i + 1] = nnz
        label_indptr[i + 1] = nlab
        pos = next_pos
    return E_OK


cdef inline uint64_t match_flags(uint64_t word, uint64_t pattern) noexcept nogil:
    """0x01 in every byte lane of ``word`` equal to the byte in ``pattern``."""
    cdef uint64_t x = word ^ pattern
    cdef uint64_t nonzero_high = ((x & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | x
    return (~nonzero_high & 0x8080808080808080ULL) >> 7


cdef inline int64_t lane_sum(uint64_t lanes) noexcept nogil:
    """Sum of the eight byte lanes (each <= 255), via 16-bit lanes so it cannot wrap."""
    cdef uint64_t pairs = (lanes & 0x00FF00FF00FF00FFULL) + ((lanes >> 8) & 0x00FF00FF00FF00FFULL)
    return <int64_t>((pairs * 0x0001000100010001ULL) >> 48)


cdef void count_body(const unsigned char* buf, Py_ssize_t start, Py_ssize_t n,
                     int64_t* newlines, int64_t* colons, int64_t* commas) noexcept nogil:
    """Count three byte values, eight bytes at a time (SWAR): per-lane
    counters are flushed before a lane can reach 256."""
    cdef int64_t nl = 0, co = 0, cm = 0
    cdef uint64_t word, acc_nl, acc_co, acc_cm
    cdef Py_ssize_t j = start, block_end
    cdef unsigned char ch
    while n - j >= 8:
        acc_nl = acc_co = acc_cm = 0
        block_end = j + 8 * 255
        if block_end > n - 8 + 1:
            block_end = n - 8 + 1
        while j < block_end:
            memcpy(&word, buf + j, 8)
            acc_nl += match_flags(word, 0x0A0A0A0A0A0A0A0AULL)
            acc_co += match_flags(word, 0x3A3A3A3A3A3A3A3AULL)
            acc_cm += match_flags(word, 0x2C2C2C2C2C2C2C2CULL)
            j += 8
        nl += lane_sum(acc_nl)
        co += lane_sum(acc_co)
        cm += lane_sum(acc_cm)
    while j < n:
        ch = buf[j]
        nl += ch == CH_LF
        co += ch == CH_COLON
        cm += ch == CH_COMMA
        j += 1
    newlines[0] = nl
    colons[0] = co
    commas[0] = cm


def _show(bytes text, int limit=40):
    """Offending text for a message: quoted, escaped, truncated."""
    s = text.decode("utf-8", "backslashreplace")
    if len(s) > limit:
        s = s[:limit] + "..."
    return repr(s)


_HEADER_HINT = "expected 'N F L': numbers of points, features and labels"
_MAX_ID_SPACE = 2**31 - 1  # ids are stored as int32


def _parse_header(bytes line):
    parts = line.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise XCParseError(1, f"malformed header {_show(line)} ({_HEADER_HINT})")
    for p in parts:
        if len(p.lstrip(b"0")) > 18:  # also keeps int() away from huge digit strings
            raise XCParseError(1, f"header value {_show(p)} overflows")
    n_points, n_features, n_labels = (int(p) for p in parts)
    for what, value in (("features", n_features), ("labels", n_labels)):
        if not 1 <= value <= _MAX_ID_SPACE:
            raise XCParseError(1, f"header: number of {what} must be in [1, {_MAX_ID_SPACE}], got {value}")
    return n_points, n_features, n_labels


cdef str _error_message(const unsigned char[::1] buf, ParseError err, int64_t n_features, int64_t n_labels):
    tok = _show(bytes(buf[err.tok_start:err.tok_end]))
    code = err.code
    if code == E_BLANK_LINE:
        return "blank line (every point needs a line; write ' ' for a point without labels and features)"
    if code == E_BAD_LABEL:
        return f"malformed label list {tok} (expected comma-separated non-negative integers)"
    if code == E_EMPTY_LABEL:
        return f"empty label in label list {tok}"
    if code == E_NEG_LABEL:
        return f"negative label id {tok}"
    if code == E_LABEL_OVERFLOW:
        return f"label id {tok} overflows"
    if code == E_LABEL_RANGE:
        return f"label id {err.value} out of range [0, {n_labels})"
    if code == E_DUP_LABEL:
        return f"duplicate label {err.value}"
    if code == E_BAD_FEATURE:
        return f"malformed feature token {tok} (expected id:value)"
    if code == E_NEG_FEATURE:
        return f"negative feature id in {tok}"
    if code == E_FEATURE_OVERFLOW:
        return f"feature id overflows in {tok}"
    if code == E_FEATURE_RANGE:
        return f"feature id {err.value} out of range [0, {n_features})"
    if code == E_DUP_FEATURE:
        return f"duplicate feature id {err.value}"
    if code == E_BAD_VALUE:
        raw = bytes(buf[err.tok_start:err.tok_end])
        value = raw.split(b":", 1)[1].lstrip(b"+-").lower()
        if value.startswith((b"nan", b"inf")):
            return f"non-finite value in {tok}"
        return f"malformed value in {tok}"
    if code == E_VALUE_OVERFLOW:
        return f"value overflows float32 in {tok}"
    if code == E_VALUE_TOO_LONG:
        return f"value longer than {MAX_VALUE_CHARS} characters in {tok}"
    return f"internal parser error {code} near {tok}"


def parse_xc(const unsigned char[::1] buf):
    """Parse a whole XC text buffer (bytes, bytearray, mmap, memoryview).

    Returns ``(n_points, n_features, n_labels, indptr, indices, values,
    label_indptr, labels)`` as int64/int32/float32/int64/int32 arrays, each
    line's features sorted by id. Raises ``XCParseError``.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t j, header_end, body_start
    cdef const unsigned char* data
    cdef const unsigned char* nl
    cdef int64_t newlines = 0, colons = 0, commas = 0, n_lines
    cdef int64_t n_points, n_features, n_labels
    cdef ParseError err
    cdef Scratch scratch
    cdef int code
    cdef int64_t[::1] indptr_v, label_indptr_v
    cdef int32_t[::1] indices_v, labels_v
    cdef float[::1] values_v
    cdef int64_t cap_nnz, cap_labels

    for j in range(n):
        if not (is_blank(buf[j]) or buf[j] == CH_LF or buf[j] == CH_CR):
            break
    else:
        raise XCParseError(None, "empty file")
    data = &buf[0]

    nl = <const unsigned char*>memchr(data, CH_LF, n)
    header_end = n if nl == NULL else nl - data
    body_start = n if nl == NULL else header_end + 1
    n_points, n_features, n_labels = _parse_header(bytes(buf[:header_end]).rstrip(b"\r"))

    with nogil:
        count_body(data, body_start, n, &newlines, &colons, &commas)
    # A final newline ends the last line rather than starting an empty one.
    n_lines = newlines + (1 if body_start < n and data[n - 1] != CH_LF else 0)
    if n_lines < n_points:
        raise XCParseError(n_lines + 1, f"file truncated: header says {n_points} points but the file has {n_lines}")
    if n_lines > n_points:
        pieces = bytes(buf[body_start:]).split(b"\n", n_points)
        extra_lines = pieces[len(pieces) - 1]
        hint = " (blank lines after the last point)" if not extra_lines.strip() else ""
        raise XCParseError(n_points + 2, f"header says {n_points} points but the file has {n_lines}{hint}")

    cap_nnz = colons
    cap_labels = commas + n_lines
    indptr = np.empty(n_points + 1, dtype=np.int64)
    label_indptr = np.empty(n_points + 1, dtype=np.int64)
    indices = np.empty(cap_nnz, dtype=np.int32)
    values = np.empty(cap_nnz, dtype=np.float32)
    labels = np.empty(cap_labels, dtype=np.int32)
    indptr_v = indptr
    label_indptr_v = label_indptr
    indices_v = indices
    values_v = values
    labels_v = labels

    cdef int32_t* indices_p = &indices_v[0] if cap_nnz else NULL
    cdef float* values_p = &values_v[0] if cap_nnz else NULL
    cdef int32_t* labels_p = &labels_v[0] if cap_labels else NULL
    scratch.pairs = NULL
    scratch.ints = NULL
    scratch.cap = 0
    err.code = E_OK
    try:
        with nogil:
            code = parse_points(data, n, body_start, n_points, n_features, n_labels,
                                &indptr_v[0], indices_p, values_p, cap_nnz,
                                &label_indptr_v[0], labels_p, cap_labels, &scratch, &err)
    finally:
        free(scratch.pairs)
        free(scratch.ints)
    if code == E_NO_MEMORY:
        raise MemoryError("out of memory while sorting a line")
    if code != E_OK:
        raise XCParseError(err.line, _error_message(buf, err, n_features, n_labels))

    nnz = int(indptr[n_points])
    n_label_entries = int(label_indptr[n_points])
    # Capacities are exact for nnz in a valid file; labels may be over when
    # some points have none. Copy to release the slack.
    if nnz != cap_nnz:
        indices = indices[:nnz].copy()
        values = values[:nnz].copy()
    if n_label_entries != cap_labels:
        labels = labels[:n_label_entries].copy()
    return n_points, n_features, n_labels, indptr, indices, values, label_indptr, labels


def parse_float32(text):
    """Parse one value exactly as the reader does (for tests); ValueError if invalid."""
    cdef bytes raw = text.encode() if isinstance(text, str) else bytes(text)
    cdef const unsigned char* p = <const unsigned char*>raw
    cdef float f = 0
    cdef int r = parse_float(p, p + len(raw), &f)
    if r != NUM_OK:
        raise ValueError(f"cannot parse {raw!r} as a float32 (code {r})")
    return f


# ---------------------------------------------------------------- writer

cdef inline Py_ssize_t write_uint(unsigned char* out, uint64_t v) noexcept nogil:
    cdef unsigned char tmp[24]
    cdef Py_ssize_t k = 0, j
    while True:
        tmp[k] = CH_ZERO + <unsigned char>(v % 10)
        k += 1
        v //= 10
        if v == 0:
            break
    for j in range(k):
        out[j] = tmp[k - 1 - j]
    return k


cdef inline Py_ssize_t write_int32(unsigned char* out, int32_t v) noexcept nogil:
    """At most 11 bytes (ids are never negative in a Dataset; keep it safe anyway)."""
    if v < 0:
        out[0] = CH_MINUS
        return 1 + write_uint(out + 1, <uint64_t>(-<int64_t>v))
    return write_uint(out, <uint64_t>v)


cdef inline bint round_trips(uint64_t m, int s, float target) noexcept nogil:
    """Does m * 10**-s parse (exactly, as in parse_float) to target?"""
    cdef double x = <double>m
    cdef float f
    if s >= 0:
        x = x / slide_pow10[s]
    else:
        x = x * slide_pow10[-s]
    if not float_from_exact_double(x, &f):
        return False
    return f == target


cdef inline uint64_t scaled_digits(double a, int s) noexcept nogil:
    cdef double x = a * slide_pow10[s] if s >= 0 else a / slide_pow10[-s]
    return <uint64_t>floor(x + 0.5)


cdef Py_ssize_t format_float(unsigned char* out, float value) noexcept nogil:
    """Shortest (<= 9 significant digits) decimal that reads back as ``value``.

    Candidates m * 10**-s are formed in double precision and each is verified
    with the exact parse, so a rare mis-rounded candidate only costs length.
    Values whose scale needs powers of ten beyond 1e22 use printf's %.9g
    (9 significant digits always round-trip a float32).
    """
    cdef Py_ssize_t k = 0, j, nd
    cdef double a
    cdef int e10, s, lo, hi, mid, x
    cdef uint64_t m, mm
    cdef unsigned char digits[24]
    cdef char tmp[48]
    cdef int length
    if isnan(value) or isinf(value):  # never in a Dataset; written as printf does
        length = snprintf(tmp, sizeof(tmp), "%.9g", <double>value)
        memcpy(out, tmp, length)
        return length
    if signbit(value):
        out[0] = CH_MINUS
        k = 1
    if value == 0:
        out[k] = CH_ZERO
        return k + 1
    a = fabs(<double>value)
    e10 = <int>floor(log10(a))
    # s = number of decimals kept for 9 significant digits; must index the table.
    if not (-22 <= 8 - e10 <= 22 and -22 <= -e10 <= 22) or not round_trips(scaled_digits(a, 8 - e10), 8 - e10, <float>a):
        length = snprintf(tmp, sizeof(tmp), "%.9g", a)
        for j in range(length):
            # printf follows LC_NUMERIC; the format always uses '.'.
            if tmp[j] == CH_COMMA:
                tmp[j] = CH_DOT
            out[k + j] = <unsigned char>tmp[j]
        return k + length
    lo = 1
    hi = 9
    while lo < hi:
        mid = (lo + hi) // 2
        if round_trips(scaled_digits(a, mid - 1 - e10), mid - 1 - e10, <float>a):
            hi = mid
        else:
            lo = mid + 1
    s = hi - 1 - e10
    m = scaled_digits(a, s)  # > 0: it round-tripped to a non-zero value
    while m != 0 and m % 10 == 0:
        m //= 10
        s -= 1
    nd = 0
    mm = m
    while mm:
        digits[23 - nd] = CH_ZERO + <unsigned char>(mm % 10)
        mm //= 10
        nd += 1
    # digits[24 - nd .. 23] hold m; x = decimal exponent of the leading digit.
    x = <int>nd - 1 - s
    if -5 <= x < 0:
        out[k] = CH_ZERO
        out[k + 1] = CH_DOT
        k += 2
        for j in range(-x - 1):
            out[k] = CH_ZERO
            k += 1
        for j in range(nd):
            out[k] = digits[24 - nd + j]
            k += 1
    elif 0 <= x < 9:
        for j in range(nd):
            if j == x + 1:
                out[k] = CH_DOT
                k += 1
            out[k] = digits[24 - nd + j]
            k += 1
        for j in range(nd, x + 1):
            out[k] = CH_ZERO
            k += 1
    else:
        out[k] = digits[24 - nd]
        k += 1
        if nd > 1:
            out[k] = CH_DOT
            k += 1
            for j in range(1, nd):
                out[k] = digits[24 - nd + j]
                k += 1
        out[k] = CH_LOWER_E
        out[k + 1] = CH_MINUS if x < 0 else CH_PLUS
        k += 2
        if x < 0:
            x = -x
        if x < 10:
            out[k] = CH_ZERO
            k += 1
        k += write_uint(out + k, <uint64_t>x)
    return k


def format_float32(float value):
    """The writer's text for one float32 (for tests)."""
    cdef unsigned char out[48]
    cdef Py_ssize_t k = format_float(out, value)
    return bytes(out[:k]).decode()


def format_rows(const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                const int64_t[::1] label_indptr, const int32_t[::1] labels,
                Py_ssize_t row_start, unsigned char[::1] out):
    """Write point lines from ``row_start`` into ``out`` until the next row may not fit.

    Returns ``(row_end, n_bytes, next_row_bound)``; ``next_row_bound`` is the
    worst-case size of row ``row_end`` (0 when done), so a caller whose buffer
    made no progress knows how much to grow it. The row pointers are checked
    (monotone, within the arrays) so that no input can overrun a buffer; the
    rest is written as given (``Dataset`` validated it).
    """
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t cap = out.shape[0]
    cdef Py_ssize_t pos = 0, r = row_start, bound = 0
    cdef int64_t j
    cdef unsigned char* o = &out[0] if cap else NULL
    if label_indptr.shape[0] != indptr.shape[0]:
        raise ValueError("indptr and label_indptr differ in length")
    if row_start < 0 or row_start > n_rows:
        raise ValueError("row_start out of range")
    if n_rows < 0:
        raise ValueError("indptr is empty")
    if (indptr[0] < 0 or label_indptr[0] < 0 or indptr[n_rows] > indices.shape[0]
            or indptr[n_rows] > values.shape[0] or label_indptr[n_rows] > labels.shape[0]):
        raise ValueError("row pointers point outside the arrays")
    for j in range(n_rows):
        if indptr[j + 1] < indptr[j] or label_indptr[j + 1] < label_indptr[j]:
            raise ValueError(f"row pointers decrease at row {j}")
    with nogil:
        while r < n_rows:
            bound = ((label_indptr[r + 1] - label_indptr[r]) * LABEL_BYTES
                     + (indptr[r + 1] - indptr[r]) * FEATURE_BYTES + 4)
            if pos + bound > cap:
                break
            for j in range(label_indptr[r], label_indptr[r + 1]):
                if j > label_indptr[r]:
                    o[pos] = CH_COMMA
                    pos += 1
                pos += write_int32(o + pos, labels[j])
            if label_indptr[r + 1] == label_indptr[r]:
                # no labels: the line starts with the separator, which also
                # keeps a point with nothing at all from being a blank line
                o[pos] = CH_SPACE
                pos += 1
            for j in range(indptr[r], indptr[r + 1]):
                if j > indptr[r] or label_indptr[r + 1] != label_indptr[r]:
                    o[pos] = CH_SPACE
                    pos += 1
                pos += write_int32(o + pos, indices[j])
                o[pos] = CH_COLON
                pos += 1
                pos += format_float(o + pos, values[j])
            o[pos] = CH_LF
            pos += 1
            r += 1
        if r >= n_rows:
            bound = 0
    return r, pos, bound
