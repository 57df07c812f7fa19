# cython: language_level=3
"""kernels._core: the glue between the Python workbench and the C engine.

Owns: the C structs of a network (slide_net) and of each thread's scratch
(slide_thread), the parallel loops (OpenMP through prange, without the GIL)
over the samples of a batch, the rows of an Adam update and the neurons of a
rehash, and the lookup of kernels in the compiled registry.

Does not own: memory layout decisions, validation and policy. The Python
side (workbench.network) allocates every array, validates every index and
size before calling in, and keeps the arrays alive as long as this object.
The one exception: a data set's CSR arrays are re-checked here, sample by
sample, at every call that reads them (_check_rows), because they are the
caller's writable arrays and may have changed since they were validated.
Nothing here allocates inside the batch loop.
"""

cimport numpy as cnp
cimport openmp
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport isfinite
from libc.stdint cimport int8_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

import numpy as np

cnp.import_array()


cdef extern from "slide/registry.h" nogil:
    ctypedef uint16_t bf16_t

    ctypedef struct slide_mat:
        float *w
        bf16_t *wb
        float *b
        int64_t ld
        int32_t rows
        int32_t cols
        int32_t prefetch

    ctypedef struct slide_adam_params:
        float lr_t
        float beta1
        float beta2
        float one_minus_beta1
        float one_minus_beta2
        float eps

    ctypedef void (*slide_fwd_rows_fn)(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                       const int32_t *ids, int32_t n, float *z)
    ctypedef void (*slide_bwd_rows_fn)(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                       const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                       int32_t n, float *dx)
    ctypedef void (*slide_fwd_cols_fn)(const slide_mat *m, const int32_t *xi, const float *xv, int32_t nx,
                                       const int32_t *ids, int32_t n, float *z)
    ctypedef void (*slide_bwd_cols_fn)(const slide_mat *m, float *gW, float *gb, const int32_t *xi,
                                       const float *xv, int32_t nx, const int32_t *ids, const float *g,
                                       int32_t n, float *dx)
    ctypedef void (*slide_adam_fn)(float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld, int32_t cols,
                                   const int32_t *rows, int64_t nrows, const slide_adam_params *p)
    ctypedef void (*slide_row_adam_fn)(float *w, bf16_t *wb, float *m, float *v, const float *x, const float *H,
                                       float *dH, int64_t ldh, int32_t d, const int32_t *ids, const float *g,
                                       int32_t n, const slide_adam_params *p)

    ctypedef struct slide_hasher:
        int32_t family
        int32_t dim
        int32_t K
        int32_t L
        int32_t H
        int32_t bin_size
        int32_t bits
        int32_t shift
        int32_t range_pow
        int32_t n_perm
        uint64_t seed
        const int32_t *coord_of_slot
        const int32_t *slot_of_coord
        const int8_t *srp_coef

    ctypedef struct slide_hash_scratch:
        float *best
        int32_t *arg
        float *dense

    ctypedef void (*slide_hash_fn)(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi,
                                   const float *xv, int32_t nx, uint32_t *out)
    ctypedef void (*slide_hash_rows_fn)(const slide_hasher *hs, slide_hash_scratch *sc, const float *w, int64_t ld,
                                        int32_t j0, int32_t j1, uint32_t *out)

    ctypedef struct slide_tables:
        int32_t L
        int32_t range_pow
        int32_t capacity
        int32_t policy
        int32_t n_items
        uint64_t seed
        uint32_t *offsets
        int32_t *ids

    ctypedef struct slide_rng:
        uint64_t key
        uint64_t ctr

    enum: SLIDE_MAX_LAYERS
    enum: SLIDE_N_PHASES
    enum: SLIDE_LAYOUT_ROWMAJOR
    enum: SLIDE_LAYOUT_TRANSPOSED

    ctypedef struct slide_layer:
        int32_t n_in
        int32_t n_out
        int32_t layout
        int32_t lsh
        int32_t sampling
        int32_t top_k
        int32_t threshold
        int32_t min_active
        const float *hash_mu
        slide_mat W
        float *gW
        float *gb
        float *mW
        float *vW
        float *mb
        float *vb
        slide_fwd_rows_fn fwd_rows
        slide_bwd_rows_fn bwd_rows
        slide_fwd_cols_fn fwd_cols
        slide_bwd_cols_fn bwd_cols
        slide_adam_fn adam
        slide_hash_fn hash
        slide_hash_rows_fn hash_rows
        slide_hasher hs
        slide_tables tables
        int32_t *row_stamp
        int32_t *bias_stamp
        int32_t all_rows_touched
        int32_t all_bias_touched

    ctypedef struct slide_net:
        int32_t n_layers
        int32_t compat
        int32_t track_touched
        slide_layer layers[8]

    ctypedef struct slide_thread:
        int32_t *ids[8]
        float *val[8]
        float *grad[8]
        float *dx[8]
        int32_t n[8]
        int32_t dense[8]
        uint32_t *mark[8]
        int32_t epoch[8]
        uint32_t *hashes
        uint32_t *buckets
        slide_hash_scratch hsc[8]
        float *sel_val
        int32_t *sel_id
        int32_t hist_len
        int32_t *hist
        int64_t phase_ns[4]
        int64_t active_sum[8]
        int64_t cand_sum[8]
        int64_t samples
        int64_t labels_total
        int64_t labels_found
        slide_rng rng

    ctypedef struct slide_batch:
        int32_t B
        int32_t cap
        int32_t d
        int64_t ldh
        float *H
        float *Hr
        float *acts[8]
        int32_t act_ld[8]
        int32_t *A
        int32_t *nA
        int32_t *nF
        float *Z
        float *loss
        float *zero_b
        int32_t *cnt
        int32_t *urows
        int32_t *uoff
        int32_t n_union
        int32_t *es
        int32_t *epos
        int32_t *blab
        int32_t n_blab
        int32_t blab_cap
        int32_t *blab_stamp
        int32_t blab_epoch
        float *E
        slide_fwd_rows_fn fwd
        slide_bwd_rows_fn bwd
        slide_row_adam_fn row_adam
        int32_t bf16_rows
        int32_t round_w
        int32_t prefetch

    int slide_batch_select(slide_net *net, slide_thread *th, slide_batch *bt, int32_t s, const int32_t *xi,
                           const float *xv, int32_t nx, const int32_t *labels, int32_t n_labels)
    int32_t slide_batch_count(slide_batch *bt, int32_t lo, int32_t hi, int64_t *n_entries)
    void slide_omp_barrier()
    void slide_batch_rows(slide_batch *bt, int32_t lo, int32_t hi, int32_t rbase, int32_t ebase)
    void slide_batch_place(slide_batch *bt, int32_t lo, int32_t hi)
    void slide_batch_forward(const slide_net *net, slide_batch *bt, int32_t r0, int32_t r1, float *wbuf)
    float slide_batch_softmax(const slide_net *net, slide_batch *bt, int32_t s, float scale)
    void slide_batch_backward_adam(slide_net *net, slide_batch *bt, int32_t r0, int32_t r1, float *dH,
                                   float *wbuf, float *gvec, float *gbs,
                                   const slide_adam_params *p, int dense_update, int32_t batch)
    void slide_batch_hidden_backward(slide_net *net, slide_thread *th, slide_batch *bt, int32_t s,
                                     const float *dH_all, int32_t T, int64_t dH_stride, const int32_t *xi,
                                     const float *xv, int32_t nx, int32_t batch)

    ctypedef void (*slide_any_fn)()
    ctypedef struct slide_kernel_entry:
        const char *op
        const char *dtype
        const char *isa
        slide_any_fn fn

    const slide_kernel_entry slide_registry[]
    const int slide_registry_len
    int slide_compiled_isas()

    ctypedef struct slide_cpu:
        uint32_t max_leaf
        uint32_t leaf1_ecx, leaf1_edx
        uint32_t leaf7_ebx, leaf7_ecx, leaf7_edx, leaf7_1_eax
        uint64_t xcr0
        int osxsave
        int sse2, avx, fma, f16c, avx2
        int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_fp16
        int amx_tile, amx_bf16, amx_os
    void slide_cpu_probe(slide_cpu *c)
    int slide_request_amx()

    uint64_t slide_key(uint64_t a, uint64_t b)
    int32_t slide_srp_coef(uint64_t seed, int32_t h, int32_t c)
    void slide_bucket_ids(const slide_hasher *hs, const uint32_t *hashes, uint32_t *ids)
    void slide_table_build_one(slide_tables *T, int32_t t, const uint32_t *bids, uint32_t *seen)
    float slide_train_sample(slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                             const int32_t *labels, int32_t n_labels, float scale, int32_t batch)
    void slide_forward(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv, int32_t nx,
                       const int32_t *labels, int32_t n_labels, int train, int dense, int32_t *n_forced)
    void slide_predict_sample(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                              int32_t nx, int dense, int32_t k, int32_t *top)
    void slide_forward_upto(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                            int32_t nx, const int32_t *labels, int32_t n_labels, int train, int dense,
                            int32_t *n_forced, int32_t stop)
    int32_t slide_candidates(const slide_net *net, slide_thread *th, const int32_t *xi, const float *xv,
                             int32_t nx, int32_t *ids, int32_t *cnt, int32_t cap)
    void slide_hash_scalar(const slide_hasher *hs, slide_hash_scratch *sc, const int32_t *xi, const float *xv,
                           int32_t nx, uint32_t *out)
    int64_t slide_now_ns()


PHASES = ("hash", "query", "forward", "backward")

# Stand-ins for the data pointers of empty arrays: a NULL index pointer means
# "dense input" to the kernels, so an empty sparse input must not be NULL.
cdef int32_t _EMPTY_I[1]
cdef float _EMPTY_V[1]
_EMPTY_I[0] = 0
_EMPTY_V[0] = 0
MAX_LAYERS = SLIDE_MAX_LAYERS
cdef int ADAM_CHUNK = 2048


# Kernels registered at run time by other extensions (the AVX-512 emulation
# build, kernels._emu): (op, dtype, isa) -> function address.
_EXTERNAL = {}


def kernel_registry():
    """Every available kernel as (op, dtype, isa) tuples: compiled ones in
    registry order, then those registered at run time."""
    out = [(slide_registry[i].op.decode(), slide_registry[i].dtype.decode(), slide_registry[i].isa.decode())
           for i in range(slide_registry_len)]
    return out + list(_EXTERNAL)


