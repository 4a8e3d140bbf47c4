"""claudegate: deploy a hardened gateway in front of the Anthropic API.

The core (config, playbooks, connectors, rendering, smoke tests) imports no
UI library; the typer CLI and the Textual wizard are thin front ends over it.
"""

__version__ = "0.1.0"
