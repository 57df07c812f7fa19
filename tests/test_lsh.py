"""Hash families, bucket ids and compact tables.

Statistical tests use fixed seeds and tolerances of several standard errors:
they check that collision rates track the similarity each family is built for.
"""

import itertools

import numpy as np
import pytest

from kernels import _core
from workbench.lsh import Hasher

FAMILIES = ["dwta", "wta", "srp", "minhash"]


def random_csr(rng, n, dim, max_nnz, negative=True):
    ip, ix, vx = [0], [], []
    for i in range(n):
        k = 0 if i == 0 else rng.integers(1, max_nnz + 1)  # first row empty
        idx = np.sort(rng.choice(dim, k, replace=False))
        val = rng.uniform(-1 if negative else 0.05, 1, k)
        ix += list(idx)
        vx += list(val)
        ip.append(len(ix))
    return np.array(ip, np.int64), np.array(ix, np.int32), np.array(vx, np.float32)


def densify(ip, ix, vx, dim):
    X = np.zeros((len(ip) - 1, dim), np.float32)
    for r in range(len(ip) - 1):
        X[r, ix[ip[r]:ip[r + 1]]] = vx[ip[r]:ip[r + 1]]
    return X


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dim,max_nnz", [(40, 40), (200, 15), (3000, 30)])
def test_sparse_and_dense_encodings_hash_identically(family, dim, max_nnz):
    rng = np.random.default_rng(dim)
    h = Hasher(family, dim=dim, K=3, L=16, seed=5)
    ip, ix, vx = random_csr(rng, 60, dim, max_nnz)
    dense = h.hash_dense(densify(ip, ix, vx, dim))
    sparse = h.hash_sparse(ip, ix, vx)
    np.testing.assert_array_equal(sparse, dense)
    assert dense.max() < (1 << h.params["bits"])


@pytest.mark.parametrize("family", FAMILIES)
def test_hash_is_deterministic_and_seeded(family):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 64)).astype(np.float32)
    a = Hasher(family, dim=64, K=4, L=10, seed=1).hash_dense(X)
    b = Hasher(family, dim=64, K=4, L=10, seed=1).hash_dense(X)
    c = Hasher(family, dim=64, K=4, L=10, seed=2).hash_dense(X)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.2


def pairs_at_cosine(rng, cos, n, dim):
    x = rng.standard_normal((n, dim))
    z = rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z -= (z * x).sum(axis=1, keepdims=True) * x
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = cos * x + np.sqrt(1 - cos**2) * z
    return x.astype(np.float32), y.astype(np.float32)


def collision_rate(h, x, y):
    return (h.hash_dense(x) == h.hash_dense(y)).mean()


def test_srp_collision_rate_is_one_minus_angle_over_pi():
    rng = np.random.default_rng(1)
    h = Hasher("srp", dim=128, K=1, L=1000, seed=3)
    for cos in (0.99, 0.9, 0.7, 0.3, 0.0, -0.5):
        x, y = pairs_at_cosine(rng, cos, 40, 128)
        want = 1 - np.arccos(cos) / np.pi
        got = collision_rate(h, x, y)
        # 40k bits: sampling sd < 0.003; sparse +-1 projections add a small bias
        assert abs(got - want) < 0.02, (cos, got, want)


@pytest.mark.parametrize("family", ["dwta", "wta"])
def test_wta_families_collide_more_when_more_similar(family):
    rng = np.random.default_rng(2)
    h = Hasher(family, dim=128, K=1, L=600, seed=4)
    cosines = (0.0, 0.5, 0.8, 0.95, 0.995)
    rates = []
    for cos in cosines:
        x, y = pairs_at_cosine(rng, cos, 40, 128)
        rates.append(collision_rate(h, x, y))
    # 24k comparisons per level: sd < 0.0035; require clear, monotone separation
    assert all(b - a > 0.03 for a, b in zip(rates, rates[1:])), rates
    # unrelated vectors collide at about the chance rate 1/bin_size
    assert abs(rates[0] - 1 / 8) < 0.03, rates
    x, _ = pairs_at_cosine(rng, 0.0, 10, 128)
    assert collision_rate(h, x, x) == 1.0


