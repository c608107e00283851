"""fasd: distil a vision-language face anti-spoofing teacher into a phone-sized student."""

__version__ = "0.1.0"
