"""topz: the processes of a pod, over HTTP (the sidecar of Designing Distributed Systems)."""

__version__ = "0.1.0"
