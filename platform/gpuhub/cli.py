"""``gpuhub``: the admin and sessions REST API from a terminal.

    gpuhub gpus
    gpuhub free 0                       (a GPU index, 0:1 for a MIG slice, or a UUID)
    gpuhub quota show [--user NAME | --group NAME]
    gpuhub quota set --group ml-lab --max-gpus 2 --gpu-hours-per-week 40 --profiles cpu,gpu-1
                                        (any [[quotas]] key as --its-name VALUE)
    gpuhub quota unset --group ml-lab
    gpuhub usage --since 2026-11-01 [--until 2026-11-08] [--by group] [--csv] [--records]
    gpuhub queue [--remove TICKET]
    gpuhub session list | show NAME | delete NAME | prewarm NAME | stop NAME
    gpuhub session create NAME --profile gpu-1 --window 2026-11-23T09:00Z/2026-11-23T11:00Z
                          [--title T] [--devices 0,1] [--datasets D] [--prewarm-minutes 10]
                          [--shared-folder] [--group-work] [--stop-at-end] [--instructors a,b]
    gpuhub session roster NAME roster.csv
    gpuhub ssh-key list | add ~/.ssh/id_ed25519.pub | remove ID [--user NAME]   (SSH into your server)
    gpuhub job submit --profile gpu-1 [--wall-time SECONDS] [--name N] [--workdir DIR] train.py -- --epochs 3
    gpuhub job list [--all] | show ID | logs ID [--follow] | cancel ID   [--user NAME]   (batch jobs)
    gpuhub nodes                        (a Swarm's nodes: state, GPUs, held)
    gpuhub home list | move USER NODE   (a Swarm with homes on the nodes)
    gpuhub backup [--to DIR] [--site DIR]        (in the hub's container: scripts/backup)
    gpuhub restore ARCHIVE [--replace | --check] (in a one-off hub container: scripts/restore)

``backup`` and ``restore`` work on the hub's own files and engine, not over the API (no token;
docs/admin.md, "Backup and restore"). The others talk to ``$GPUHUB_URL`` (default ``http://127.0.0.1:8000``) with the token in ``$GPUHUB_TOKEN``
or ``$JUPYTERHUB_API_TOKEN``: a token of a user or service with the ``gpuhub-admin`` role
(``gpuhub-viewer``: reading only; ``session`` needs ``gpuhub-instructor``), made on the hub's
``/hub/token`` page, or on the hub's host with ``docker-compose exec -T hub jupyterhub token NAME``
(docs/admin.md, "API tokens"). On the hub's host, in the compose setup:
``docker-compose exec -e GPUHUB_TOKEN=... hub gpuhub gpus``.
The API's errors are printed as they come (the field and what is accepted), exit status 1; a usage
mistake exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

PREFIX = "/hub/api/gpuhub/v1/"


def hub_url(environ) -> str:
    """Where the hub is: ``$GPUHUB_URL``; inside a user's server, the hub as the server reaches it
    (``$JUPYTERHUB_API_URL`` without its ``/hub/api``: the site's public name may be the host's own
    address, which a server may not reach); else ``http://127.0.0.1:8000``."""
    if environ.get("GPUHUB_URL"):
        return environ["GPUHUB_URL"]
    api = environ.get("JUPYTERHUB_API_URL", "")
    return api.removesuffix("/").removesuffix("/hub/api") if api.rstrip("/").endswith("/hub/api") else "http://127.0.0.1:8000"
