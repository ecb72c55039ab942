"""minis2t2: Speech2Text2 (Wav2Vec2/HuBERT encoder + Speech2Text2 decoder) in plain NumPy.

    model = minis2t2.load("weights/<model>")
    print(model.translate("speech.wav"))

    model = minis2t2.random_init({"hidden_size": 64, ...}, {"d_model": 32, ...})  # new, untrained
    model.save_pretrained("my-model")
"""

import os as _os

# OpenBLAS (NumPy's matrix products) keeps its idle threads spinning for 2**28 cycles (about 0.1 s)
# after each product, on the cores that the next NumPy operations and backend's erf and layer-norm
# threads need. 2**4 lets them sleep at once: a training step of the demo model on 2 cores took
# 0.49 s -> 0.36 s (docs/performance.md). It acts only when NumPy is not loaded yet (import
# minis2t2 first, or set it yourself), and a value already in the environment is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .audio import load_audio
from .compare import compare
from .errors import AudioError, ConfigError, InputError, TraceError, WeightsError
from .initialisation import random_init
from .loading import load
from .model import GenerateOutput, Model, Seq2SeqOutput
from .trace import load_trace, trace
from .training import Training

__version__ = "0.1.0"
__all__ = ["AudioError", "ConfigError", "GenerateOutput", "InputError", "Model", "Seq2SeqOutput", "TraceError", "Training", "WeightsError",
           "compare", "load", "load_audio", "load_trace", "random_init", "trace"]
