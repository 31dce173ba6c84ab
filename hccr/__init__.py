"""hccr: handwritten Chinese character recognition, from CASIA-HWDB to a distilled recogniser."""

__version__ = "0.1.0"
