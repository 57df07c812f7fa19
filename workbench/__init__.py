"""slide-workbench: SLIDE (sub-linear deep learning engine) on CPUs.

Train extreme-classification networks whose output layer is sampled by
locality-sensitive hashing, on interchangeable scalar / SIMD kernels, and
measure what each kernel optimisation buys.

    >>> from workbench import Config, Network, synthetic
    >>> train = synthetic.generate("tiny", "train")
    >>> net = Network(Config(n_features=train.n_features, n_labels=train.n_labels))
"""

__version__ = "0.1.0"

from . import synthetic  # noqa: E402
from .config import Config, ConfigError  # noqa: E402
from .data import Dataset, DataFormatError, load_xc, write_xc  # noqa: E402
from .network import Network  # noqa: E402
from .runtime import report as runtime_report  # noqa: E402
from .runtime import show_runtime  # noqa: E402

__all__ = ["Config", "ConfigError", "Dataset", "DataFormatError", "Network", "load_xc", "write_xc", "synthetic",
           "show_runtime", "runtime_report", "__version__"]
