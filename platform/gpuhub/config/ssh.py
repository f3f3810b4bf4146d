"""SSH into one's own server: the ``[ssh]`` table (the key rules: ``policy.sshkeys``; the gateway:
``hub.ssh``)."""

from __future__ import annotations

from traitlets import Integer, Unicode

from .sections import Section


class Ssh(Section):
    section_help = """SSH (key-only) into one's own running server: ``ssh -p PORT alice@HUB`` lands in a shell
    in alice's server container (uid 1000, her home, her GPUs and limits); ``sftp``/``scp`` and VS Code's
    Remote-SSH work. People add their public keys on their home page, through the REST API or with
    ``gpuhub ssh-key add``. Passwords are never accepted, nor root. A person whose server is not
    running is told to start it first (the gateway does not start servers). Off unless ``port`` is set."""

    port = Integer(
        0,
        help="""The port the hub's SSH gateway listens on; ``0``: no SSH. With docker-compose.yml keep
        ``2222`` (the hub container's port it publishes as ``GPUHUB_SSH_PORT``, default 2222, on
        ``GPUHUB_BIND``). Example: ``2222``.""",
        min=0,
        max=65535,
    ).tag(accepted="0 (off) or a port from 1 to 65535")

    public_port = Integer(
        0,
        help="""The port people connect to, where the host publishes the gateway on another than ``port``
        (docker-compose.yml maps the host's ``GPUHUB_SSH_PORT`` to the container's 2222); what the home
        page and ``gpuhub ssh-key list`` show. ``0``: ``port``. Example: ``22``.""",
        min=0,
        max=65535,
    ).tag(accepted="0 (as port) or a port from 1 to 65535")

    host = Unicode(
        "0.0.0.0",
        help="""The address the SSH gateway listens on, in the hub's container (or host). Example:
        ``"127.0.0.1"`` (only from the hub's host, e.g. behind another SSH jump host).""",
    ).tag(accepted="an IP address, or 0.0.0.0 for every interface")

    max_keys_per_user = Integer(
        20,
        help="""How many public keys one person may register. Example: ``10``.""",
        min=1,
        max=1000,
    ).tag(accepted="an integer from 1 to 1000")

    min_rsa_bits = Integer(
        3072,
        help="""The shortest RSA key accepted (ed25519 and ECDSA keys have fixed sizes). Example: ``4096``.""",
        min=2048,
        max=16384,
    ).tag(accepted="bits, from 2048 to 16384")
