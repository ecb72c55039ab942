"""minis2t2's own errors, in one room.

Every file, setting or array minis2t2 refuses raises a subclass of ``InputError`` whose one-line
message names the file (and field) at fault and what was expected. It subclasses ValueError, so
``except ValueError`` keeps working. The command line turns each into one line on stderr and
exit status 2.
"""


class InputError(ValueError):
    """Something the user gave (a file, a setting, an array) that minis2t2 cannot use as it is."""


class ConfigError(InputError):
    """A config.json (or preprocessor, tokenizer or generation config) that minis2t2 cannot run faithfully."""


class WeightsError(InputError):
    """A weights file that is not what its config describes, or not a well-formed file at all."""


class AudioError(InputError):
    """An audio file or array that cannot be read as speech."""


class TraceError(InputError):
    """A trace file (``minis2t2 trace`` / ``compare``) that does not follow docs/verify-your-implementation.md."""
