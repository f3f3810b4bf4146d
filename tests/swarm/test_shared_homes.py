"""Homes on shared storage on the Swarm (``[engine] homes = "shared"``; after ``test_hub_across_nodes``:
the same hub recreated with that setting, every server stopped). The shared storage is a folder of
this machine that every node's engine sees (the nodes are engines on this one machine): it stands in
for NFS or CephFS, which a site mounts at the same path on every node, because this kernel has no NFS
client. A user's files are there on whichever node their server lands, and a classroom session's
course folder is one folder for the whole roster, whatever node each student is on.
"""

from __future__ import annotations

from datetime import timedelta

import requests

from gpuhub.contract import iso, utcnow
from tests.swarm.swarmhub import live_allocations, server_gone, wait_nodes


def _exec(swarm_hub, user: str, *command: str) -> str:
    node, info = swarm_hub.container_of(user)
    return swarm_hub.cluster.node(node).docker("exec", info["Id"], *command).stdout


def _mount(info: dict, target: str) -> dict:
    return next(m for m in info["Mounts"] if m["Destination"] == target)


def test_shared_homes_follow_a_user_to_any_node_and_a_course_folder_is_one_for_the_roster(swarm_hub, user_image):
    shared = swarm_hub.cluster.dir / "shared-homes"
    shared.mkdir()
    swarm_hub.use_shared_homes(shared, user_image)
    wait_nodes(swarm_hub, lambda ns: all(n["takes_servers"] for n in ns))
    assert live_allocations(swarm_hub) == []
    # two GPUs: only worker1 has them; the home is a folder on the shared storage, made by the hub
    swarm_hub.start("rita", "gpu-2")
    swarm_hub.wait_ready("rita")
    node, info = swarm_hub.container_of("rita")
    home = _mount(info, "/home/jovyan")
    assert node == "worker1" and home["Type"] == "bind" and home["Source"].startswith(f"{shared}/")
    _exec(swarm_hub, "rita", "sh", "-c", "echo 'from worker1' > /home/jovyan/notes.txt")
    swarm_hub.stop("rita")  # and its container gone from worker1
    # one GPU: worker2 is the best fit; the same folder, so the same file
    swarm_hub.start("rita", "gpu-1")
    swarm_hub.wait_ready("rita")
    node, info = swarm_hub.container_of("rita")
    assert node == "worker2", f"the one-GPU start landed on {node}:\n{swarm_hub.logs(40)}"
    assert _mount(info, "/home/jovyan")["Source"] == home["Source"]
    assert _exec(swarm_hub, "rita", "cat", "/home/jovyan/notes.txt") == "from worker1\n"
    stat = (shared / home["Source"].rsplit("/", 1)[1]).stat()
    assert (stat.st_uid, oct(stat.st_mode & 0o777)) == (1000, "0o750")  # the image's user; not world-readable
    swarm_hub.stop("rita")
    # a session's course folder: the instructor writes it on one node, a student reads it on another
    now = utcnow()
    window = {"start": iso(now - timedelta(minutes=5)), "end": iso(now + timedelta(hours=2))}
    body = {"title": "Course", "profile": "gpu-1", "windows": [window], "shared_folder": True, "instructors": ["prof"]}
    swarm_hub.gpuhub("PUT", "/sessions/course", json=body, ok=(200, 201))
    r = requests.post(f"{swarm_hub.url}/hub/api/gpuhub/v1/sessions/course/roster", data=b"prof\nstu\n", timeout=60,
                      headers={"Authorization": f"token {swarm_hub.token}", "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    try:
        swarm_hub.start("prof", "gpu-1", session="course")
        swarm_hub.wait_ready("prof")
        swarm_hub.start("stu", "gpu-1", session="course")
        swarm_hub.wait_ready("stu")
        nodes = {swarm_hub.container_of(u)[0] for u in ("prof", "stu")}
        assert nodes == {"worker1", "worker2"}, nodes
        _exec(swarm_hub, "prof", "sh", "-c", "echo 'week 1' > /srv/course/README")
        assert _exec(swarm_hub, "stu", "cat", "/srv/course/README") == "week 1\n"
        student = swarm_hub.cluster.node(swarm_hub.container_of("stu")[0])
        refused = student.docker("exec", swarm_hub.container_of("stu")[1]["Id"], "sh", "-c", "echo x > /srv/course/README", check=False)
        assert refused.returncode != 0 and "Read-only" in refused.stderr  # students read the course folder only
        assert _mount(swarm_hub.container_of("stu")[1], "/srv/course")["Source"] == f"{shared}/gpuhub-course-course"
    finally:
        for user in ("prof", "stu"):
            if swarm_hub.api("DELETE", f"/users/{user}/server", ok=(202, 204, 400, 404)).status_code != 404:
                server_gone(swarm_hub, user)
        swarm_hub.gpuhub("DELETE", "/sessions/course", ok=(200, 204))
    assert live_allocations(swarm_hub) == []
