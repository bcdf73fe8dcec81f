"""directcall: self-hosted in-app voice calling for Django."""

__version__ = "0.1.0"
