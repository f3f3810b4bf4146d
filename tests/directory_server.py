"""A real LDAP directory for the tests: Debian's OpenLDAP ``slapd``, started on loopback with its own
configuration and database in a temporary folder (``DirectoryServer``), seeded with people and
groups; changed as a directory admin would (``ldap3``, bound as the root DN).

    with DirectoryServer(tmp_path) as directory:
        directory.add_person("alice", "alice-password", groups=["ml-lab"])
        directory.remove_member("ml-lab", "alice")
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import ldap3

from tests.hubprocess import USER_IMAGE, free_port

SUFFIX = "dc=example,dc=org"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "directory-admin-password"
PEOPLE, GROUPS = f"ou=people,{SUFFIX}", f"ou=groups,{SUFFIX}"
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"

# The site both directory logins (LDAP, OIDC) are tested on: a GPU profile and a quota for ml-lab only
ML_LAB_PROFILE = f'''
[[profiles]]
name = "lab-gpu"
image = "{USER_IMAGE}"
gpus = 1
gpu_mode = "exclusive"
groups = ["ml-lab"]
'''
ML_LAB_QUOTAS = '''
[[quotas]]
max_gpus = 0

[[quotas]]
group = "ml-lab"
max_gpus = 2
gpu_hours_per_week = 40
'''

CONFIG = """include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder}/slapd.pid
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {folder}/data
"""

SEED = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example University

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups
"""


def missing() -> str:
    """What this machine lacks to run the directory, or ""."""
    if not Path(SLAPD).exists():
        return "slapd is not installed (apt-get install slapd ldap-utils; `bash scripts/test` does it)"
    return ""


class DirectoryServer:
    def __init__(self, folder: Path, host: str = "127.0.0.1"):
        """``host``: the address it listens on (loopback; ``benchmarks/load.py`` gives the engine's
        default bridge gateway, a host address a composed hub's container reaches)."""
        self.folder, self.host = Path(folder), host
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> DirectoryServer:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "slapd.conf"
        conf.write_text(CONFIG.format(folder=self.folder, suffix=SUFFIX, root_dn=ROOT_DN, root_password=ROOT_PASSWORD))
        seed = self.folder / "seed.ldif"
        seed.write_text(SEED)
        if not (self.folder / "data" / "data.mdb").exists():
            subprocess.run(["slapadd", "-f", str(conf), "-l", str(seed)], check=True, capture_output=True)
        log = open(self.folder / "slapd.log", "ab")
        # -d 0: in the foreground (its own process, stopped at the end), no debug output
        self.process = subprocess.Popen([SLAPD, "-f", str(conf), "-h", f"ldap://{self.host}:{self.port}/", "-d", "0"],
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.admin().unbind()
                return self
            except ldap3.core.exceptions.LDAPException:
                if self.process.poll() is not None:
                    raise RuntimeError(f"slapd exited: {(self.folder / 'slapd.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        raise RuntimeError("slapd did not answer within 20 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test paused it
            self.process.terminate()
            self.process.wait(20)

    def pause(self) -> None:
        """Stop answering (SIGSTOP): connections are accepted by the kernel, and nothing comes back."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- as the directory's admin --------------------------------------------------------------
    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.host, port=self.port, connect_timeout=2)
        return ldap3.Connection(server, user=ROOT_DN, password=ROOT_PASSWORD, auto_bind=True, receive_timeout=5)

    def add_person(self, uid: str, password: str, groups: tuple[str, ...] = ()) -> str:
        dn = f"uid={uid},{PEOPLE}"
        conn = self.admin()
        assert conn.add(dn, ["inetOrgPerson"], {"cn": uid, "sn": uid, "uid": uid, "userPassword": password}), conn.result
        conn.unbind()
        for group in groups:
            self.add_member(group, uid)
        return dn

    def add_member(self, group: str, uid: str) -> None:
        conn = self.admin()
        group_dn, member = f"cn={group},{GROUPS}", f"uid={uid},{PEOPLE}"
        if not conn.search(group_dn, "(objectClass=groupOfNames)", search_scope=ldap3.BASE):
            assert conn.add(group_dn, ["groupOfNames"], {"cn": group, "member": [member]}), conn.result
        else:
            assert conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member])]}), conn.result
        conn.unbind()

    def remove_member(self, group: str, uid: str) -> None:
        conn = self.admin()
        assert conn.modify(f"cn={group},{GROUPS}", {"member": [(ldap3.MODIFY_DELETE, [f"uid={uid},{PEOPLE}"])]}), conn.result
        conn.unbind()

    def settings(self, **keys) -> str:
        """An ``[ldap]`` table for this directory (plain LDAP), with more ``keys``."""
        table = {
            "server_address": f'"{self.host}"', "port": str(self.port), "tls": '"insecure"',
            "bind_dn_templates": f'["uid={{username}},{PEOPLE}"]', "group_search_base": f'"{GROUPS}"', **keys,
        }
        return "[ldap]\n" + "".join(f"{key} = {value}\n" for key, value in table.items())
