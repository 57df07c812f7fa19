"""The package builds, imports and trains on CPUs without AVX-512, and never
executes an instruction the CPU lacks: checked by running it under qemu-user
emulating older CPUs (Haswell: AVX2 but no AVX-512; Nehalem: no AVX at all).

Skipped (with the reason) when qemu-x86_64 is not installed; CI installs it
and sets SLIDE_REQUIRE_QEMU=1, which turns a missing qemu into a failure.
"""

import os
import platform
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = shutil.which("qemu-x86_64")

if QEMU is None or platform.machine() != "x86_64":
    if os.environ.get("SLIDE_REQUIRE_QEMU") == "1":
        raise RuntimeError("SLIDE_REQUIRE_QEMU=1 but qemu-x86_64 is not installed (apt-get install qemu-user)")
    pytestmark = pytest.mark.skip(reason="qemu-x86_64 not installed (apt-get install qemu-user)")

TRAIN = """
import json, numpy as np
from workbench import Config, Network, synthetic, variants
from workbench.config import preset_hyperparams
train = synthetic.generate("tiny", "train"); test = synthetic.generate("tiny", "test")
net = Network(Config(n_features=train.n_features, n_labels=train.n_labels, threads=2, **preset_hyperparams("tiny")))
net.fit(train, epochs=6)
finite = all(np.isfinite(v).all() for v in net.state_arrays().values() if v.dtype.kind == "f")
print(json.dumps({"usable": sorted(variants.usable_isas()), "hardware": variants.hardware_isas(),
                  "kernels": {o: c.kernel.name for o, c in net.kernels.items()},
                  "p_at_1": net.evaluate(test)["p_at_1"], "finite": finite}))
"""


def qemu(cpu, args, env=None):
    e = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    for k in ("SLIDE_DISABLE_ISA", "SLIDE_ENABLE_ISA", "SLIDE_ISA", "SLIDE_FORCE_KERNELS"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([QEMU, "-cpu", cpu, sys.executable, *args], capture_output=True, text=True, env=e,
                          timeout=600)


@pytest.mark.parametrize("cpu,isa", [("Haswell", "avx2"), ("Nehalem", "scalar")])
def test_imports_and_trains_without_avx512(cpu, isa):
    import json

    r = qemu(cpu, ["-c", TRAIN])
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "avx512" not in out["hardware"] and "avx512_bf16" not in out["hardware"]
    assert out["kernels"]["fwd_rows"] == f"f32/{isa}"
    # 6 epochs: `tiny` rises steeply until about epoch 5, so 3 epochs (as before) gave P@1 0.18-0.30 from run
    # to run (the two threads race; under qemu too). After 6: 0.54-0.58 in 10 runs under each of Haswell and
    # Nehalem, 0.55-0.60 in 16 native runs with avx2 or scalar kernels; the most frequent label gives 0.10
    assert out["finite"] and out["p_at_1"] > 0.35, out


@pytest.mark.parametrize("how", [["--isa", "avx512"], ["--precision", "bf16", "--isa", "avx512_bf16"]])
def test_forcing_avx512_under_haswell_is_a_clear_error(how):
    r = qemu("Haswell", ["-m", "workbench", "train", "--preset", "tiny", "--no-eval", "--quiet", *how])
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "was requested but cannot run here: the CPU (or OS) lacks avx512f" in r.stderr
    assert "Traceback" not in r.stderr and "Illegal instruction" not in r.stderr


def test_forced_avx512_kernel_via_environment_is_refused():
    r = qemu("Haswell", ["-c", "from workbench import variants; variants.select('fp32')"],
             env={"SLIDE_FORCE_KERNELS": "fwd_rows=f32/avx512"})
    assert r.returncode != 0 and "cannot run here" in r.stderr and r.returncode != -4  # -4: SIGILL
