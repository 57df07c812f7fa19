"""LSH hash functions and tables: parameters on the Python side.

Owns: drawing a hash family's random parameters from a seed (permutations for
DWTA/WTA, coefficient tables for SRP; MinHash needs none beyond the seed), the
table arrays, and a small standalone `Hasher` for studies and tests. The hash
evaluation itself is C (kernels/include/slide/hash_scalar.h); this module never
loops over vectors.
"""

from __future__ import annotations

import numpy as np

from kernels import _core

FAMILY_IDS = {"dwta": 0, "wta": 1, "srp": 2, "minhash": 3}
POLICY_IDS = {"fifo": 0, "reservoir": 1}

# Above this many coefficients the SRP table is not stored: coefficients are
# derived on the fly from (seed, hash, coordinate), identically for both paths.
SRP_TABLE_LIMIT = 1 << 24


def hasher_params(family: str, dim: int, K: int, L: int, *, bin_size: int = 8, bits: int, shift: int,
                  range_pow: int, seed: int) -> dict:
    """Everything the C hasher needs, with arrays drawn from `seed`.

    DWTA/WTA: n_perm = ceil(H * bin_size / dim) random permutations of the
    coordinates, concatenated; slot s belongs to bin s // bin_size. Both
    directions are stored: coordinates of each slot (dense input, bin-major)
    and slot of each coordinate (sparse input)."""
    if family not in FAMILY_IDS:
        raise ValueError(f"unknown hash family {family!r} (valid: {', '.join(FAMILY_IDS)})")
    H = K * L
    seed = int(seed) & (2**64 - 1)
    p = dict(family=FAMILY_IDS[family], dim=int(dim), K=int(K), L=int(L), bin_size=int(bin_size), bits=int(bits),
             shift=int(shift), range_pow=int(range_pow), n_perm=0, seed=seed)
    rng = np.random.default_rng([seed, 0x51DE])
    if family in ("dwta", "wta"):
        used = H * bin_size
        n_perm = -(-used // dim)
        perms = np.concatenate([rng.permutation(dim).astype(np.int32) for _ in range(n_perm)])
        coord_of_slot = np.ascontiguousarray(perms[:used])
        slot_of_coord = np.empty(n_perm * dim, dtype=np.int32)
        for q in range(n_perm):
            slot_of_coord[q * dim + perms[q * dim:(q + 1) * dim]] = np.arange(q * dim, (q + 1) * dim, dtype=np.int32)
        p.update(n_perm=n_perm, coord_of_slot=coord_of_slot, slot_of_coord=slot_of_coord)
    elif family == "srp" and H * dim <= SRP_TABLE_LIMIT:
        p["srp_coef"] = srp_coefficients(seed, H, dim)
    return p


def srp_coefficients(seed: int, H: int, dim: int) -> np.ndarray:
    """The SRP coefficient table (H, dim) of int8 in {-1, 0, +1}, computed by
    the same C function the on-the-fly path uses, so both agree exactly."""
    return _core.srp_coef_table(int(seed) & (2**64 - 1), int(H), int(dim))


def redraw(params: dict, seed: int) -> None:
    """Redraw a hasher's random parameters in place (same shapes), for rebuilds."""
    fam = {v: k for k, v in FAMILY_IDS.items()}[params["family"]]
    new = hasher_params(fam, params["dim"], params["K"], params["L"], bin_size=params["bin_size"],
                        bits=params["bits"], shift=params["shift"], range_pow=params["range_pow"], seed=seed)
    params["seed"] = new["seed"]
    for key in ("coord_of_slot", "slot_of_coord", "srp_coef"):
        if key in params:
            params[key][...] = new[key]


def table_params(L: int, range_pow: int, capacity: int, policy: str, n_items: int, seed: int) -> dict:
    """Arrays of L compact tables over n_items neurons (see table.h)."""
    if policy not in POLICY_IDS:
        raise ValueError(f"unknown bucket policy {policy!r} (valid: {', '.join(POLICY_IDS)})")
    return dict(L=int(L), range_pow=int(range_pow), capacity=int(capacity), policy=POLICY_IDS[policy],
                n_items=int(n_items), seed=int(seed) & (2**64 - 1),
                offsets=np.zeros(L * ((1 << range_pow) + 1), dtype=np.uint32),
                ids=np.zeros(L * n_items, dtype=np.int32))


class Hasher:
    """A standalone hash family for LSH studies: hash vectors, get bucket ids.

    >>> h = Hasher("srp", dim=64, K=4, L=8, seed=1)
    >>> h.hash_dense(np.ones((2, 64), np.float32)).shape
    (2, 32)
    """

    def __init__(self, family: str, dim: int, K: int, L: int, *, bin_size: int = 8, range_pow: int = 18,
                 compat: bool = False, seed: int = 0):
        from .config import Config

        cfg = Config(hash_family=family, K=K, L=L, bin_size=bin_size, range_pow=range_pow, compat=compat)
        self.family, self.dim, self.K, self.L = family, dim, K, L
        self.params = hasher_params(family, dim, K, L, bin_size=bin_size, bits=cfg.hash_bits, shift=cfg.hash_shift,
                                    range_pow=range_pow, seed=seed)

    def hash_dense(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected an (n, {self.dim}) array, got shape {X.shape}")
        return _core.hash_dense(self.params, X)

    def hash_sparse(self, indptr, indices, values) -> np.ndarray:
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        indices = np.ascontiguousarray(indices, dtype=np.int32)
        values = np.ascontiguousarray(values, dtype=np.float32)
        _check_csr(indptr, indices, values, self.dim)
        return _core.hash_sparse(self.params, indptr, indices, values)

    def bucket_ids(self, hashes) -> np.ndarray:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint32)
        if hashes.ndim != 2 or hashes.shape[1] != self.K * self.L:
            raise ValueError(f"expected an (n, {self.K * self.L}) array of hash values")
        return _core.bucket_ids(self.params, hashes)


def _check_csr(indptr, indices, values, dim):
    if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("indptr must start at 0 and be non-decreasing")
    if indptr[-1] != len(indices) or len(indices) != len(values):
        raise ValueError("indptr, indices and values disagree in length")
    if len(indices) and (indices.min() < 0 or indices.max() >= dim):
        raise ValueError(f"indices must be in [0, {dim})")
    for a, b in zip(indptr[:-1], indptr[1:]):
        if b - a > 1 and np.any(np.diff(indices[a:b]) <= 0):
            raise ValueError("indices within a row must be sorted and unique")