def register_kernels(entries):
    """Add kernels from another extension: iterable of (op, dtype, isa, address)."""
    for op, dtype, isa, addr in entries:
        if op not in ("fwd_rows", "bwd_rows", "fwd_cols", "bwd_cols", "adam", "row_adam", "hash", "hash_rows"):
            raise ValueError(f"unknown op {op!r}")
        if not isinstance(addr, int) or addr == 0:
            raise ValueError("kernel address must be a non-zero int")
        _EXTERNAL[(op, dtype, isa)] = addr


def compiled_isas():
    """ISAs this build compiled kernels for (besides scalar)."""
    m = slide_compiled_isas()
    return [name for bit, name in enumerate(("avx2", "avx512", "avx512_bf16", "amx")) if m >> bit & 1]


def cpu_probe():
    """CPUID/XGETBV: instruction support that the OS also enables, plus raw registers."""
    cdef slide_cpu c
    slide_cpu_probe(&c)
    flags = {k: bool(v) for k, v in dict(
        sse2=c.sse2, avx=c.avx, fma=c.fma, f16c=c.f16c, avx2=c.avx2, avx512f=c.avx512f, avx512bw=c.avx512bw,
        avx512vl=c.avx512vl, avx512dq=c.avx512dq, avx512_bf16=c.avx512_bf16, avx512_fp16=c.avx512_fp16,
        amx_tile=c.amx_tile, amx_bf16=c.amx_bf16).items()}
    raw = {"max_leaf": c.max_leaf, "leaf1_ecx": hex(c.leaf1_ecx), "leaf1_edx": hex(c.leaf1_edx),
           "leaf7_ebx": hex(c.leaf7_ebx), "leaf7_ecx": hex(c.leaf7_ecx), "leaf7_edx": hex(c.leaf7_edx),
           "leaf7_1_eax": hex(c.leaf7_1_eax), "xcr0": hex(c.xcr0), "osxsave": bool(c.osxsave)}
    return flags, raw


