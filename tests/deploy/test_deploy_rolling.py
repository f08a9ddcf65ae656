"""Two web hosts behind a load balancer: a rolling `--tags deploy` loses no request.

Two Debian hosts (the systemd-nspawn test-host recipe of deploy_testhost.py, booted from the
same cached rootfs, each in its own network namespace) are configured and deployed by the
same site.yml a user runs, with chestx_web_count: 2 and chestx_lb: haproxy. HAProxy from
Debian runs on the controller as the stand-in for the Application Load Balancer: it
health-checks GET /readyz like the ALB's target group and the play drives it through its
runtime API (community.general.haproxy) where it drives the ALB's target group otherwise.

While a bounded client loop sends X-rays to /predict through HAProxy, `--tags deploy` of a
new commit rolls both hosts one at a time: no request may fail, both hosts end on the new
commit. Then a second host broken on purpose (a version that does not exist) stops the roll:
the play fails, the first host (already on the newer commit) keeps serving, no request fails.

Needs root, debootstrap, systemd-nspawn, nftables, haproxy and network access to Debian's and
PyPI's package registries: ``bash .ci/deploy-setup .venv``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from deploy_helpers import (
    GITHUB_OWNER,
    GITHUB_REPO,
    REPO,
    TOKEN,
    ansible_env,
    app_source_vars,
    free_port,
    run_playbook,
)
from deploy_testhost import FakeGitHubAPI, GitServer, run
from deploy_testhost import TestHost as NspawnHost

pytestmark = pytest.mark.slow

IMAGE = REPO / "roles" / "app_check" / "files" / "xray-pneumonia.jpeg"
CLIENT_ADDRESS = "127.0.0.2"  # the loop's own source address, to find it in the hosts' logs
TIMINGS: dict[str, float] = {}


def _require_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, systemd-nspawn)")
    missing = [
        t
        for t in ("debootstrap", "systemd-nspawn", "nft", "ip", "sshd", "git", "haproxy")
        if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
    ]
    if missing:
        pytest.fail(f"missing {missing}: run bash .ci/deploy-setup .venv")


class HAProxy:
    """HAProxy on 127.0.0.1:port in front of the hosts, health-checking GET /readyz."""

    def __init__(self, workdir: Path, servers: dict[str, str]):
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        lines = "\n".join(f"    server {name} {ip}:80 check" for name, ip in servers.items())
        # like the ALB: no retry on another server, so a host that goes away while it still
        # gets requests shows up as failed requests
        self.config.write_text(f"""\
global
    stats socket {self.socket} mode 600 level admin
    maxconn 256

defaults
    mode http
    timeout connect 5s
    timeout client 130s
    timeout server 130s
    retries 0
    option forwardfor

frontend chestx
    bind 127.0.0.1:{self.port}
    default_backend chestx

backend chestx
    # the target group's check, quicker: GET /readyz, 200, timeout 5 s, 2 up / 3 down in a row
    option httpchk GET /readyz
    http-check expect status 200
    timeout check 5s
    default-server inter 2s fall 3 rise 2
{lines}
""")
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HAProxy:
        run(["haproxy", "-c", "-f", str(self.config)])
        self._proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config)],
            stdout=open(self.log, "w"),  # noqa: SIM115 - lives as long as the process
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("haproxy did not start:\n" + self.log.read_text())
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)

    def status(self) -> dict[str, str]:
        """Server name -> status (UP, DOWN, MAINT, DRAIN...) from the runtime API."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = data.decode().splitlines()
        header = rows[0].lstrip("# ").split(",")
        found = {}
        for row in rows[1:]:
            fields = dict(zip(header, row.split(","), strict=False))
            if fields.get("pxname") == "chestx" and fields.get("svname") not in (
                "FRONTEND",
                "BACKEND",
            ):
                found[fields["svname"]] = fields["status"]
        return found


class ClientLoop:
    """Sends the X-ray to /predict through the load balancer, one request after the other,
    until stopped (or its own deadline), and counts what failed."""

    def __init__(self, port: int, deadline_s: float = 3600):
        self.port, self.deadline_s = port, deadline_s
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=150, source_address=(CLIENT_ADDRESS, 0)
        )
        try:
            conn.request(
                "POST",
                "/predict",
                body=IMAGE.read_bytes(),
                headers={"Content-Type": "image/jpeg", "Accept": "application/json"},
            )
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and json.loads(body)["result"] in ("Normal", "Abnormal"):
                self.ok += 1
            else:
                self.failed.append(f"{response.status}: {body[:200]!r}")
        except Exception as exc:  # noqa: BLE001 - every failure counts, whatever its kind
            self.failed.append(repr(exc))
        finally:
            conn.close()

    def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        while not self._stop.is_set() and time.monotonic() < end:
            self._one()
            self._stop.wait(0.2)  # about 4 requests/s at most: under Nginx's /predict limit

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=200)


