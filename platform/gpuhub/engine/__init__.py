"""The engine seam: where a user's server runs, how it gets its devices, and how it is found again
after a hub restart (``base.Engine``). Today one implementation, ``docker.DockerEngine``: one Docker
host. docs/architecture.md says how Docker Swarm and Kubernetes would sit behind the same interface."""