def test_minhash_collision_rate_tracks_jaccard():
    rng = np.random.default_rng(3)
    dim, size = 5000, 120
    h = Hasher("minhash", dim=dim, K=1, L=800, range_pow=18, seed=6)
    bits = h.params["bits"]
    for J in (0.1, 0.3, 0.6, 0.9):
        inter = int(round(2 * size * J / (1 + J)))
        rates = []
        for _ in range(20):
            pool = rng.choice(dim, 2 * size - inter, replace=False)
            a = np.sort(pool[:size])
            b = np.sort(np.concatenate([pool[:inter], pool[size:]]))
            X = np.zeros((2, dim), np.float32)
            X[0, a] = 1
            X[1, b] = rng.uniform(0.1, 1, len(b))  # weights do not matter, support does
            hh = h.hash_dense(X)
            rates.append((hh[0] == hh[1]).mean())
        j_exact = inter / (2 * size - inter)
        want = j_exact + (1 - j_exact) / 2**bits
        assert abs(np.mean(rates) - want) < 0.03, (J, np.mean(rates), want)


def test_compat_bucket_ids_reproduce_the_reference_shift():
    """The reference composes DWTA values with a shift of floor(ln 8) = 2 bits."""
    comp = Hasher("dwta", dim=16, K=6, L=1, range_pow=18, compat=True)
    right = Hasher("dwta", dim=16, K=6, L=1, range_pow=18)
    worked = np.array([[1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7], [0, 0, 0, 0, 0, 1]], np.uint32)
    # 1<<10 + 2<<8 + 3<<6 + 4<<4 + 5<<2 + 6 = 1818 ; 7 * (1+4+16+64+256+1024) = 9555
    assert comp.bucket_ids(worked)[:, 0].tolist() == [1818, 9555, 1]
    # the correct 3-bit shift: 1<<15 + 2<<12 + 3<<9 + 4<<6 + 5<<3 + 6 = 42798
    assert right.bucket_ids(worked)[:, 0].tolist() == [42798, 2**18 - 1, 1]
    everything = np.array(list(itertools.product(range(8), repeat=6)), np.uint32)
    assert len(np.unique(comp.bucket_ids(everything))) == 9556
    assert len(np.unique(right.bucket_ids(everything))) == 2**18


def test_bucket_ids_fold_when_hashes_carry_more_bits_than_the_table():
    h = Hasher("dwta", dim=16, K=8, L=1, range_pow=10)
    rng = np.random.default_rng(0)
    hv = rng.integers(0, 8, (4000, 8)).astype(np.uint32)
    ids = h.bucket_ids(hv)[:, 0]
    assert ids.max() < 1024
    # every hash value matters, including the first
    changed = hv.copy()
    changed[:, 0] = (changed[:, 0] + 1) % 8
    assert (h.bucket_ids(changed)[:, 0] != ids).mean() > 0.99
    # roughly uniform over buckets
    counts = np.bincount(ids, minlength=1024)
    assert counts.max() < 20


def test_fifo_table_keeps_the_last_inserted():
    rng = np.random.default_rng(0)
    bids = rng.integers(0, 16, 500).astype(np.uint32)
    off, ids = _core.build_table(bids, 4, 7, 0, 1)
    for b in range(16):
        members = np.flatnonzero(bids == b)
        np.testing.assert_array_equal(ids[off[b]:off[b + 1]], members[-7:])


def test_reservoir_table_keeps_a_uniform_sample():
    n, cap, runs = 60, 6, 3000
    bids = np.zeros(n, np.uint32)
    seen = np.zeros(n)
    for s in range(runs):
        off, ids = _core.build_table(bids, 1, cap, 1, s)
        assert off[1] - off[0] == cap and len(np.unique(ids)) == cap
        seen[ids] += 1
    p = cap / n
    expected = runs * p
    chi2 = ((seen - expected) ** 2 / (expected * (1 - p))).sum()
    # chi-square with n-1 = 59 degrees of freedom: 99.9th percentile is about 98
    assert chi2 < 98, chi2


def test_tables_hold_each_neuron_in_its_bucket():
    from workbench import Config, Network

    cfg = Config(n_features=20, n_labels=300, hidden=(16,), K=2, L=4, range_pow=5, bucket_size=5,
                 deterministic=True, init_std=0.5)
    net = Network(cfg)
    layer = net.layers[-1]
    hashes = net._engine.hash_vectors(1, np.ascontiguousarray(layer.logical_weights()))
    h = Hasher("dwta", dim=16, K=2, L=4, range_pow=5)
    h.params = layer.hasher
    bids = h.bucket_ids(hashes)
    nb = 1 << cfg.range_pow
    off = layer.tables["offsets"].reshape(cfg.L, nb + 1)
    for t in range(cfg.L):
        ids = layer.tables["ids"][t * cfg.n_labels:(t + 1) * cfg.n_labels]
        for b in range(nb):
            members = np.flatnonzero(bids[:, t] == b)
            np.testing.assert_array_equal(ids[off[t, b]:off[t, b + 1]], members[-cfg.bucket_size:])