def _new_commit(git: GitServer, message: str) -> str:
    """One more commit on main in the served repository (a file changes)."""
    tree = git.dir / f"work-{uuid.uuid4().hex[:6]}"
    # the repository belongs to the git user: let root's git (and the upload-pack it starts)
    # work in it, through a global config of this call's own
    config = git.dir / "gitconfig"
    config.write_text("[safe]\n\tdirectory = *\n[user]\n\tname = ci\n\temail = ci@chestx.invalid\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config)}
    run(["git", "clone", "-q", str(git.repo), str(tree)], env=env)
    (tree / "DEPLOYED.txt").write_text(message + "\n")
    run(["git", "-C", str(tree), "add", "DEPLOYED.txt"], env=env)
    run(["git", "-C", str(tree), "commit", "-q", "-m", message], env=env)
    run(["git", "-C", str(tree), "push", "-q", "origin", "HEAD:main"], env=env)
    shutil.rmtree(tree)
    run(["chown", "-R", "chestx-git:", str(git.repo)])
    return run(["git", "-C", str(git.repo), "rev-parse", "main"], env=env).stdout.strip()


def _head(host: NspawnHost) -> str:
    return host.ssh("sudo -u chestx git -C /opt/chestx/src rev-parse HEAD").stdout.strip()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    _require_tools()
    work = tmp_path_factory.mktemp("rolling")
    os.chmod(work, 0o755)
    start = time.monotonic()
    with (
        NspawnHost(work / "web1", "chestx-web") as web1,
        NspawnHost(work / "web2", "chestx-web") as web2,
        GitServer(web1.gateway, REPO) as git,
        FakeGitHubAPI(web1.gateway, TOKEN, git, GITHUB_OWNER, GITHUB_REPO) as api,
        HAProxy(work, {"web1": web1.ip, "web2": web2.ip}) as lb,
    ):
        TIMINGS["boot both hosts"] = time.monotonic() - start
        group_vars = {
            **app_source_vars(git, api, work),
            "chestx_web_count": 2,
            "chestx_lb": "haproxy",
            "chestx_haproxy_socket": str(lb.socket),
            "chestx_lb_url": lb.url,
            "chestx_admin_users": [],
        }
        hosts = {}
        for name, host in (("web1", web1), ("web2", web2)):
            hosts[name] = {
                "ansible_host": host.ip,
                "ansible_user": "ubuntu",
                "ansible_ssh_private_key_file": str(host.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={host.known_hosts} -o StrictHostKeyChecking=yes"
                ),
                # the controller is the admin range and, here, the load balancer too
                "chestx_ssh_cidr": f"{host.gateway}/32",
                "chestx_lb_cidrs": [f"{host.gateway}/32"],
            }
        inventory = work / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "hosts.json").write_text(json.dumps({"chestx": {"hosts": hosts}}))
        (inventory / "group_vars" / "chestx.json").write_text(json.dumps(group_vars))
        env = ansible_env()
        first = run_playbook(
            ["-i", str(inventory), "site.yml", "--tags", "configure,deploy"], env, timeout=5400
        )
        (work / "first-run.log").write_text(first.output)
        TIMINGS["first configure+deploy of both hosts"] = first.seconds
        yield {
            "web1": web1,
            "web2": web2,
            "git": git,
            "lb": lb,
            "first": first,
            "inventory": inventory,
            "env": env,
        }
    TIMINGS["whole rolling test"] = time.monotonic() - start
    print("\nrolling deploy timings (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in TIMINGS.items()))


def _wait_up(lb: HAProxy, names: set[str], timeout: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    status = lb.status()
    while time.monotonic() < deadline:
        status = lb.status()
        if all(status.get(n) == "UP" for n in names):
            break
        time.sleep(1)
    return status


def test_both_hosts_serve_behind_the_load_balancer(pair):
    first = pair["first"]
    assert first.rc == 0, first.output[-6000:]
    assert _wait_up(pair["lb"], {"web1", "web2"}) == {"web1": "UP", "web2": "UP"}
    # the play took each host out and put it back, through HAProxy's runtime API
    assert "Drain this host in HAProxy" in first.output
    assert "Enable this host in HAProxy" in first.output


def test_client_address_comes_from_the_load_balancer_only(pair):
    """Nginx takes X-Forwarded-For only from the load balancer's address (real_ip), and the
    address reaches the app's access log; a forged header from anywhere else is ignored."""
    probe = uuid.uuid4().hex
    conn = http.client.HTTPConnection(
        "127.0.0.1", pair["lb"].port, timeout=60, source_address=(CLIENT_ADDRESS, 0)
    )
    # the client's own X-Forwarded-For is kept, HAProxy appends the real peer: the
    # rightmost address not of the load balancer wins
    conn.request("GET", f"/readyz?probe={probe}", headers={"X-Forwarded-For": "203.0.113.99"})
    assert conn.getresponse().status == 200
    conn.close()
    lines = []
    for name in ("web1", "web2"):
        host = pair[name]
        access = host.ssh(f"sudo grep -h {probe} /var/log/nginx/access.log", check=False).stdout
        app = host.ssh(f"sudo journalctl -u chestx --no-pager | grep {probe}", check=False).stdout
        lines += [(name, access, app)] if access else []
    ((name, access, app),) = lines
    assert access.startswith(CLIENT_ADDRESS + " "), access
    assert f"127.0.0.1 {CLIENT_ADDRESS} " in app, app

    # from the host's own address (not the load balancer) a forged header changes nothing
    host = pair[name]
    forged = uuid.uuid4().hex
    request = (
        f"u.Request('http://{host.ip}/readyz?probe={forged}', "
        "headers={'X-Forwarded-For': '203.0.113.98'})"
    )
    host.ssh(f'python3 -c "import urllib.request as u; u.urlopen({request})"')
    access = host.ssh(f"sudo grep -h {forged} /var/log/nginx/access.log").stdout
    assert access.startswith(host.ip + " "), access


def test_rolling_deploy_loses_no_request(pair):
    git, lb = pair["git"], pair["lb"]
    commit = _new_commit(git, "second release")
    args = ["-i", str(pair["inventory"]), "site.yml", "--tags", "deploy"]
    with ClientLoop(lb.port) as client:
        while client.ok < 3 and not client.failed:  # the loop is running before the roll
            time.sleep(0.5)
        roll = run_playbook(args, pair["env"])
        (pair["inventory"].parent / "roll.log").write_text(roll.output)
        served_during = client.ok
        TIMINGS["rolling deploy of a new commit"] = roll.seconds
    assert roll.rc == 0, roll.output[-6000:]
    assert client.failed == [], client.failed[:10]
    assert served_during >= 10
    assert _head(pair["web1"]) == commit
    assert _head(pair["web2"]) == commit
    assert _wait_up(lb, {"web1", "web2"}) == {"web1": "UP", "web2": "UP"}
    # one host at a time: web1 was back in before web2 left
    out = roll.output
    assert out.index("Enable this host in HAProxy") < out.rindex("Drain this host in HAProxy")
    print(f"\nrolling deploy: {client.ok} predictions through HAProxy, 0 failed")


def test_broken_second_host_stops_the_roll(pair):
    git, lb, inventory = pair["git"], pair["lb"], pair["inventory"]
    before = _head(pair["web2"])
    commit = _new_commit(git, "third release")
    hosts = json.loads((inventory / "hosts.json").read_text())
    hosts["chestx"]["hosts"]["web2"]["chestx_version"] = "no-such-version"  # broken on purpose
    (inventory / "hosts.json").write_text(json.dumps(hosts))
    args = ["-i", str(inventory), "site.yml", "--tags", "deploy"]
    try:
        with ClientLoop(lb.port) as client:
            while client.ok < 3 and not client.failed:
                time.sleep(0.5)
            roll = run_playbook(args, pair["env"])
            time.sleep(3)  # a few more requests after the failed roll
        TIMINGS["roll stopped by a broken host"] = roll.seconds
        assert roll.rc != 0
        assert roll.recap()["web2"]["failed"] == 1
        assert client.failed == [], client.failed[:10]
        assert _head(pair["web1"]) == commit  # the first host was updated and serves
        assert _head(pair["web2"]) == before  # the broken one was left as it was
        status = lb.status()
        # "UP 2/3": up and serving while one health check is being retried (HAProxy's wording)
        assert status["web1"].split()[0] == "UP" and status["web2"] == "MAINT", status
        print(f"\nstopped roll: {client.ok} predictions through HAProxy, 0 failed")
    finally:
        hosts["chestx"]["hosts"]["web2"].pop("chestx_version")
        (inventory / "hosts.json").write_text(json.dumps(hosts))
