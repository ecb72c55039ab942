"""minis2t2: Speech2Text2 (Wav2Vec2/HuBERT encoder + Speech2Text2 decoder) in plain NumPy.

    model = minis2t2.load("weights/<model>")
    print(model.translate("speech.wav"))

    model = minis2t2.random_init({"hidden_size": 64, ...}, {"d_model": 32, ...})  # new, untrained
    model.save_pretrained("my-model")
"""

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
