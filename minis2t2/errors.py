"""The base of minis2t2's own errors.

Every file, setting or array minis2t2 refuses raises a subclass of ``InputError`` (ConfigError,
WeightsError, AudioError, TraceError) whose one-line message names the file (and field) at
fault and what was expected. It subclasses ValueError, so ``except ValueError`` keeps working.
"""


class InputError(ValueError):
    """Something the user gave (a file, a setting, an array) that minis2t2 cannot use as it is."""
