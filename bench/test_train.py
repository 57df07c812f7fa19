"""End-to-end training throughput on the Amazon-670K-shaped default.

Each benchmark round trains on fresh batches of the same network (built once
per parameter set): rounds are consecutive slices of an epoch, so the
network keeps learning as in a real run. extra_info carries samples/s, the
time split per phase, the LSH active-set size and peak RSS.

    pytest bench/test_train.py --benchmark-only --benchmark-save=train
"""

import pytest

from workbench import Config, Network, memory, synthetic
from workbench.config import preset_hyperparams

ROUND_BATCHES = 16


@pytest.fixture(scope="module")
def data(scale):
    preset = "amazon670k" if scale == "full" else "small"
    n = 40 * 128 * ROUND_BATCHES if scale == "full" else None
    return preset, synthetic.generate(preset, "train", n=n)


@pytest.mark.parametrize("compat", [False, True], ids=["default", "compat"])
@pytest.mark.parametrize("threads", [1, 2])
def test_train_throughput(benchmark, data, threads, compat):
    preset, train = data
    cfg = Config(n_features=train.n_features, n_labels=train.n_labels, threads=threads, compat=compat,
                 **preset_hyperparams(preset))
    net = Network(cfg)
    per_round = ROUND_BATCHES * cfg.batch_size
    net.fit(train, max_samples=2 * cfg.batch_size)  # warm-up: touch the pages, fill caches
    stats = {}

    def one_round():
        stats.update(net.fit(train, max_samples=per_round))

    benchmark.group = f"train/{preset}"
    benchmark.pedantic(one_round, rounds=3, iterations=1)
    benchmark.extra_info.update({
        "variant": f"{cfg.precision}/{net.kernels['fwd_rows'].kernel.name}",
        "threads": threads, "compat": compat, "samples_per_round": per_round,
        "samples_per_s_last_round": stats["samples_per_s"],
        "time_split_last_round": stats["time_split"],
        "mean_active_output": stats["lsh"]["mean_active"][-1],
        "peak_rss_bytes": memory.peak_rss_bytes(),
        "kernels": {op: c.kernel.name for op, c in net.kernels.items()},
    })
