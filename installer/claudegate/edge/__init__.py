"""The NGINX edge: settings and the pure renderer of its configuration.

>>> from claudegate.edge import EdgeSettings, render_edge
>>> files = render_edge(EdgeSettings(domain="gw.example.com"))
>>> sorted(files)[:2]
['claudegate.conf', 'nginx.conf']

Nothing here imports a UI library, a connector or Docker: rendering is a pure
function of the settings and the templates in ``assets/nginx``.
"""

from claudegate.edge.render import TEMPLATES_DIR, EdgeError, edge_errors, render_edge, write_edge
from claudegate.edge.settings import EdgeSettings, RateLimit

__all__ = [
    "TEMPLATES_DIR",
    "EdgeError",
    "EdgeSettings",
    "RateLimit",
    "edge_errors",
    "render_edge",
    "write_edge",
]
