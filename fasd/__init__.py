"""fasd: distil a vision-language face anti-spoofing teacher into a phone-sized student."""

from importlib.metadata import version

__version__ = version("fasd")  # one home: pyproject.toml's [project] version