def count_nonfinite(a, int n_threads=1):
    """Number of NaN/inf values in a float32 array (a memory-speed scan in C)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise TypeError("expected a float32 numpy array")
    flat = a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)
    cdef const uint32_t[::1] u = flat.view(np.uint32)
    cdef int64_t n = u.shape[0], bad = 0
    if n == 0:
        return 0
    cdef const uint32_t *pu = &u[0]
    cdef int64_t CH = 1 << 18, c, nch = (n + CH - 1) // CH
    with nogil, parallel(num_threads=max(1, n_threads)):
        for c in prange(nch, schedule="static"):
            bad += slide_count_nonfinite_f32(pu + c * CH, min(CH, n - c * CH))
    return int(bad)


cdef extern from "slide/scan.h" nogil:
    int64_t slide_count_nonfinite_f32(const uint32_t *u, int64_t n)


cdef extern from "slide/triad.h" nogil:
    void slide_triad_f64(double *a, const double *b, const double *c, double s, int64_t n)


def stream_triad(double[::1] a not None, const double[::1] b not None, const double[::1] c not None, double s,
                 int n_threads=1):
    """a = b + s * c in one pass (STREAM's triad), split into n_threads equal
    contiguous slices run by as many OpenMP threads. Returns the wall-clock
    seconds of the call."""
    cdef int64_t n = a.shape[0]
    if b.shape[0] != n or c.shape[0] != n:
        raise ValueError(f"triad arrays differ in length: a {n}, b {b.shape[0]}, c {c.shape[0]}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if n == 0:
        return 0.0
    cdef int T = n_threads, t
    cdef int64_t lo, hi
    cdef double t0, t1
    t0 = openmp.omp_get_wtime()
    with nogil, parallel(num_threads=T):
        for t in prange(T, schedule="static", chunksize=1):
            lo = n * t // T
            hi = n * (t + 1) // T
            slide_triad_f64(&a[0] + lo, &b[0] + lo, &c[0] + lo, s, hi - lo)
    t1 = openmp.omp_get_wtime()
    return t1 - t0


def omp_max_threads():
    """OpenMP's default team size in this process (OMP_NUM_THREADS or the cores)."""
    return openmp.omp_get_max_threads()


def request_amx():
    """Ask the kernel for AMX tile-data permission; True when granted."""
    return slide_request_amx() == 0


cdef inline slide_adam_params _adam_params(double lr_t, double beta1, double beta2, double eps):
    """Adam's step constants as the kernels take them (1 - beta in double)."""
    cdef slide_adam_params p
    p.lr_t = lr_t
    p.beta1 = beta1
    p.beta2 = beta2
    p.one_minus_beta1 = 1.0 - beta1
    p.one_minus_beta2 = 1.0 - beta2
    p.eps = eps
    return p


cdef slide_any_fn _lookup(str op, str name) except NULL:
    """Function pointer of the kernel op + 'dtype/isa'."""
    parts = name.split("/")
    if len(parts) != 2:
        raise ValueError(f"kernel name must be 'dtype/isa', got {name!r}")
    dtype, isa = parts
    cdef bytes bop = op.encode(), bdt = dtype.encode(), bisa = isa.encode()
    for i in range(slide_registry_len):
        if slide_registry[i].op == bop and slide_registry[i].dtype == bdt and slide_registry[i].isa == bisa:
            return slide_registry[i].fn
    addr = _EXTERNAL.get((op, dtype, isa))
    if addr is not None:
        return <slide_any_fn><size_t>addr
    raise KeyError(f"no kernel {op}/{dtype}/{isa}")


cdef void* _ptr(object a, object dtype, str what, bint writable=True) except? NULL:
    """Data pointer of a C-contiguous array of the given dtype (None -> NULL)."""
    if a is None:
        return NULL
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{what}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{what}: array must be C-contiguous")
    if writable and not a.flags.writeable:
        raise ValueError(f"{what}: array must be writable")
    if a.size == 0:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


class DataError(ValueError):
    """A sample's CSR arrays break the data set contract (checked before C reads them)."""


cdef int _check_rows(const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                     const int64_t[::1] label_indptr, const int32_t[::1] labels, const int64_t[::1] rows,
                     int64_t start, int64_t stop, int64_t n_features, int64_t n_labels,
                     int64_t max_labels) except -1:
    """Check samples rows[start:stop] before the kernels index with them.

    Dataset validates its arrays once, but they stay writable numpy arrays:
    this re-check (O(nnz + labels) of the batch, serial, far below the cost of
    the batch itself) is what keeps C inside its buffers whatever happened to
    them since. Features: ids strictly increasing in [0, n_features), values
    finite. Labels (label_indptr not None): ids in [0, n_labels), at most
    max_labels per sample (>= 0; the batched buffers were sized for it)."""
    cdef int64_t n_rows = indptr.shape[0] - 1
    cdef int64_t nnz = min(indices.shape[0], values.shape[0])
    cdef int64_t i, s, a, z, k
    cdef int32_t prev, f, y
    cdef bint with_labels = label_indptr is not None
    if with_labels:
        n_rows = min(n_rows, label_indptr.shape[0] - 1)
    for i in range(start, stop):
        s = rows[i]
        if s < 0 or s >= n_rows:
            raise DataError(f"sample index {s} out of range [0, {max(n_rows, 0)})")
        a = indptr[s]
        z = indptr[s + 1]
        if a < 0 or z < a or z > nnz or z - a >= 2**31:
            raise DataError(f"row {s}: indptr [{a}, {z}) is not a valid range of the {nnz} feature entries")
        prev = -1
        for k in range(a, z):
            f = indices[k]
            if f < 0 or f >= n_features:
                raise DataError(f"row {s}: feature id {f} out of range [0, {n_features})")
            if f <= prev:
                raise DataError(f"row {s}: feature ids must be strictly increasing (sorted, no duplicates)")
            prev = f
            if not isfinite(values[k]):
                raise DataError(f"row {s}: non-finite feature value")
        if not with_labels:
            continue
        a = label_indptr[s]
        z = label_indptr[s + 1]
        if a < 0 or z < a or z > labels.shape[0]:
            raise DataError(f"row {s}: label_indptr [{a}, {z}) is not a valid range of the "
                            f"{labels.shape[0]} label entries")
        if max_labels >= 0 and z - a > max_labels:
            raise DataError(f"row {s}: {z - a} labels, but the batch buffers were sized for at most "
                            f"{max_labels} (label_indptr changed after fit started?)")
        for k in range(a, z):
            y = labels[k]
            if y < 0 or y >= n_labels:
                raise DataError(f"row {s}: label id {y} out of range [0, {n_labels})")
    return 0


def check_rows(const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
               const int64_t[::1] label_indptr, const int32_t[::1] labels, const int64_t[::1] rows,
               int64_t n_features, int64_t n_labels):
    """The per-sample check of the engine's entry points, for samples rows (raises DataError)."""
    _check_rows(indptr, indices, values, label_indptr, labels, rows, 0, rows.shape[0], n_features, n_labels, -1)


cdef class Engine:
    """A network's C state: layers (pointers into arrays owned by Python),
    kernels, per-thread scratch. Built by workbench.network.Network."""

    cdef slide_net net
    cdef slide_thread *th
    cdef int max_threads
    cdef list _keep
    cdef list _layer_keep
    cdef int32_t *rowbuf  # ADAM_CHUNK ids per thread
    cdef float *colbuf    # per-thread gather buffer for hashing transposed columns
    cdef object _mu_keep  # layer -> hash center array (set_hash_center)
    cdef int64_t colbuf_len
    # batched output layer ("union" strategy)
    cdef slide_batch bt
    cdef int batch_ready
    cdef int32_t bt_Bmax
    cdef int32_t bt_max_labels
    cdef float *u_wbuf
    cdef float *u_gvec
    cdef float *u_gbs
    cdef float *u_dH
    cdef int64_t u_dH_stride
    cdef list _batch_keep
    cdef dict union_ns

    def __cinit__(self):
        memset(&self.net, 0, sizeof(slide_net))
        self.th = NULL
        self.rowbuf = NULL
        self.colbuf = NULL
        self.max_threads = 0
        self._keep = []
        self._layer_keep = []
        self._batch_keep = []
        self.batch_ready = 0
        memset(&self.bt, 0, sizeof(slide_batch))
        self.union_ns = {}
        self._mu_keep = {}

    def __dealloc__(self):
        free(self.th)
        free(self.rowbuf)
        free(self.colbuf)

    def __init__(self, int max_threads, bint compat=False, bint track_touched=True):
        if max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        self.max_threads = max_threads
        self.net.compat = compat
        self.net.track_touched = track_touched

    @property
    def n_layers(self):
        return self.net.n_layers

    def add_layer(self, *, int n_in, int n_out, int layout, W, Wb, b, gW, gb, mW, vW, mb, vb,
                  row_stamp, bias_stamp, bint lsh=False, int sampling=0, int top_k=0, int threshold=1,
                  int min_active=0, int prefetch=0, dict hasher=None, dict tables=None):
        """Append a layer. Arrays are checked for dtype and contiguity here;
        their shapes were validated by the caller (workbench.network)."""
        if self.net.n_layers >= SLIDE_MAX_LAYERS:
            raise ValueError(f"at most {SLIDE_MAX_LAYERS} layers")
        if self.th != NULL:
            raise RuntimeError("add_layer after finalize")
        cdef slide_layer *L = &self.net.layers[self.net.n_layers]
        memset(L, 0, sizeof(slide_layer))
        L.n_in = n_in
        L.n_out = n_out
        L.layout = layout
        L.W.w = <float*>_ptr(W, np.float32, "W")
        L.W.wb = <bf16_t*>_ptr(Wb, np.uint16, "Wb")
        L.W.b = <float*>_ptr(b, np.float32, "b")
        L.W.ld = W.shape[1]
        L.W.rows = W.shape[0]
        L.W.cols = n_in if layout == SLIDE_LAYOUT_ROWMAJOR else n_out
        L.W.prefetch = prefetch
        L.gW = <float*>_ptr(gW, np.float32, "gW")
        L.gb = <float*>_ptr(gb, np.float32, "gb")
        L.mW = <float*>_ptr(mW, np.float32, "mW")
        L.vW = <float*>_ptr(vW, np.float32, "vW")
        L.mb = <float*>_ptr(mb, np.float32, "mb")
        L.vb = <float*>_ptr(vb, np.float32, "vb")
        L.row_stamp = <int32_t*>_ptr(row_stamp, np.int32, "row_stamp")
        L.bias_stamp = <int32_t*>_ptr(bias_stamp, np.int32, "bias_stamp")
        L.lsh = lsh
        L.sampling = sampling
        L.top_k = top_k
        L.threshold = threshold
        L.min_active = min_active
        keep = [W, Wb, b, gW, gb, mW, vW, mb, vb, row_stamp, bias_stamp]
        if lsh:
            self._set_hasher(L, hasher, keep)
            self._set_tables(L, tables, keep)
        self._layer_keep.append(keep)
        self.net.n_layers += 1

    cdef _set_hasher(self, slide_layer *L, dict h, list keep):
        L.hs.family = h["family"]
        L.hs.dim = h["dim"]
        L.hs.K = h["K"]
        L.hs.L = h["L"]
        L.hs.H = h["K"] * h["L"]
        L.hs.bin_size = h["bin_size"]
        L.hs.bits = h["bits"]
        L.hs.shift = h["shift"]
        L.hs.range_pow = h["range_pow"]
        L.hs.n_perm = h["n_perm"]
        L.hs.seed = h["seed"]
        L.hs.coord_of_slot = <const int32_t*>_ptr(h.get("coord_of_slot"), np.int32, "coord_of_slot", False)
        L.hs.slot_of_coord = <const int32_t*>_ptr(h.get("slot_of_coord"), np.int32, "slot_of_coord", False)
        L.hs.srp_coef = <const int8_t*>_ptr(h.get("srp_coef"), np.int8, "srp_coef", False)
        keep.append(h)

    def set_hasher_seed(self, int l, uint64_t seed):
        """Point layer l at redrawn hash functions (arrays refilled in place)."""
        self._check_layer(l)
        self.net.layers[l].hs.seed = seed

    def set_hash_center(self, int l, mu):
        """Rehash layer l's neurons as (w_j - mu) instead of w_j (mu: float32
        array of n_in values, kept alive here; None: off). Queries are not
        shifted: w_j.h - mu.h differs from w_j.h by a constant per query, so
        the ranking the tables approximate is unchanged."""
        self._check_layer(l)
        cdef slide_layer *L = &self.net.layers[l]
        if mu is None:
            L.hash_mu = NULL
            self._mu_keep.pop(l, None)
            return
        if not isinstance(mu, np.ndarray) or mu.dtype != np.float32 or mu.ndim != 1 or mu.shape[0] != L.n_in \
                or not mu.flags.c_contiguous:
            raise ValueError(f"hash center of layer {l} must be a contiguous float32 array of {L.n_in} values")
        if not np.isfinite(mu).all():
            raise ValueError(f"hash center of layer {l} has non-finite values")
        self._mu_keep[l] = mu
        L.hash_mu = <const float*>_ptr(mu, np.float32, "hash center", False)

    cdef _set_tables(self, slide_layer *L, dict t, list keep):
        L.tables.L = t["L"]
        L.tables.range_pow = t["range_pow"]
        L.tables.capacity = t["capacity"]
        L.tables.policy = t["policy"]
        L.tables.n_items = t["n_items"]
        L.tables.seed = t["seed"]
        L.tables.offsets = <uint32_t*>_ptr(t["offsets"], np.uint32, "offsets")
        L.tables.ids = <int32_t*>_ptr(t["ids"], np.int32, "table ids")
        keep.append(t)

    def set_kernels(self, int l, str fwd_rows, str bwd_rows, str fwd_cols, str bwd_cols, str adam, str hash,
                    str hash_rows="f32/scalar"):
        """Bind layer l's ops to registry entries named 'dtype/isa'."""
        self._check_layer(l)
        cdef slide_layer *L = &self.net.layers[l]
        L.fwd_rows = <slide_fwd_rows_fn>_lookup("fwd_rows", fwd_rows)
        L.bwd_rows = <slide_bwd_rows_fn>_lookup("bwd_rows", bwd_rows)
        L.fwd_cols = <slide_fwd_cols_fn>_lookup("fwd_cols", fwd_cols)
        L.bwd_cols = <slide_bwd_cols_fn>_lookup("bwd_cols", bwd_cols)
        L.adam = <slide_adam_fn>_lookup("adam", adam)
        L.hash = <slide_hash_fn>_lookup("hash", hash)
        L.hash_rows = <slide_hash_rows_fn>_lookup("hash_rows", hash_rows)

    cdef _check_layer(self, int l):
        if l < 0 or l >= self.net.n_layers:
            raise IndexError(f"layer {l} out of range [0, {self.net.n_layers})")

    def finalize(self):
        """Allocate per-thread scratch (numpy arrays kept alive here). Returns its size in bytes."""
        if self.th != NULL:
            raise RuntimeError("finalize called twice")
        cdef int T = self.max_threads
        cdef int nl = self.net.n_layers
        cdef int l, t
        cdef slide_layer *L
        self.th = <slide_thread*>calloc(T, sizeof(slide_thread))
        self.rowbuf = <int32_t*>calloc(T * ADAM_CHUNK, sizeof(int32_t))
        if self.th == NULL or self.rowbuf == NULL:
            raise MemoryError()
        max_out = 64
        max_H = 1
        max_L = 1
        max_col = 0
        for l in range(nl):
            L = &self.net.layers[l]
            if L.lsh:
                max_out = max(max_out, L.n_out)
                max_H = max(max_H, L.hs.H)
                max_L = max(max_L, L.hs.L)
                if L.layout == SLIDE_LAYOUT_TRANSPOSED:
                    max_col = max(max_col, L.n_in)
        self.colbuf_len = max_col
        if max_col:
            self.colbuf = <float*>calloc(T * max_col, sizeof(float))
            if self.colbuf == NULL:
                raise MemoryError()
        nbytes = T * (ADAM_CHUNK * 4 + max_col * 4)

        def arr(n, dt):
            a = np.zeros(max(int(n), 1), dtype=dt)
            self._keep.append(a)
            return a

        for t in range(T):
            for l in range(nl):
                L = &self.net.layers[l]
                self.th[t].ids[l] = <int32_t*>_ptr(arr(L.n_out, np.int32), np.int32, "ids")
                self.th[t].val[l] = <float*>_ptr(arr(L.n_out, np.float32), np.float32, "val")
                self.th[t].grad[l] = <float*>_ptr(arr(L.n_out, np.float32), np.float32, "grad")
                self.th[t].dx[l] = <float*>_ptr(arr(L.n_out, np.float32), np.float32, "dx")
                nbytes += 16 * L.n_out
                if L.lsh:
                    self.th[t].mark[l] = <uint32_t*>_ptr(arr(L.n_out, np.uint32), np.uint32, "mark")
                    self.th[t].hsc[l].best = <float*>_ptr(arr(L.hs.H, np.float32), np.float32, "best")
                    self.th[t].hsc[l].arg = <int32_t*>_ptr(arr(L.hs.H, np.int32), np.int32, "arg")
                    nbytes += 8 * L.n_out + 8 * L.hs.H
                    # WTA over a sparse input scatters into a dense scratch
                    if L.hs.family == 1 and (l == 0 or self.net.layers[l - 1].lsh):
                        self.th[t].hsc[l].dense = <float*>_ptr(arr(L.n_in, np.float32), np.float32, "dense")
                        nbytes += 4 * L.n_in
            self.th[t].hashes = <uint32_t*>_ptr(arr(max_H, np.uint32), np.uint32, "hashes")
            self.th[t].buckets = <uint32_t*>_ptr(arr(max_L, np.uint32), np.uint32, "buckets")
            self.th[t].sel_val = <float*>_ptr(arr(max_out, np.float32), np.float32, "sel_val")
            self.th[t].sel_id = <int32_t*>_ptr(arr(max_out, np.int32), np.int32, "sel_id")
            self.th[t].hist_len = max_L + 2
            self.th[t].hist = <int32_t*>_ptr(arr(max_L + 2, np.int32), np.int32, "hist")
            nbytes += 4 * (max_H + max_L + 2 * max_out + max_L + 2)
        return nbytes

    def check_batch(self, indptr, indices, values, label_indptr, labels, order, int64_t start, int64_t stop,
                    int64_t n_features=-1, int64_t n_labels=-1, bint batched=False):
        """The check train_batch (batched: train_batch_union) makes of samples
        order[start:stop] before touching anything, on its own (DataError)."""
        if start < 0 or stop > len(order) or start > stop:
            raise IndexError("batch range out of bounds")
        self._check_samples(indptr, indices, values, label_indptr, labels, order, start, stop, n_features,
                            n_labels, self.bt_max_labels if batched and self.batch_ready else -1)

    cdef _check_samples(self, indptr, indices, values, label_indptr, labels, rows, int64_t start, int64_t stop,
                        int64_t n_features, int64_t n_labels, int64_t max_labels):
        """_check_rows against the data set's bounds, never wider than the network's."""
        cdef int64_t n_in = self.net.layers[0].n_in
        cdef int64_t n_out = self.net.layers[self.net.n_layers - 1].n_out
        _check_rows(indptr, indices, values, label_indptr, labels, rows, start, stop,
                    n_in if n_features < 0 or n_features > n_in else n_features,
                    n_out if n_labels < 0 or n_labels > n_out else n_labels, max_labels)

    cdef _check_ready(self, int n_threads):
        if self.th == NULL:
            raise RuntimeError("engine not finalized")
        if n_threads < 1 or n_threads > self.max_threads:
            raise ValueError(f"n_threads must be in [1, {self.max_threads}]")

    def train_batch(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                    const int64_t[::1] label_indptr, const int32_t[::1] labels, const int64_t[::1] order,
                    int64_t start, int64_t stop, int32_t batch_id, uint64_t rng_seed, float scale,
                    int n_threads, int64_t n_features=-1, int64_t n_labels=-1):
        """Forward+backward of samples order[start:stop] in parallel (HOGWILD).
        Gradients accumulate into the shared gW/gb; touched rows get stamped
        with batch_id. Returns (sum of losses, number of samples with labels).
        n_features / n_labels: the data set's id bounds (-1 or larger: the
        network's); every sample is checked against them first (DataError)."""
        self._check_ready(n_threads)
        if start < 0 or stop > order.shape[0] or start > stop:
            raise IndexError("batch range out of bounds")
        self._check_samples(indptr, indices, values, label_indptr, labels, order, start, stop, n_features,
                            n_labels, -1)
        cdef int64_t i, s, a, z
        cdef int tid
        cdef slide_thread *th
        cdef double total = 0.0
        cdef int64_t counted = 0
        cdef float loss
        cdef const int32_t *xi
        cdef const float *xv
        cdef const int32_t *yl
        tid = 0
        th = NULL
        xi = &indices[0] if indices.shape[0] else _EMPTY_I
        xv = &values[0] if values.shape[0] else _EMPTY_V
        yl = &labels[0] if labels.shape[0] else _EMPTY_I
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            for i in prange(start, stop, schedule="dynamic", chunksize=1):
                s = order[i]
                a = indptr[s]
                z = label_indptr[s]
                th.rng.key = slide_key(rng_seed, <uint64_t>s)
                th.rng.ctr = 0
                loss = slide_train_sample(&self.net, th, xi + a, xv + a, <int32_t>(indptr[s + 1] - a),
                                          yl + z, <int32_t>(label_indptr[s + 1] - z), scale, batch_id)
                total += loss
                if label_indptr[s + 1] > z:
                    counted += 1
        return total, counted

    # ---- batched output layer -----------------------------------------------------

    def setup_batch(self, int Bmax, int cap, str fwd_kernel, str bwd_kernel, int prefetch=4, bint round_inputs=False,
                    bint round_weights=False, str row_adam_kernel="", int batch_labels=0, *, int max_labels):
        """Allocate the buffers of the batched output layer for batches of up to
        Bmax samples whose output active sets hold at most cap neurons, of
        which at most max_labels are a sample's own labels (samples with more
        are refused by train_batch_union).
        row_adam_kernel: the fused backward + Adam kernel of an output row
        ("": bwd_kernel, then the layer's Adam kernel). batch_labels: up to
        this many of a batch's distinct labels join every sample's active set
        (cap must leave room for them)."""
        self._check_ready(1)
        cdef int last = self.net.n_layers - 1
        if last < 1 or self.net.layers[last - 1].lsh or not self.net.layers[last].lsh:
            raise ValueError("the batched strategy needs a dense hidden layer feeding an LSH output layer")
        if self.net.layers[last].layout != SLIDE_LAYOUT_ROWMAJOR:
            raise ValueError("the batched strategy needs a row-major output layer")
        if <int64_t>Bmax * cap >= 2**31:
            raise ValueError(f"batch {Bmax} x active-set capacity {cap} is too large (>= 2^31 entries)")
        if max_labels < 0 or max_labels > cap:
            raise ValueError(f"max_labels {max_labels} must be in [0, cap {cap}]")
        cdef slide_layer *L = &self.net.layers[last]
        cdef int T = self.max_threads
        cdef int32_t d = L.n_in
        cdef int64_t ldh = ((d + 15) // 16) * 16
        keep = []

        def arr(n, dt):
            a = np.zeros(max(int(n), 1), dtype=dt)
            keep.append(a)
            return a

        memset(&self.bt, 0, sizeof(slide_batch))
        self.bt.cap = cap
        self.bt.d = d
        self.bt.ldh = ldh
        self.bt.H = <float*>_ptr(arr(Bmax * ldh, np.float32), np.float32, "H")
        self.bt.Hr = <float*>_ptr(arr(Bmax * ldh, np.float32), np.float32, "Hr") if round_inputs else NULL
        for l in range(last):
            w = self.net.layers[l].n_out
            self.bt.act_ld[l] = w
            self.bt.acts[l] = <float*>_ptr(arr(Bmax * w, np.float32), np.float32, "acts")
        self.bt.A = <int32_t*>_ptr(arr(Bmax * cap, np.int32), np.int32, "A")
        self.bt.nA = <int32_t*>_ptr(arr(Bmax, np.int32), np.int32, "nA")
        self.bt.nF = <int32_t*>_ptr(arr(Bmax, np.int32), np.int32, "nF")
        self.bt.Z = <float*>_ptr(arr(Bmax * cap, np.float32), np.float32, "Z")
        self.bt.loss = <float*>_ptr(arr(Bmax, np.float32), np.float32, "loss")
        self.bt.zero_b = <float*>_ptr(arr(Bmax, np.float32), np.float32, "zero_b")
        self.bt.cnt = <int32_t*>_ptr(arr(L.n_out, np.int32), np.int32, "cnt")
        self.bt.urows = <int32_t*>_ptr(arr(L.n_out, np.int32), np.int32, "urows")
        self.bt.uoff = <int32_t*>_ptr(arr(L.n_out + 1, np.int32), np.int32, "uoff")
        self.bt.es = <int32_t*>_ptr(arr(Bmax * cap, np.int32), np.int32, "es")
        self.bt.epos = <int32_t*>_ptr(arr(Bmax * cap, np.int32), np.int32, "epos")
        self.bt.E = <float*>_ptr(arr(Bmax * cap, np.float32), np.float32, "E")
        if batch_labels < 0:
            raise ValueError("batch_labels must be >= 0")
        self.bt.blab_cap = min(batch_labels, L.n_out)
        if self.bt.blab_cap:
            self.bt.blab = <int32_t*>_ptr(arr(self.bt.blab_cap, np.int32), np.int32, "blab")
            self.bt.blab_stamp = <int32_t*>_ptr(arr(L.n_out, np.int32), np.int32, "blab_stamp")
        self.bt.fwd = <slide_fwd_rows_fn>_lookup("fwd_rows", fwd_kernel)
        self.bt.bwd = <slide_bwd_rows_fn>_lookup("bwd_rows", bwd_kernel)
        self.bt.row_adam = <slide_row_adam_fn>_lookup("row_adam", row_adam_kernel) if row_adam_kernel else NULL
        self.bt.bf16_rows = L.W.wb != NULL
        self.bt.round_w = round_weights
        self.bt.prefetch = prefetch
        self.u_wbuf = <float*>_ptr(arr(T * ldh, np.float32), np.float32, "wbuf")
        self.u_gvec = <float*>_ptr(arr(T * ldh, np.float32), np.float32, "gvec")
        self.u_gbs = <float*>_ptr(arr(T * Bmax, np.float32), np.float32, "gbs")
        self.u_dH_stride = Bmax * ldh
        self.u_dH = <float*>_ptr(arr(T * Bmax * ldh, np.float32), np.float32, "dH")
        self.bt_Bmax = Bmax
        self.bt_max_labels = max_labels
        self._batch_keep = keep
        self.batch_ready = 1
        return sum(a.nbytes for a in keep)

    def train_batch_union(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                          const int64_t[::1] label_indptr, const int32_t[::1] labels, const int64_t[::1] order,
                          int64_t start, int64_t stop, int32_t batch_id, uint64_t rng_seed, float scale,
                          int n_threads, double lr_t, double beta1, double beta2, double eps, bint dense_update,
                          int64_t n_features=-1, int64_t n_labels=-1):
        """One batch with the batched output layer (see batch.h): the output
        layer is updated inside (fused Adam); hidden layers accumulate
        gradients for update(). Returns (sum of losses, samples with labels).
        Samples are checked first, as in train_batch."""
        self._check_ready(n_threads)
        if not self.batch_ready:
            raise RuntimeError("setup_batch was not called")
        if start < 0 or stop > order.shape[0] or start > stop or stop - start > self.bt_Bmax:
            raise IndexError("batch range out of bounds or larger than the prepared batch")
        self._check_samples(indptr, indices, values, label_indptr, labels, order, start, stop, n_features,
                            n_labels, self.bt_max_labels)
        cdef int32_t B = <int32_t>(stop - start)
        cdef int last = self.net.n_layers - 1
        cdef slide_layer *L = &self.net.layers[last]
        cdef slide_batch *bt = &self.bt
        bt.B = B
        cdef int64_t i, s, a, z, yi
        cdef int32_t y
        cdef int tid = 0
        cdef slide_thread *th = NULL
        cdef const int32_t *xi = &indices[0] if indices.shape[0] else _EMPTY_I
        cdef const float *xv = &values[0] if values.shape[0] else _EMPTY_V
        cdef const int32_t *yl = &labels[0] if labels.shape[0] else _EMPTY_I
        cdef int64_t t0 = slide_now_ns(), t1, t2, t3, t4, t5, t6
        cdef int T = n_threads
        cdef int32_t n_out = L.n_out
        bt.n_blab = 0
        if bt.blab_cap:  # the batch's distinct labels, in batch order, at most blab_cap of them
            if bt.blab_epoch == 2**31 - 1:
                memset(bt.blab_stamp, 0, n_out * sizeof(int32_t))
                bt.blab_epoch = 0
            bt.blab_epoch += 1
            for i in range(B):
                s = order[start + i]
                for yi in range(label_indptr[s], label_indptr[s + 1]):
                    y = labels[yi]
                    if y < 0 or y >= n_out or bt.blab_stamp[y] == bt.blab_epoch:
                        continue
                    bt.blab_stamp[y] = bt.blab_epoch
                    if bt.n_blab < bt.blab_cap:
                        bt.blab[bt.n_blab] = y
                        bt.n_blab += 1
        # One parallel region for the whole batch, phases separated by explicit
        # barriers (Cython's prange inside a parallel block is "omp for
        # nowait"): a batch costs one thread wake-up, not one per phase, which
        # matters when the cores are shared with other processes.
        cdef int64_t[8] ent
        cdef int32_t[8] nrows
        cdef int64_t[8] stamps
        cdef int32_t lo, hi, r, rb, eb, c
        cdef int32_t nchunks = 0
        cdef int q, p
        cdef int32_t CH = 64
        cdef slide_adam_params pa = _adam_params(lr_t, beta1, beta2, eps)
        if T > 8:
            raise ValueError("at most 8 threads in the batched strategy")
        with nogil, parallel(num_threads=T):
            tid = threadid()
            th = &self.th[tid]
            memset(self.u_dH + tid * self.u_dH_stride, 0, self.u_dH_stride * sizeof(float))
            # phase 1: hidden layers and LSH selection per sample
            for i in prange(B, schedule="dynamic", chunksize=1):
                s = order[start + i]
                a = indptr[s]
                z = label_indptr[s]
                th.rng.key = slide_key(rng_seed, <uint64_t>s)
                th.rng.ctr = 0
                slide_batch_select(&self.net, th, bt, <int32_t>i, xi + a, xv + a, <int32_t>(indptr[s + 1] - a),
                                   yl + z, <int32_t>(label_indptr[s + 1] - z))
            slide_omp_barrier()
            if tid == 0:
                stamps[0] = slide_now_ns()
            # phase 2: union rows and entries by row range (static: iteration q runs on thread q)
            for q in prange(T, schedule="static", chunksize=1):
                lo = <int32_t>(<int64_t>n_out * q // T)
                hi = <int32_t>(<int64_t>n_out * (q + 1) // T)
                nrows[q] = slide_batch_count(bt, lo, hi, &ent[q])
            slide_omp_barrier()
            for q in prange(T, schedule="static", chunksize=1):
                rb = 0
                eb = 0
                for p in range(q):
                    rb = rb + nrows[p]
                    eb = eb + <int32_t>ent[p]
                lo = <int32_t>(<int64_t>n_out * q // T)
                hi = <int32_t>(<int64_t>n_out * (q + 1) // T)
                slide_batch_rows(bt, lo, hi, rb, eb)
                if q == T - 1:
                    bt.n_union = rb + nrows[q]
                    bt.uoff[bt.n_union] = eb + <int32_t>ent[q]
            slide_omp_barrier()
            for q in prange(T, schedule="static", chunksize=1):
                lo = <int32_t>(<int64_t>n_out * q // T)
                hi = <int32_t>(<int64_t>n_out * (q + 1) // T)
                slide_batch_place(bt, lo, hi)
            slide_omp_barrier()
            if tid == 0:
                stamps[1] = slide_now_ns()
            nchunks = (bt.n_union + CH - 1) // CH
            # phase 3: logits per union row
            for c in prange(nchunks, schedule="static", chunksize=1):
                slide_batch_forward(&self.net, bt, c * CH, min((c + 1) * CH, bt.n_union),
                                    self.u_wbuf + tid * bt.ldh)
            slide_omp_barrier()
            if tid == 0:
                stamps[2] = slide_now_ns()
            # phase 4: softmax per sample
            for i in prange(B, schedule="static"):
                bt.loss[i] = slide_batch_softmax(&self.net, bt, <int32_t>i, scale)
            slide_omp_barrier()
            if tid == 0:
                stamps[3] = slide_now_ns()
            # phase 5: gradients and Adam per union row; input gradients per thread
            for c in prange(nchunks, schedule="static", chunksize=1):
                slide_batch_backward_adam(&self.net, bt, c * CH, min((c + 1) * CH, bt.n_union),
                                          self.u_dH + tid * self.u_dH_stride, self.u_wbuf + tid * bt.ldh,
                                          self.u_gvec + tid * bt.ldh, self.u_gbs + tid * self.bt_Bmax,
                                          &pa, dense_update, batch_id)
            slide_omp_barrier()
            if tid == 0:
                stamps[4] = slide_now_ns()
            # phase 6: hidden layers backward per sample
            for i in prange(B, schedule="dynamic", chunksize=1):
                s = order[start + i]
                a = indptr[s]
                slide_batch_hidden_backward(&self.net, th, bt, <int32_t>i, self.u_dH, T, self.u_dH_stride,
                                            xi + a, xv + a, <int32_t>(indptr[s + 1] - a), batch_id)
        t6 = slide_now_ns()
        cdef double total = 0.0
        cdef int64_t counted = 0
        for i in range(B):
            if bt.nA[i] > 0:
                total += bt.loss[i]
                counted += 1
        prev = t0
        for key, k in (("select", 0), ("index", 1), ("forward", 2), ("softmax", 3), ("backward_adam", 4)):
            self.union_ns[key] = self.union_ns.get(key, 0) + stamps[k] - prev
            prev = stamps[k]
        self.union_ns["hidden_backward"] = self.union_ns.get("hidden_backward", 0) + t6 - prev
        self.union_ns["entries"] = self.union_ns.get("entries", 0) + bt.uoff[bt.n_union]
        self.union_ns["union_rows"] = self.union_ns.get("union_rows", 0) + bt.n_union
        return total, counted

    def set_union_prefetch(self, int rows):
        """Union rows ahead whose weight and Adam lines are prefetched (0: off)."""
        if rows < 0 or rows > 64:
            raise ValueError("prefetch distance must be in [0, 64]")
        self.bt.prefetch = rows

    def union_stats(self, bint reset=False):
        out = dict(self.union_ns)
        if reset:
            self.union_ns = {}
        return out

    def update(self, int l, double lr_t, double beta1, double beta2, double eps, int32_t batch_id,
               bint dense, int n_threads, bint skip_stamped=False):
        """Adam on layer l: every row (dense) or the rows stamped with batch_id (sparse)."""
        self._check_ready(n_threads)
        self._check_layer(l)
        cdef slide_layer *L = &self.net.layers[l]
        cdef slide_adam_params p = _adam_params(lr_t, beta1, beta2, eps)
        cdef bint all_rows = dense or L.all_rows_touched or not self.net.track_touched
        cdef bint all_bias = dense or not self.net.track_touched or (
            L.all_bias_touched if L.layout == SLIDE_LAYOUT_TRANSPOSED else L.all_rows_touched)
        if skip_stamped:  # dense pass after the batched layer updated its rows: the others only
            all_rows = all_bias = False
        self._adam_matrix(L.adam, L.W.w, L.W.wb, L.mW, L.vW, L.gW, L.W.ld, L.W.cols, L.W.rows,
                          L.row_stamp, batch_id, all_rows, &p, n_threads, skip_stamped)
        cdef int32_t *bstamp = L.bias_stamp if L.layout == SLIDE_LAYOUT_TRANSPOSED else L.row_stamp
        self._adam_matrix(L.adam, L.W.b, NULL, L.mb, L.vb, L.gb, 1, 1, L.n_out, bstamp, batch_id, all_bias,
                          &p, n_threads, skip_stamped)
        L.all_rows_touched = 0
        L.all_bias_touched = 0

    cdef void _adam_matrix(self, slide_adam_fn adam, float *w, bf16_t *wb, float *m, float *v, float *g, int64_t ld, int32_t cols,
                           int64_t rows, const int32_t *stamp, int32_t batch_id, bint all_rows,
                           const slide_adam_params *p, int n_threads, bint invert=False) noexcept nogil:
        cdef int64_t nchunks = (rows + ADAM_CHUNK - 1) // ADAM_CHUNK
        cdef int64_t c, r, r0, r1, cnt
        cdef int32_t *buf = NULL
        cdef int tid = 0
        with parallel(num_threads=n_threads):
            tid = threadid()
            buf = self.rowbuf + tid * ADAM_CHUNK
            for c in prange(nchunks, schedule="static"):
                r0 = c * ADAM_CHUNK
                r1 = min(r0 + ADAM_CHUNK, rows)
                if all_rows:
                    adam(w + r0 * ld, wb + r0 * ld if wb != NULL else NULL, m + r0 * ld, v + r0 * ld,
                         g + r0 * ld, ld, cols, NULL, r1 - r0, p)
                else:
                    cnt = 0
                    for r in range(r0, r1):
                        if (stamp[r] == batch_id) != invert:
                            buf[cnt] = <int32_t>r
                            cnt = cnt + 1
                    if cnt:
                        adam(w, wb, m, v, g, ld, cols, buf, cnt, p)

    def rehash(self, int l, uint32_t[:, ::1] bids, uint32_t[:, ::1] seen, int n_threads):
        """Rebuild layer l's tables from its current weights."""
        self._check_ready(n_threads)
        self._check_layer(l)
        cdef slide_layer *L = &self.net.layers[l]
        if not L.lsh:
            raise ValueError(f"layer {l} is not LSH-sampled")
        cdef int32_t n = L.n_out, nin = L.n_in
        if bids.shape[0] != L.hs.L or bids.shape[1] != n:
            raise ValueError("bids has the wrong shape")
        if seen.shape[0] < n_threads or seen.shape[1] != (1 << L.hs.range_pow):
            raise ValueError("seen has the wrong shape")
        # Rows are hashed in blocks of RB (the hash_rows kernel may hash several
        # rows at once); a block's bucket ids are staged per thread and written
        # out table by table, so each table's stretch of `bids` is written
        # contiguously (bids[t, j] row by row would touch L lines per neuron).
        cdef int32_t RB = 256
        cdef int32_t nL = L.hs.L
        cdef int32_t H = L.hs.H
        stage_arr = np.zeros((n_threads, RB * nL), dtype=np.uint32)
        hstage_arr = np.zeros((n_threads, RB * H), dtype=np.uint32)
        cdef uint32_t[:, ::1] stage = stage_arr
        cdef uint32_t[:, ::1] hstage = hstage_arr
        # centred hashing: a block of rows minus the centre, staged per thread
        cdef const float *mu = L.hash_mu
        cdef bint centred_rows = mu != NULL and L.layout == SLIDE_LAYOUT_ROWMAJOR
        cbuf_arr = np.zeros((n_threads, RB * nin if centred_rows else 1), dtype=np.float32)
        cdef float[:, ::1] cbuf = cbuf_arr
        cdef float *cb = NULL
        cdef const float *wr = NULL
        cdef int32_t nblocks = (n + RB - 1) // RB
        cdef int32_t blk, j, j0, j1, t, k
        cdef int tid = 0
        cdef slide_thread *th = NULL
        cdef float *col = NULL
        cdef uint32_t *st = NULL
        cdef uint32_t *hs = NULL
        cdef int64_t t0 = slide_now_ns(), t1
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            col = self.colbuf + tid * self.colbuf_len if self.colbuf != NULL else NULL
            st = &stage[tid, 0]
            hs = &hstage[tid, 0]
            for blk in prange(nblocks, schedule="static"):
                j0 = blk * RB
                j1 = min(j0 + RB, n)
                if centred_rows:
                    cb = &cbuf[tid, 0]
                    for j in range(j0, j1):
                        wr = L.W.w + <int64_t>j * L.W.ld
                        for k in range(nin):
                            cb[(j - j0) * nin + k] = wr[k] - mu[k]
                    L.hash_rows(&L.hs, &th.hsc[l], cb, nin, 0, j1 - j0, hs)
                elif L.layout == SLIDE_LAYOUT_ROWMAJOR:
                    L.hash_rows(&L.hs, &th.hsc[l], L.W.w, L.W.ld, j0, j1, hs)
                else:
                    for j in range(j0, j1):
                        for k in range(nin):
                            col[k] = L.W.w[<int64_t>k * L.W.ld + j]
                            if mu != NULL:
                                col[k] = col[k] - mu[k]
                        L.hash(&L.hs, &th.hsc[l], NULL, col, nin, hs + (j - j0) * H)
                for j in range(j0, j1):
                    slide_bucket_ids(&L.hs, hs + (j - j0) * H, st + (j - j0) * nL)
                for t in range(nL):
                    for j in range(j0, j1):
                        bids[t, j] = st[(j - j0) * nL + t]
        t1 = slide_now_ns()
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            for t in prange(nL, schedule="dynamic"):
                slide_table_build_one(&L.tables, t, &bids[t, 0], &seen[tid, 0])
        return {"hash_s": (t1 - t0) / 1e9, "build_s": (slide_now_ns() - t1) / 1e9}

    def predict(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                const int64_t[::1] rows, int k, bint dense, uint64_t rng_seed, int n_threads,
                int64_t n_features=-1):
        """Top-k output neurons for each sample in rows: int32 array (len(rows), k), -1 where fewer."""
        self._check_ready(n_threads)
        if k < 1 or k > 64:
            raise ValueError("k must be in [1, 64]")
        cdef int64_t nr = rows.shape[0]
        self._check_samples(indptr, indices, values, None, None, rows, 0, nr, n_features, -1, -1)
        out = np.full((nr, k), -1, dtype=np.int32)
        cdef int32_t[:, ::1] o = out
        cdef int64_t i, s, a
        cdef int tid = 0
        cdef slide_thread *th = NULL
        cdef const int32_t *xi = &indices[0] if indices.shape[0] else _EMPTY_I
        cdef const float *xv = &values[0] if values.shape[0] else _EMPTY_V
        if nr == 0:
            return out
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            for i in prange(nr, schedule="dynamic", chunksize=4):
                s = rows[i]
                a = indptr[s]
                th.rng.key = slide_key(rng_seed, <uint64_t>s)
                th.rng.ctr = 0
                slide_predict_sample(&self.net, th, xi + a, xv + a, <int32_t>(indptr[s + 1] - a), dense, k,
                                     &o[i, 0])
        return out

    def logits(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
               const int64_t[::1] rows, int n_threads, int64_t n_features=-1):
        """Output-layer logits of every neuron (exact, dense inference): float32 (len(rows), n_out)."""
        self._check_ready(n_threads)
        cdef int last = self.net.n_layers - 1
        cdef int32_t n_out = self.net.layers[last].n_out
        cdef int64_t nr = rows.shape[0]
        self._check_samples(indptr, indices, values, None, None, rows, 0, nr, n_features, -1, -1)
        out = np.zeros((nr, n_out), dtype=np.float32)
        if nr == 0:
            return out
        cdef float[:, ::1] o = out
        cdef int64_t i, s, a
        cdef int tid = 0
        cdef int32_t forced
        cdef slide_thread *th = NULL
        cdef const int32_t *xi = &indices[0] if indices.shape[0] else _EMPTY_I
        cdef const float *xv = &values[0] if values.shape[0] else _EMPTY_V
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            for i in prange(nr, schedule="dynamic", chunksize=4):
                s = rows[i]
                a = indptr[s]
                slide_forward(&self.net, th, xi + a, xv + a, <int32_t>(indptr[s + 1] - a), NULL, 0, 0, 1, &forced)
                memcpy(&o[i, 0], th.val[last], n_out * sizeof(float))
        return out

    def hidden(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
               const int64_t[::1] rows, int n_threads, int64_t n_features=-1):
        """The output layer's inputs (last hidden layer's activations, dense inference):
        float32 (len(rows), n_in of the output layer). Needs a hidden layer."""
        self._check_ready(n_threads)
        cdef int last = self.net.n_layers - 1
        if last < 1:
            raise ValueError("the network has no hidden layer")
        cdef int32_t d = self.net.layers[last].n_in
        cdef int64_t nr = rows.shape[0]
        self._check_samples(indptr, indices, values, None, None, rows, 0, nr, n_features, -1, -1)
        out = np.zeros((nr, d), dtype=np.float32)
        if nr == 0:
            return out
        cdef float[:, ::1] o = out
        cdef int64_t i, s, a
        cdef int tid = 0
        cdef int32_t forced
        cdef slide_thread *th = NULL
        cdef const int32_t *xi = &indices[0] if indices.shape[0] else _EMPTY_I
        cdef const float *xv = &values[0] if values.shape[0] else _EMPTY_V
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            for i in prange(nr, schedule="dynamic", chunksize=4):
                s = rows[i]
                a = indptr[s]
                slide_forward_upto(&self.net, th, xi + a, xv + a, <int32_t>(indptr[s + 1] - a), NULL, 0, 0, 1,
                                   &forced, last)
                memcpy(&o[i, 0], th.val[last - 1], d * sizeof(float))
        return out

    def candidates(self, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                   const int64_t[::1] rows, int n_threads, int cap=65536, int64_t n_features=-1):
        """What the output layer's tables choose for each sample in rows (no
        labels, no random top-up): (counts int64 (len(rows)), ids int32 (len(rows), cap),
        collision counts int32 (len(rows), cap)); row i's first min(counts[i], cap)
        entries are valid. Collision counts are 0 for sampling rules that do not count."""
        self._check_ready(n_threads)
        cdef int last = self.net.n_layers - 1
        if not self.net.layers[last].lsh:
            raise ValueError("the output layer is not LSH-sampled")
        if cap < 1 or cap > self.net.layers[last].n_out:
            cap = self.net.layers[last].n_out
        cdef int64_t nr = rows.shape[0]
        self._check_samples(indptr, indices, values, None, None, rows, 0, nr, n_features, -1, -1)
        counts = np.zeros(nr, dtype=np.int64)
        ids = np.full((max(nr, 1), cap), -1, dtype=np.int32)
        cnt = np.zeros((max(nr, 1), cap), dtype=np.int32)
        if nr == 0:
            return counts, ids[:0], cnt[:0]
        cdef int64_t[::1] c = counts
        cdef int32_t[:, ::1] oi = ids
        cdef int32_t[:, ::1] oc = cnt
        cdef int64_t i, s, a
        cdef int tid = 0
        cdef slide_thread *th = NULL
        cdef const int32_t *xi = &indices[0] if indices.shape[0] else _EMPTY_I
        cdef const float *xv = &values[0] if values.shape[0] else _EMPTY_V
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            th = &self.th[tid]
            for i in prange(nr, schedule="dynamic", chunksize=4):
                s = rows[i]
                a = indptr[s]
                c[i] = slide_candidates(&self.net, th, xi + a, xv + a, <int32_t>(indptr[s + 1] - a), &oi[i, 0],
                                        &oc[i, 0], cap)
        return counts, ids, cnt

    def hash_vectors(self, int l, const float[:, ::1] X):
        """Hash values (n, H) of dense vectors with layer l's hasher (for tests and LSH studies)."""
        self._check_ready(1)
        self._check_layer(l)
        cdef slide_layer *L = &self.net.layers[l]
        if not L.lsh:
            raise ValueError(f"layer {l} is not LSH-sampled")
        if X.shape[1] != L.n_in:
            raise ValueError(f"vectors must have {L.n_in} columns")
        out = np.zeros((X.shape[0], L.hs.H), dtype=np.uint32)
        cdef uint32_t[:, ::1] o = out
        cdef int64_t i
        for i in range(X.shape[0]):
            L.hash(&L.hs, &self.th[0].hsc[l], NULL, &X[i, 0], L.n_in, &o[i, 0])
        return out

    def stats(self):
        """Counters summed over threads since the last reset."""
        cdef int t, l, q
        out = {"phase_ns": {name: 0 for name in PHASES}, "samples": 0, "labels_total": 0, "labels_found": 0,
               "active_sum": [0] * self.net.n_layers, "cand_sum": [0] * self.net.n_layers}
        if self.th == NULL:
            return out
        for t in range(self.max_threads):
            for q in range(SLIDE_N_PHASES):
                out["phase_ns"][PHASES[q]] += self.th[t].phase_ns[q]
            out["samples"] += self.th[t].samples
            out["labels_total"] += self.th[t].labels_total
            out["labels_found"] += self.th[t].labels_found
            for l in range(self.net.n_layers):
                out["active_sum"][l] += self.th[t].active_sum[l]
                out["cand_sum"][l] += self.th[t].cand_sum[l]
        return out

    def reset_stats(self):
        cdef int t
        if self.th == NULL:
            return
        for t in range(self.max_threads):
            memset(self.th[t].phase_ns, 0, sizeof(self.th[t].phase_ns))
            memset(self.th[t].active_sum, 0, sizeof(self.th[t].active_sum))
            memset(self.th[t].cand_sum, 0, sizeof(self.th[t].cand_sum))
            self.th[t].samples = 0
            self.th[t].labels_total = 0
            self.th[t].labels_found = 0


def build_table(const uint32_t[::1] bids, int range_pow, int capacity, int policy, uint64_t seed):
    """Build one compact table over items 0..n-1 with bucket ids bids (for tests
    and studies): returns (offsets uint32 (2^range_pow + 1), ids int32 (n))."""
    if range_pow < 1 or range_pow > 26 or capacity < 1 or policy not in (0, 1):
        raise ValueError("bad table parameters")
    cdef int64_t n = bids.shape[0], j
    for j in range(n):
        if bids[j] >> range_pow:
            raise ValueError(f"bucket id {bids[j]} out of range for range_pow {range_pow}")
    offsets = np.zeros((1 << range_pow) + 1, dtype=np.uint32)
    ids = np.full(max(n, 1), -1, dtype=np.int32)
    seen = np.zeros(1 << range_pow, dtype=np.uint32)
    cdef slide_tables T
    T.L = 1
    T.range_pow = range_pow
    T.capacity = capacity
    T.policy = policy
    T.n_items = <int32_t>n
    T.seed = seed
    T.offsets = <uint32_t*>_ptr(offsets, np.uint32, "offsets")
    T.ids = <int32_t*>_ptr(ids, np.int32, "ids")
    slide_table_build_one(&T, 0, &bids[0] if n else NULL, <uint32_t*>_ptr(seen, np.uint32, "seen"))
    return offsets, ids[:int(offsets[1 << range_pow])]


def srp_coef_table(uint64_t seed, int32_t H, int32_t dim):
    """SRP coefficients (H, dim) int8 in {-1, 0, +1}, as slide_srp_coef defines them."""
    out = np.empty((H, dim), dtype=np.int8)
    cdef int8_t[:, ::1] o = out
    cdef int32_t h, c
    with nogil:
        for h in range(H):
            for c in range(dim):
                o[h, c] = <int8_t>slide_srp_coef(seed, h, c)
    return out


def hash_dense(dict hasher, const float[:, ::1] X, str kernel="f32/scalar"):
    """Hash the rows of X with a hasher description and a hash kernel: (n, H) uint32."""
    cdef slide_hasher hs
    memset(&hs, 0, sizeof(hs))
    _fill_hasher(&hs, hasher)
    return _hash_rows(&hs, X, None, <slide_hash_fn>_lookup("hash", kernel))


def hash_sparse(dict hasher, const int64_t[::1] indptr, const int32_t[::1] indices, const float[::1] values,
                str kernel="f32/scalar"):
    """Hash CSR rows (sorted unique indices) with a hasher description: (n, H) uint32."""
    cdef slide_hasher hs
    memset(&hs, 0, sizeof(hs))
    _fill_hasher(&hs, hasher)
    if indptr.shape[0] < 1 or indptr[indptr.shape[0] - 1] > indices.shape[0] or indices.shape[0] != values.shape[0]:
        raise ValueError("inconsistent CSR arrays")
    for i in range(indices.shape[0]):
        if indices[i] < 0 or indices[i] >= hs.dim:
            raise IndexError(f"index {indices[i]} out of range [0, {hs.dim})")
    return _hash_rows(&hs, None, (indptr, indices, values), <slide_hash_fn>_lookup("hash", kernel))


def hash_rows(dict hasher, const float[:, ::1] W, int32_t j0, int32_t j1, str kernel="f32/scalar"):
    """Hash rows j0..j1-1 of a (rows, ld) matrix (ld >= dim) with a hash_rows kernel: (j1-j0, H) uint32."""
    cdef slide_hasher hs
    memset(&hs, 0, sizeof(hs))
    _fill_hasher(&hs, hasher)
    if W.shape[1] < hs.dim or j0 < 0 or j1 > W.shape[0] or j0 > j1:
        raise ValueError("rows out of range or matrix narrower than the hasher's dim")
    out = np.zeros((max(j1 - j0, 1), hs.H), dtype=np.uint32)
    cdef uint32_t[:, ::1] o = out
    best = np.zeros(hs.H, np.float32)
    arg = np.zeros(hs.H, np.int32)
    cdef slide_hash_scratch sc
    sc.best = <float*>_ptr(best, np.float32, "best")
    sc.arg = <int32_t*>_ptr(arg, np.int32, "arg")
    sc.dense = NULL
    cdef slide_hash_rows_fn fn = <slide_hash_rows_fn>_lookup("hash_rows", kernel)
    if j1 > j0:
        fn(&hs, &sc, &W[0, 0], W.shape[1], j0, j1, &o[0, 0])
    return out[:j1 - j0]


def bucket_ids(dict hasher, const uint32_t[:, ::1] hashes):
    """Bucket ids (n, L) from hash values (n, H)."""
    cdef slide_hasher hs
    memset(&hs, 0, sizeof(hs))
    _fill_hasher(&hs, hasher)
    if hashes.shape[1] != hs.H:
        raise ValueError(f"hashes must have {hs.H} columns")
    out = np.zeros((hashes.shape[0], hs.L), dtype=np.uint32)
    cdef uint32_t[:, ::1] o = out
    cdef int64_t i
    for i in range(hashes.shape[0]):
        slide_bucket_ids(&hs, &hashes[i, 0], &o[i, 0])
    return out


cdef _fill_hasher(slide_hasher *hs, dict h):
    if h["dim"] < 1 or h["K"] < 1 or h["L"] < 1:
        raise ValueError("bad hasher dimensions")
    if h["family"] in (0, 1):
        if h["coord_of_slot"].shape[0] != h["K"] * h["L"] * h["bin_size"] or \
                h["slot_of_coord"].shape[0] != h["n_perm"] * h["dim"]:
            raise ValueError("hasher permutation arrays do not match K, L, bin_size, dim")
        if h["coord_of_slot"].min() < 0 or h["coord_of_slot"].max() >= h["dim"]:
            raise IndexError("coord_of_slot out of range")
    hs.family = h["family"]
    hs.dim = h["dim"]
    hs.K = h["K"]
    hs.L = h["L"]
    hs.H = h["K"] * h["L"]
    hs.bin_size = h["bin_size"]
    hs.bits = h["bits"]
    hs.shift = h["shift"]
    hs.range_pow = h["range_pow"]
    hs.n_perm = h["n_perm"]
    hs.seed = h["seed"]
    hs.coord_of_slot = <const int32_t*>_ptr(h.get("coord_of_slot"), np.int32, "coord_of_slot", False)
    hs.slot_of_coord = <const int32_t*>_ptr(h.get("slot_of_coord"), np.int32, "slot_of_coord", False)
    hs.srp_coef = <const int8_t*>_ptr(h.get("srp_coef"), np.int8, "srp_coef", False)


cdef _hash_rows(slide_hasher *hs, X, csr, slide_hash_fn fn):
    cdef int64_t n = X.shape[0] if X is not None else csr[0].shape[0] - 1
    out = np.zeros((n, hs.H), dtype=np.uint32)
    cdef uint32_t[:, ::1] o = out
    best = np.zeros(hs.H, np.float32)
    arg = np.zeros(hs.H, np.int32)
    dense = np.zeros(hs.dim, np.float32)
    cdef slide_hash_scratch sc
    sc.best = <float*>_ptr(best, np.float32, "best")
    sc.arg = <int32_t*>_ptr(arg, np.int32, "arg")
    sc.dense = <float*>_ptr(dense, np.float32, "dense")
    cdef const float[:, ::1] Xv
    cdef const int64_t[::1] ip
    cdef const int32_t[::1] ix
    cdef const float[::1] vx
    cdef int64_t i, a
    if X is not None:
        Xv = X
        if Xv.shape[1] != hs.dim:
            raise ValueError(f"vectors must have {hs.dim} columns")
        for i in range(n):
            fn(hs, &sc, NULL, &Xv[i, 0], hs.dim, &o[i, 0])
    else:
        ip, ix, vx = csr
        for i in range(n):
            a = ip[i]
            fn(hs, &sc, &ix[a] if ip[i + 1] > a else _EMPTY_I, &vx[a] if ip[i + 1] > a else _EMPTY_V,
               <int32_t>(ip[i + 1] - a), &o[i, 0])
    return out


# ---- single-op entry points (tests, benchmarks, studies) ----------------------------
#
# Each validates shapes and every index against the buffers before the kernel
# runs: kernels themselves never check.

cdef _check_vector(a, int n, str what):
    """A contiguous 1-D float32 array of n values."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32 or a.ndim != 1 or not a.flags.c_contiguous:
        raise TypeError(f"{what} must be a contiguous 1-D float32 array")
    if a.shape[0] != n:
        raise ValueError(f"{what} must have {n} values, got {a.shape[0]}")


cdef _check_kernel_inputs(str kernel, Wb, int prefetch):
    if kernel.split("/")[0] == "bf16" and Wb is None:
        raise ValueError(f"kernel {kernel} reads the bf16 weight copy: pass Wb (bf16_buffer)")
    if prefetch < 0 or prefetch > 64:
        raise ValueError(f"prefetch must be in [0, 64], got {prefetch}")


cdef int _fill_mat(slide_mat *m, W, Wb, b, int layout, int n_in, int n_out, int prefetch) except -1:
    if not isinstance(W, np.ndarray) or W.ndim != 2:
        raise ValueError("W must be a 2-D array (rows, ld)")
    if n_in < 0 or n_out < 0:
        raise ValueError("n_in and n_out must be >= 0")
    rows, cols = (n_out, n_in) if layout == SLIDE_LAYOUT_ROWMAJOR else (n_in, n_out)
    if W.shape[0] != rows or W.shape[1] < cols or W.shape[1] % 16:
        raise ValueError(f"W must be ({rows}, ld) with ld >= {cols} and a multiple of 16, got {W.shape}")
    _check_vector(b, n_out, "b")
    m.w = <float*>_ptr(W, np.float32, "W", False)
    m.wb = NULL
    if Wb is not None:
        base = Wb.base if Wb.base is not None else Wb
        if Wb.shape != W.shape or base.size < W.size + 32:
            raise ValueError("Wb must be a (rows, ld) uint16 view with 32 spare elements behind it (bf16_buffer)")
        m.wb = <bf16_t*>_ptr(Wb, np.uint16, "Wb", False)
    m.b = <float*>_ptr(b, np.float32, "b", False)
    m.ld = W.shape[1]
    m.rows = rows
    m.cols = cols
    m.prefetch = prefetch
    return 0


cdef _check_index(a, int hi, str what, bint validate=True):
    """None, or a 1-D int32 array of unique values in [0, hi). validate=False
    keeps the type checks and skips the per-element scans (the caller has
    validated the indices once, e.g. a benchmark's id pool)."""
    if a is None:
        return
    if not isinstance(a, np.ndarray) or a.dtype != np.int32 or a.ndim != 1 or not a.flags.c_contiguous:
        raise TypeError(f"{what} must be a contiguous 1-D int32 array")
    if not validate:
        return
    if a.size and (a.min() < 0 or a.max() >= hi):
        raise IndexError(f"{what} out of range [0, {hi})")
    if a.size > 1 and np.unique(a).size != a.size:
        raise ValueError(f"{what} must not repeat an index")


cdef inline const int32_t* _iptr(a):
    if a is None:
        return NULL
    return <const int32_t*>_ptr(a, np.int32, "index", False) if a.size else _EMPTY_I


cdef inline const float* _fptr(a):
    return <const float*>_ptr(a, np.float32, "values", False) if a.size else _EMPTY_V


def bf16_buffer(shape):
    """A zeroed uint16 (rows, ld) array with 32 spare elements behind it, as bf16 kernels need."""
    n = int(np.prod(shape))
    return np.zeros(n + 32, np.uint16)[:n].reshape(shape)


cdef _check_inputs(int layout, int n_in, int n_out, xi, xv, ids, int n, bint validate=True):
    if not isinstance(xv, np.ndarray) or xv.dtype != np.float32 or xv.ndim != 1:
        raise TypeError("xv must be a 1-D float32 array")
    if xi is None:
        if xv.shape[0] != n_in:
            raise ValueError(f"a dense input must have n_in = {n_in} values, got {xv.shape[0]}")
    else:
        _check_index(xi, n_in, "xi", validate)
        if xi.shape[0] != xv.shape[0]:
            raise ValueError("xi and xv differ in length")
    if ids is None:
        if n < 0 or n > n_out:
            raise ValueError(f"n must be in [0, {n_out}] when ids is None")
    else:
        _check_index(ids, n_out, "ids", validate)
        if ids.shape[0] != n:
            raise ValueError("ids must have n entries")


def op_forward(str kernel, int layout, int n_in, W, Wb, b, xi, xv, ids, int n, int prefetch=0, bint validate=True):
    """One forward kernel call; returns z (n,).
    layout 0: row-major W (n_out, ld), op fwd_rows; 1: transposed W (n_in, ld), op fwd_cols.
    xi None: dense input of n_in values; ids None: outputs 0..n-1."""
    cdef slide_mat m
    if not isinstance(b, np.ndarray) or b.ndim != 1:
        raise TypeError("b must be a 1-D float32 array")
    cdef int n_out = b.shape[0]
    _check_kernel_inputs(kernel, Wb, prefetch)
    _fill_mat(&m, W, Wb, b, layout, n_in, n_out, prefetch)
    _check_inputs(layout, n_in, n_out, xi, xv, ids, n, validate)
    z = np.zeros(max(n, 1), np.float32)
    cdef slide_any_fn fn = _lookup("fwd_rows" if layout == SLIDE_LAYOUT_ROWMAJOR else "fwd_cols", kernel)
    cdef const int32_t *pxi = _iptr(xi)
    cdef const float *pxv = _fptr(xv)
    cdef const int32_t *pids = _iptr(ids)
    cdef float *pz = <float*>_ptr(z, np.float32, "z")
    cdef int32_t nx = xv.shape[0]
    with nogil:
        if layout == SLIDE_LAYOUT_ROWMAJOR:
            (<slide_fwd_rows_fn>fn)(&m, pxi, pxv, nx, pids, n, pz)
        else:
            (<slide_fwd_cols_fn>fn)(&m, pxi, pxv, nx, pids, n, pz)
    return z[:n]


def op_backward(str kernel, int layout, int n_in, W, Wb, gW, gb, xi, xv, ids, g, bint want_dx, bint validate=True):
    """One backward kernel call: accumulates into gW, gb (in place); returns dx (len(xv),) or None."""
    cdef slide_mat m
    if not isinstance(gb, np.ndarray) or gb.ndim != 1:
        raise TypeError("gb must be a 1-D float32 array")
    cdef int n_out = gb.shape[0]
    _check_vector(gb, n_out, "gb")
    _check_kernel_inputs(kernel, Wb, 0)
    b = np.zeros(n_out, np.float32)
    _fill_mat(&m, W, Wb, b, layout, n_in, n_out, 0)
    if not isinstance(gW, np.ndarray) or gW.shape != W.shape or gW.dtype != np.float32 or not gW.flags.c_contiguous:
        raise ValueError("gW must be a contiguous float32 array shaped like W")
    if not isinstance(g, np.ndarray) or g.ndim != 1:
        raise TypeError("g must be a 1-D float32 array")
    cdef int n = g.shape[0]
    _check_vector(g, n, "g")
    _check_inputs(layout, n_in, n_out, xi, xv, ids, n, validate)
    dx = np.zeros(max(xv.shape[0], 1), np.float32) if want_dx else None
    cdef slide_any_fn fn = _lookup("bwd_rows" if layout == SLIDE_LAYOUT_ROWMAJOR else "bwd_cols", kernel)
    cdef const int32_t *pxi = _iptr(xi)
    cdef const float *pxv = _fptr(xv)
    cdef const int32_t *pids = _iptr(ids)
    cdef const float *pg = _fptr(g)
    cdef float *pgW = <float*>_ptr(gW, np.float32, "gW")
    cdef float *pgb = <float*>_ptr(gb, np.float32, "gb")
    cdef float *pdx = <float*>_ptr(dx, np.float32, "dx") if want_dx else NULL
    cdef int32_t nx = xv.shape[0]
    with nogil:
        if layout == SLIDE_LAYOUT_ROWMAJOR:
            (<slide_bwd_rows_fn>fn)(&m, pgW, pgb, pxi, pxv, nx, pids, pg, n, pdx)
        else:
            (<slide_bwd_cols_fn>fn)(&m, pgW, pgb, pxi, pxv, nx, pids, pg, n, pdx)
    return dx[:xv.shape[0]] if want_dx else None


def op_adam(str kernel, W, Wb, M, V, G, int cols, rows, double lr_t, double beta1=0.9, double beta2=0.999,
            double eps=1e-8, bint validate=True):
    """One Adam kernel call over `rows` (None: all) of the (R, ld) arrays, in place."""
    for name, a in (("W", W), ("M", M), ("V", V), ("G", G)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array")
    for name, a in (("M", M), ("V", V), ("G", G)):
        if a.shape != W.shape or a.dtype != np.float32:
            raise ValueError(f"{name} must be float32 shaped like W")
    if Wb is not None and not isinstance(Wb, np.ndarray):
        raise TypeError("Wb must be a numpy array or None")
    if W.ndim != 2 or cols < 0 or cols > W.shape[1]:
        raise ValueError("W must be (rows, ld) with cols <= ld")
    _check_index(rows, W.shape[0], "rows", validate)
    if Wb is not None and Wb.shape != W.shape:
        raise ValueError("Wb must be shaped like W")
    cdef slide_adam_params p = _adam_params(lr_t, beta1, beta2, eps)
    cdef slide_adam_fn fn = <slide_adam_fn>_lookup("adam", kernel)
    cdef float *pw = <float*>_ptr(W, np.float32, "W")
    cdef bf16_t *pwb = <bf16_t*>_ptr(Wb, np.uint16, "Wb") if Wb is not None else NULL
    cdef float *pm = <float*>_ptr(M, np.float32, "M")
    cdef float *pv = <float*>_ptr(V, np.float32, "V")
    cdef float *pg = <float*>_ptr(G, np.float32, "G")
    cdef const int32_t *pr = _iptr(rows)
    cdef int64_t nrows = rows.shape[0] if rows is not None else W.shape[0]
    cdef int64_t ld = W.shape[1]
    with nogil:
        fn(pw, pwb, pm, pv, pg, ld, cols, pr, nrows, &p)


def op_row_adam(str kernel, w, wb, m, v, x, H, dH, ids, g, double lr_t, double beta1=0.9, double beta2=0.999,
                double eps=1e-8):
    """One row_adam kernel call (backward and Adam of one weight row, see
    kernel_api.h), in place on w, wb, m, v and dH. w, m, v, x: d float32
    values (x may be w itself); wb: None or d uint16 (bf16 bits); H, dH:
    float32 (B, ldh) with ldh >= d; ids: int32 rows of H in [0, B) (n of
    them, repeats allowed); g: n float32 output gradients."""
    for name, a in (("w", w), ("m", m), ("v", v), ("x", x), ("H", H), ("dH", dH), ("g", g)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if w.ndim != 1:
        raise TypeError("w must be a 1-D float32 array")
    cdef int32_t d = w.shape[0]
    for name, a in (("w", w), ("m", m), ("v", v), ("x", x)):
        _check_vector(a, d, name)
    if wb is not None:
        if not isinstance(wb, np.ndarray) or wb.dtype != np.uint16 or wb.ndim != 1 or wb.shape[0] != d:
            raise TypeError(f"wb must be None or a 1-D uint16 array of {d} values")
    if H.ndim != 2 or H.dtype != np.float32 or dH.dtype != np.float32 or dH.shape != H.shape:
        raise TypeError("H and dH must be float32 (B, ldh) arrays of the same shape")
    if H.shape[1] < d:
        raise ValueError(f"H rows hold {H.shape[1]} values, fewer than the row width {d}")
    if not isinstance(ids, np.ndarray) or ids.dtype != np.int32 or ids.ndim != 1 or not ids.flags.c_contiguous:
        raise TypeError("ids must be a contiguous 1-D int32 array")
    cdef int32_t n = ids.shape[0]
    _check_vector(g, n, "g")
    if n and (ids.min() < 0 or ids.max() >= H.shape[0]):
        raise IndexError(f"ids out of range [0, {H.shape[0]})")
    cdef slide_adam_params p = _adam_params(lr_t, beta1, beta2, eps)
    cdef slide_row_adam_fn fn = <slide_row_adam_fn>_lookup("row_adam", kernel)
    cdef float *pw = <float*>_ptr(w, np.float32, "w")
    cdef bf16_t *pwb = <bf16_t*>_ptr(wb, np.uint16, "wb") if wb is not None else NULL
    cdef float *pm = <float*>_ptr(m, np.float32, "m")
    cdef float *pv = <float*>_ptr(v, np.float32, "v")
    cdef const float *px = <const float*>_ptr(x, np.float32, "x", False)
    cdef const float *pH = <const float*>_ptr(H, np.float32, "H", False)
    cdef float *pdH = <float*>_ptr(dH, np.float32, "dH")
    cdef const int32_t *pids = _iptr(ids)
    cdef const float *pg = _fptr(g)
    cdef int64_t ldh = H.shape[1]
    with nogil:
        fn(pw, pwb, pm, pv, px, pH, pdH, ldh, d, pids, pg, n, &p)
