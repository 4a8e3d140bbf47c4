"""claudegate gateway service.

Runs behind nginx, holds the upstream Anthropic key, and admits clients that
present gateway-issued keys.
"""

__version__ = "0.1.0"
