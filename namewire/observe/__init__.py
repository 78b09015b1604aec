"""Seeing inside a running cluster: `ClusterView` (services, rates, latencies, call graph, errors,
gathered by name through each node's ``namewire.stats``), the live web `Dashboard`, and the
terminal view of ``namewire top`` (`render_top`). Above the node layer: it only uses a `Node`."""

from ._view import ClusterView

__all__ = ["ClusterView"]
