"""gpuhub-netguard: puts each user container's network rules (``policy.network``) into its own network
namespace as it starts, and tells the container's start they are there. One per Docker host, beside
the engine (docker-compose.yml's ``netguard`` service; the test harness runs it as a host process; on a
Swarm the hub deploys it on every other node, ``policy.services.netguard_spec``, told the hub's address).

- ``places``: what a container's surroundings are, read from the engine's answers and ``/proc`` files
  (pure parsers of their text, and the reads).
- ``guard``: the service: the engine's start events, the rules written with ``nsenter ...
  iptables-restore``, the marker (or the refusal) put into the container, a full pass at start and
  whenever the hub's container starts (its address may have changed).
"""