TOKEN_HELP = (
    "GPUHUB_URL: the hub (default: in a server the hub as it reaches it, else http://127.0.0.1:8000). GPUHUB_TOKEN (or JUPYTERHUB_API_TOKEN): an API token of a"
    " user or service with the gpuhub-admin role (gpuhub-viewer: reading only; session needs gpuhub-instructor),"
    " made on the hub's /hub/token page, or on the hub's host with `docker-compose exec -T hub jupyterhub token NAME`"
    ' (docs/admin.md, "API tokens").'
)


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None, raw: bool = False, csv: bytes | None = None, prefix: str = PREFIX):
        data = json.dumps(body).encode() if body is not None else csv
        request = urllib.request.Request(self.url + prefix + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json" if body is not None else "text/csv")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                message = json.loads(text).get("message") or text
            except ValueError:
                message = text
            raise ApiError(f"{e.code}: {message}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach the hub at {self.url} ({e.reason}); set GPUHUB_URL") from None
        if raw:
            return text
        return json.loads(text) if text else None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _size(v) -> str:
    return "" if v is None else f"{v / 1024**3:g}G"


def cmd_gpus(client: Client, args) -> str:
    data = client.call("GET", "gpus")
    rows = [["#", "DEVICE", "UUID", "STATE", "HOLDER", "SINCE", "MEMORY"]]
    for d in data["devices"]:
        holders = ", ".join(f"{h['user']}{':' + h['server'] if h['server'] else ''}" for h in d["holders"])
        since = ", ".join(h["since"] for h in d["holders"])
        used = "" if d["memory_used"] is None else _size(d["memory_used"]) + " / "
        rows.append([d["index"], d["name"], d["uuid"], d["state"], holders, since, used + _size(d["memory_total"])])
    head = f"inventory: {data['source']}" + (" — SIMULATED, not real GPUs" if data["simulated"] else "")
    return head + "\n" + _table(rows)


def cmd_free(client: Client, args) -> str:
    data = client.call("POST", f"gpus/{urllib.parse.quote(args.device, safe='')}/free")
    if not data["freed"]:
        return f"{data['device']}: nothing held it"
    return "\n".join(f"freed allocation {h['allocation']} of {h['user']} on {data['device']}" for h in data["freed"])


def _target(args) -> str:
    if args.user:
        return f"user/{urllib.parse.quote(args.user, safe='')}"
    if args.group:
        return f"group/{urllib.parse.quote(args.group, safe='')}"
    return "default"


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # the API names the field and what it accepts


def cmd_quota(client: Client, args) -> str:
    if args.action == "show":
        if args.user:
            data = client.call("GET", f"users/{urllib.parse.quote(args.user, safe='')}/quota")
            rows = [["LIMIT", "VALUE", "FROM"]]
            for f, limit in data["limits"].items():
                v = limit["value"]
                rows.append([f, "no limit" if v is None else (",".join(v) if isinstance(v, list) else v), limit["source"]])
            remaining = data["gpu_hours_remaining"]
            return _table(rows) + f"\nGPU-hours used ({data['week']} week): {data['gpu_hours_used']:.2f}" + (
                "" if remaining is None else f", {remaining:.2f} remain"
            )
        data = client.call("GET", "quotas")
        fields = data["fields"]
        rows = [["SCOPE", "NAME", *(f.upper() for f in fields), "FROM"]]
        for r in data["rules"]:
            if args.group and (r["scope"], r["name"]) != ("group", args.group):
                continue
            values = [("" if r[f] is None else ",".join(r[f]) if isinstance(r[f], list) else _size(r[f]) if f == "max_memory" else r[f]) for f in fields]
            rows.append([r["scope"], r["name"] or "(everyone)", *values, r["origin"]])
        return _table(rows)
    if args.action == "set":
        body = {f: [p for p in value.split(",") if p] if f == "profiles" else _number(value) for f, value in args.limits.items()}
        if not body:
            raise ApiError("quota set: give at least one limit, e.g. --max-gpus 2")
        data = client.call("PUT", "quotas/" + _target(args), body)
        return "set " + " ".join(f"{k}={data[k]}" for k in body if data.get(k) is not None)
    client.call("DELETE", "quotas/" + _target(args))
    return f"removed the {_target(args).replace('/', ' ')} quota (the settings file's applies again)"


def cmd_usage(client: Client, args) -> str:
    query = {"by": args.by}
    if args.since:
        query["since"] = args.since
    if args.until:
        query["until"] = args.until
    if args.csv or args.records:
        query["format"] = "csv"
        if args.records:
            query["records"] = "true"
        return client.call("GET", "usage?" + urllib.parse.urlencode(query), raw=True).rstrip("\n")
    data = client.call("GET", "usage?" + urllib.parse.urlencode(query))
    rows = [[args.by.upper(), "GPU-HOURS"]] + [[t[args.by], f"{t['gpu_hours']:.2f}"] for t in data["totals"]]
    return f"{data['since']} to {data['until']}\n" + _table(rows)


def cmd_queue(client: Client, args) -> str:
    if args.remove is not None:
        client.call("DELETE", f"queue/{args.remove}")
        return f"removed ticket {args.remove} from the line"
    data = client.call("GET", "queue")
    rows = [["TICKET", "WHO", "PROFILE", "LINE", "PLACE", "SINCE"]]
    rows += [[q["ticket"], q["holder"], q["profile"], q["pool"], f"{q['position']} of {q['in_line']}", q["since"]] for q in data["waiting"]]
    return _table(rows) if len(rows) > 1 else "nobody waits for a GPU"


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def cmd_session(client: Client, args) -> str:
    path = f"sessions/{urllib.parse.quote(args.name or '', safe='')}"
    if args.action == "list":
        data = client.call("GET", "sessions")
        rows = [["NAME", "TITLE", "PROFILE", "NOW", "NEXT START", "ROSTER", "START LINK"]]
        for s in data["sessions"]:
            now = f"open until {s['open_until']}" if s["open_now"] else "closed"
            rows.append([s["name"], s["title"], s["profile"], now, s["next_start"] or "", s["roster_size"], s["start_link"]])
        return _table(rows) if len(rows) > 1 else "no session"
    if not args.name:
        raise ApiError(f"session {args.action}: give the session's name")
    if args.action == "show":
        data = client.call("GET", path)
        windows = ", ".join(f"{w['start']} to {w['end']}" for w in data["windows"])
        rows = [["USERNAME", "NAME", "EMAIL", "SERVER"]]
        for r in data["roster"]:
            server = ("running for the session" if r["server"]["session"] == data["name"] else "running") if r["server"]["running"] else "stopped"
            rows.append([r["username"], r["name"], r["email"], server])
        head = f"{data['name']} ({data['title']}): profile {data['profile']}; windows {windows}; devices {','.join(data['devices']) or 'none'}"
        return head + "\n" + (_table(rows) if len(rows) > 1 else "(empty roster)")
    if args.action == "create":
        windows = []
        for w in args.window or []:
            start, _, end = w.partition("/")
            windows.append({"start": start, "end": end})
        body = {"profile": args.profile, "windows": windows, "title": args.title or "", "devices": _names(args.devices),
                "datasets": _names(args.datasets), "instructors": _names(args.instructors), "prewarm_minutes": args.prewarm_minutes,
                "shared_folder": args.shared_folder, "group_work": args.group_work, "stop_at_end": args.stop_at_end}
        data = client.call("PUT", path, body)
        return f"saved session {data['name']}; students start it at {data['start_link']}"
    if args.action == "roster":
        if not args.file:
            raise ApiError("session roster: give the CSV file, e.g. gpuhub session roster ml101 roster.csv")
        with open(args.file, "rb") as f:
            report = client.call("POST", path + "/roster", csv=f.read())
        lines = [
            f"{report['added']} added, {report['already_present']} already present,"
            f" {report['duplicates']} duplicate row(s), {report['invalid']} invalid row(s)"
        ]
        lines += [f"row {r['row']}: {r['reason']}" for r in report["duplicate_rows"] + report["invalid_rows"]]
        return "\n".join(lines)
    if args.action in ("prewarm", "stop"):
        client.call("POST", f"{path}/{args.action}")
        return f"asked the agent to {args.action} the servers of {args.name}: done within seconds (the hub log has its report)"
    client.call("DELETE", path)
    return f"deleted session {args.name} (its group, users and their files stay)"


def cmd_nodes(client: Client, args) -> str:
    data = client.call("GET", "nodes")
    if not data["nodes"]:
        return f"engine {data['engine']}: one host, no nodes"
    rows = [["NODE", "ROLE", "STATE", "AVAILABILITY", "GPUS", "HELD", "TAKES SERVERS", "INVENTORY"]]
    for n in data["nodes"]:
        takes = "yes" if n["takes_servers"] else f"no: {n['why_not']}"
        source = n["source"] + (" (SIMULATED)" if n["simulated"] else "")
        rows.append([n["hostname"], n["role"], n["state"], n["availability"], n["gpus"], n["gpus_held"], takes, source])
    return _table(rows)


def cmd_home(client: Client, args) -> str:
    if args.action == "list":
        homes = client.call("GET", "homes")["homes"]
        return _table([["USER", "NODE", "SINCE"]] + [[h["user"], h["node"], h["since"]] for h in homes]) if homes else "no homes on nodes"
    if not args.user or not args.node:
        raise ApiError("home move needs USER and NODE")
    home = client.call("POST", f"homes/{urllib.parse.quote(args.user, safe='')}/move", {"to": args.node})
    return f"{home['user']}'s home is now on {home['node']} (the old copy stays on the old node until you remove it there)"


def _persons(client: Client, args, what: str) -> tuple[str, str]:
    """Whose (``--user``, else the token's owner) and the API path of their ``what``."""
    user = args.user or client.call("GET", "user", prefix="/hub/api/")["name"]
    return user, f"users/{urllib.parse.quote(user, safe='')}/{what}"


def cmd_ssh_key(client: Client, args) -> str:
    user, path = _persons(client, args, "ssh-keys")
    if args.action == "add":
        if not args.key:
            raise ApiError("ssh-key add needs the public key file (~/.ssh/id_ed25519.pub), or - to read it from stdin")
        try:
            text = sys.stdin.read() if args.key == "-" else open(args.key, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            raise ApiError(f"cannot read {args.key}: {e}") from None
        key = client.call("POST", path, {"key": text})
        return f"added for {user}: {key['algorithm']} {key['fingerprint']} {key['comment']}".rstrip()
    if args.action == "remove":
        if not args.key or not args.key.isdigit():
            raise ApiError("ssh-key remove needs the key's number (ID in `gpuhub ssh-key list`)")
        client.call("DELETE", f"{path}/{args.key}")
        return f"removed key {args.key} of {user}"
    data = client.call("GET", path)
    where = f"ssh -p {data['ssh']['port']} {user}@HUB" if data["ssh"]["enabled"] else "SSH is off on this hub ([ssh] port)"
    rows = [["ID", "KEY", "FINGERPRINT", "ADDED", "LAST USED"]]
    rows += [[k["id"], f"{k['algorithm']} {k['comment']}".rstrip(), k["fingerprint"], k["added"], k["last_used"] or "never"] for k in data["keys"]]
    return (_table(rows) if len(rows) > 1 else f"{user} has no SSH key") + f"\n{where}"


def cmd_job(client: Client, args) -> str:
    user, path = _persons(client, args, "jobs")
    if args.action == "submit":
        if not args.target:
            raise ApiError("job submit needs the script (train.py, run.ipynb) or program, in your gpuhub home")
        body = {"command": [args.target, *args.script_args]}
        for field in ("profile", "wall_time", "name", "workdir"):
            if getattr(args, field) is not None:
                body[field] = getattr(args, field)
        job = client.call("POST", path, body)
        return f"job {job['id']} queued for {user} ({job['profile']}): {job['name']}; output in {job['output']}"
    if args.action == "list":
        jobs = client.call("GET", "jobs" if args.all else path)["jobs"]
        rows = [["ID", "USER", "NAME", "PROFILE", "STATE", "SUBMITTED", "STARTED", "ENDED", "EXIT", "GPU-H"]]
        rows += [
            [j["id"], j["user"], j["name"], j["profile"], j["state"], j["submitted"], j["started"] or "", j["ended"] or "",
             "" if j["exit_code"] is None else j["exit_code"], "" if j["gpu_hours"] is None else f"{j['gpu_hours']:.2f}"]
            for j in jobs
        ]
        return _table(rows) if len(rows) > 1 else f"{'nobody' if args.all else user} has no job"
    if not args.target or not args.target.isdigit():
        raise ApiError(f"job {args.action} needs the job's number (ID in `gpuhub job list`)")
    one = f"{path}/{args.target}"
    if args.action == "cancel":
        job = client.call("DELETE", one)
        return f"job {job['id']} of {user}: cancel asked ({'taken out of its line' if job['state'] == 'queued' else 'stopping'})"
    if args.action == "logs":
        if args.follow:
            return _follow(client, one)
        text = client.call("GET", f"{one}/output", raw=True)
        return text[:-1] if text.endswith("\n") else text  # print adds it back: the output as it is
    job = client.call("GET", one)
    return "\n".join(f"{k}: {v}" for k, v in job.items())


def _follow(client: Client, path: str) -> str:
    """Print the job's output as it comes until the job ends; its state last."""
    import time

    shown = ""
    while True:
        job = client.call("GET", path)
        text = client.call("GET", f"{path}/output", raw=True)
        new = text[len(shown):] if text.startswith(shown) else text  # the kept end moved on: print it whole
        if new:
            print(new, end="", flush=True)
            shown = text
        if job["ended"]:
            return f"-- job {job['id']} {job['state']}" + (f": {job['reason']}" if job["reason"] else "")
        time.sleep(2)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpuhub", description="gpuhub admin: GPUs, quotas, usage, queue, sessions (over the hub's REST API)", epilog=TOKEN_HELP
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("gpus", help="every GPU and MIG slice, its state and holder").set_defaults(run=cmd_gpus)
    free = sub.add_parser("free", help="force-free a device (its holders' servers stop; files kept)")
    free.add_argument("device", help="a GPU index (0), a MIG slice (0:1) or a UUID")
    free.set_defaults(run=cmd_free)
    quota = sub.add_parser("quota", help="show, set or unset quotas")
    quota.add_argument(
        "action", choices=["show", "set", "unset"],
        help="set takes the limits as --max-gpus 2, --max-memory 64G, --profiles cpu,gpu-1, ...: any [[quotas]] key (the hub names a wrong one)",
    )
    who = quota.add_mutually_exclusive_group()
    who.add_argument("--user")
    who.add_argument("--group")
    quota.set_defaults(run=cmd_quota)
    usage = sub.add_parser("usage", help="GPU-hours per user or group")
    usage.add_argument("--since", help="2026-11-01 (UTC); default 7 days ago")
    usage.add_argument("--until", help="exclusive; default now")
    usage.add_argument("--by", choices=["user", "group"], default="user")
    usage.add_argument("--csv", action="store_true", help="totals as CSV")
    usage.add_argument("--records", action="store_true", help="every usage record as CSV")
    usage.set_defaults(run=cmd_usage)
    queue = sub.add_parser("queue", help="who waits for a GPU")
    queue.add_argument("--remove", type=int, metavar="TICKET", help="take a spawn out of the line")
    queue.set_defaults(run=cmd_queue)
    session = sub.add_parser("session", help="classroom sessions: list, show, create, roster, prewarm, stop, delete")
    session.add_argument("action", choices=["list", "show", "create", "roster", "prewarm", "stop", "delete"])
    session.add_argument("name", nargs="?")
    session.add_argument("file", nargs="?", help="roster: the CSV file (username[,name[,email]])")
    session.add_argument("--profile")
    session.add_argument("--window", action="append", metavar="START/END", help="repeatable: 2026-11-23T09:00Z/2026-11-23T11:00Z")
    session.add_argument("--title")
    session.add_argument("--devices", help="GPUs to reserve: 0,1 (indexes, 0:1 for a MIG slice, or UUIDs)")
    session.add_argument("--datasets")
    session.add_argument("--instructors")
    session.add_argument("--prewarm-minutes", type=int, default=0)
    session.add_argument("--shared-folder", action="store_true")
    session.add_argument("--group-work", action="store_true", help="its students' servers may reach each other ([network] isolation)")
    session.add_argument("--stop-at-end", action="store_true")
    session.set_defaults(run=cmd_session)
    ssh_key = sub.add_parser("ssh-key", help="your public keys for SSH into your server: list, add FILE (or -), remove ID")
    ssh_key.add_argument("action", choices=["list", "add", "remove"])
    ssh_key.add_argument("key", nargs="?", help="add: the .pub file (- for stdin); remove: the key's ID")
    ssh_key.add_argument("--user", help="another person's keys (a GPU admin's token); default: the token's owner")
    ssh_key.set_defaults(run=cmd_ssh_key)
    job = sub.add_parser("job", help="batch jobs: submit a script or notebook to run when its GPUs are free; list, show, logs, cancel")
    job.add_argument("action", choices=["submit", "list", "show", "logs", "cancel"])
    job.add_argument("target", nargs="?", help="submit: the script or notebook in your home (arguments after --); else the job's ID")
    job.add_argument("--profile", help="submit: the profile to run with (default: the hub's default profile)")
    job.add_argument("--wall-time", type=int, metavar="SECONDS", help="submit: stop it after this long (default: your limit)")
    job.add_argument("--name", help="submit: a name to list it by (default: the script's)")
    job.add_argument("--workdir", help="submit: the folder in your home it runs in (default: the home)")
    job.add_argument("--follow", "-f", action="store_true", help="logs: print the output as it comes until the job ends")
    job.add_argument("--all", action="store_true", help="list: everyone's (a GPU viewer's token)")
    job.add_argument("--user", help="another person's jobs (a GPU admin's token); default: the token's owner")
    job.set_defaults(run=cmd_job)
    sub.add_parser("nodes", help="a Swarm's nodes: state, GPUs, what they hold, whether they take servers").set_defaults(run=cmd_nodes)
    home = sub.add_parser("home", help="a Swarm with homes on the nodes: where homes are; move one (its servers stopped)")
    home.add_argument("action", choices=["list", "move"])
    home.add_argument("user", nargs="?")
    home.add_argument("node", nargs="?", help="move: the node's hostname")
    home.set_defaults(run=cmd_home)
    backup = sub.add_parser("backup", help="the hub's database, state, settings and every home into one archive (run in the hub's container)")
    backup.add_argument("--to", default="/srv/gpuhub/backups", help="the folder for the archive (default: %(default)s, ./backups on the host)")
    backup.add_argument("--site", help="the folder with the site's settings.toml and jupyterhub_config.d/ (default: the hub's own)")
    backup.set_defaults(local=cmd_backup)
    restore = sub.add_parser("restore", help="an archive of `gpuhub backup` onto a hub that is not running (a one-off hub container)")
    restore.add_argument("archive")
    what = restore.add_mutually_exclusive_group()
    what.add_argument("--replace", action="store_true", help="overwrite an existing database and homes")
    what.add_argument("--check", action="store_true", help="only check the archive (every member's checksum); change nothing")
    restore.set_defaults(local=cmd_restore)
    return p


def cmd_backup(args) -> str:
    from .backup.command import run_backup

    return run_backup(args.to, args.site)


def cmd_restore(args) -> str:
    from .backup.command import run_restore

    return run_restore(args.archive, args.replace, args.check)


def limit_options(extra: list[str]) -> dict[str, str]:
    """``["--max-gpus", "2", "--profiles=a,b"]`` → ``{"max_gpus": "2", "profiles": "a,b"}``: the limits
    of ``quota set``, any ``[[quotas]]`` key (the hub validates them and names a wrong one)."""
    limits, items = {}, list(extra)
    while items:
        option = items.pop(0)
        name, eq, value = option.partition("=")
        if not name.startswith("--") or len(name) < 3:
            raise ValueError(f"unexpected argument {option!r}")
        if not eq:
            if not items or items[0].startswith("--"):
                raise ValueError(f"{name} needs a value")
            value = items.pop(0)
        limits[name[2:].replace("-", "_")] = value
    return limits


def main(argv=None) -> int:
    p = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if argv[:1] == ["job"] and "--" in argv:  # job submit train.py -- --epochs 3: the script's own
        script_args = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args, extra = p.parse_known_args(argv)
    args.script_args = script_args
    if args.command == "job" and args.target is None and extra and not extra[0].startswith("-"):
        args.target = extra.pop(0)  # argparse takes no positional after an option: job submit --profile p train.py
    if extra and not (args.command == "quota" and args.action == "set"):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.limits = limit_options(extra)
    except ValueError as e:
        p.error(str(e))
    if hasattr(args, "local"):
        from .backup.archive import BackupError

        try:
            print(args.local(args))
        except BackupError as e:
            print(f"gpuhub {args.command}: {e}", file=sys.stderr)
            return 1
        return 0
    token = os.environ.get("GPUHUB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        print(f"gpuhub: GPUHUB_TOKEN is not set. {TOKEN_HELP}", file=sys.stderr)
        return 2
    client = Client(hub_url(os.environ), token)
    try:
        print(args.run(client, args))
    except ApiError as e:
        print(f"gpuhub: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
