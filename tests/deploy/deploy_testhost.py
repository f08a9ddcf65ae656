"""A real Debian host with systemd for the deploy tests, and a stand-in for GitHub.

``TestHost`` boots a debootstrapped Debian rootfs with ``systemd-nspawn --boot`` inside a
network namespace of its own (veth pair 10.213.N.0/30: the host side is .1, the container
.2), masqueraded so that apt and pip inside reach the package registries exactly as this
machine does. ``GitServer`` serves a bare git repository over SSH from the host side of that
veth (the clone the deploy play makes), and ``FakeGitHubAPI`` answers the deploy-key part of
GitHub's REST API there, adding each registered key to the git server's authorized_keys.

Everything listens only on addresses inside the test's own veth pair or on loopback, and is
removed on exit. Needs root, debootstrap, systemd-nspawn, nftables, iproute2, openssh.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

CACHE_DIR = Path(os.environ.get("CHESTX_CI_CACHE", "/var/cache/chestx-ci"))
SUITE = "bookworm"
MIRROR = os.environ.get("CHESTX_CI_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ROOTFS_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,sudo,ca-certificates"
ROOTFS_TARBALL = CACHE_DIR / f"debian-{SUITE}-rootfs-v1.tar.zst"
WORK_ROOT = Path("/var/tmp/chestx-ci-hosts")
LOGIN_USER = "ubuntu"  # the same login user as the Ubuntu AMI
GIT_USER = "chestx-git"
FORWARD_ORIG = Path("/run/chestx-ci-ip_forward.orig")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({exc.returncode}):\n{exc.stdout}\n{exc.stderr}"
        ) from exc


def make_ssh_key(path: Path, comment: str = "chestx-test") -> Path:
    """An ed25519 key pair without passphrase at ``path`` (+ ``.pub``); returns ``path``."""
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path


@contextlib.contextmanager
def _lock(name: str):
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rootfs_tarball() -> Path:
    """The cached Debian rootfs tarball, debootstrapped (~1-2 min) on first use."""
    with _lock("rootfs"):
        if ROOTFS_TARBALL.exists():
            return ROOTFS_TARBALL
        build = CACHE_DIR / f"rootfs-build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={ROOTFS_PACKAGES}",
                    SUITE,
                    str(build),
                    MIRROR,
                ]
            )
            for deb in (build / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            for key in (build / "etc/ssh").glob("ssh_host_*"):
                key.unlink()  # every test host gets fresh host keys
            tmp = ROOTFS_TARBALL.with_suffix(".part")
            run(["tar", "--zstd", "--numeric-owner", "-cpf", str(tmp), "-C", str(build), "."])
            tmp.rename(ROOTFS_TARBALL)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return ROOTFS_TARBALL


def _claim_index() -> int:
    """Take a free test network index by creating its network namespace, ``chestx-t<index>``.

    Choosing and creating happen under one lock, so test hosts started at the same time (two
    test runs on one machine) never pick the same addresses.
    """
    with _lock("test-network"):
        netns = Path("/run/netns")
        used = {p.name.removeprefix("chestx-t") for p in netns.glob("chestx-t*")}
        used |= {p.name.rsplit("-", 1)[-1] for p in WORK_ROOT.glob("*-*")}  # hosts' root folders
        i = next((i for i in range(10, 250) if str(i) not in used), None)
        if i is not None:
            run(["ip", "netns", "add", f"chestx-t{i}"])
            return i
    raise RuntimeError("no free test network index")


class TestHost:
    """A booted Debian host reachable over SSH at ``self.ip`` as ``ubuntu`` with ``self.key``."""

    __test__ = False  # a helper, not a test class

    def __init__(self, workdir: Path, name: str = "chestx-test"):
        self.workdir = Path(workdir)
        self.index = _claim_index()  # stop() gives it back
        self.name = f"{name}-{self.index}"
        self.netns = f"chestx-t{self.index}"
        self.veth_host = f"cxh{self.index}"
        self.veth_guest = f"cxc{self.index}"
        self.subnet = f"10.213.{self.index}.0/30"
        self.gateway = f"10.213.{self.index}.1"
        self.ip = f"10.213.{self.index}.2"
        self.nft_table = f"chestx_t{self.index}"
        self.root = WORK_ROOT / self.name
        self.key = self.workdir / "id_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.console_log = self.workdir / f"{self.name}-console.log"
        self._proc: subprocess.Popen | None = None
        self._cleanups: list = [lambda: run(["ip", "netns", "del", self.netns])]

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> TestHost:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        tarball = ensure_rootfs_tarball()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            make_ssh_key(self.key)
        self._network()
        self._rootfs(tarball)
        self._boot()
        self.wait_for_ssh()
        self.boot_seconds = time.monotonic() - t0

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # nspawn powers the container off
            try:
                self._proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        self._keep_apt_downloads()
        if self.root.exists():  # before the network goes: the pair marks the index as taken
            shutil.rmtree(self.root, ignore_errors=True)
        for cleanup in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()

    def _keep_apt_downloads(self) -> None:
        archives = self.root / "var/cache/apt/archives"
        if not archives.is_dir():
            return
        with _lock("apt-archives"):
            for deb in archives.glob("*.deb"):
                cached = CACHE_DIR / "apt-archives" / deb.name
                if not cached.exists():
                    shutil.copy2(deb, cached.with_suffix(".part"))
                    cached.with_suffix(".part").rename(cached)

    # -- pieces ----------------------------------------------------------------------------
    def _network(self) -> None:
        run(
            [
                "ip",
                "link",
                "add",
                self.veth_host,
                "type",
                "veth",
                "peer",
                "name",
                self.veth_guest,
                "netns",
                self.netns,
            ]
        )
        self._cleanups.append(lambda: run(["ip", "link", "del", self.veth_host], check=False))
        run(["ip", "addr", "add", f"{self.gateway}/30", "dev", self.veth_host])
        run(["ip", "link", "set", self.veth_host, "up"])
        ns = ["ip", "-n", self.netns]
        run(ns + ["addr", "add", f"{self.ip}/30", "dev", self.veth_guest])
        run(ns + ["link", "set", self.veth_guest, "up"])
        run(ns + ["link", "set", "lo", "up"])
        run(ns + ["route", "add", "default", "via", self.gateway])
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        if not FORWARD_ORIG.exists():  # the first test host remembers the machine's setting
            FORWARD_ORIG.write_text(forward.read_text())
        forward.write_text("1\n")
        self._cleanups.append(self._restore_forward)
        ruleset = f"""
table ip {self.nft_table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {self.subnet} oifname != "{self.veth_host}" masquerade
    }}
}}
"""
        run(["nft", "-f", "-"], input=ruleset)
        self._cleanups.append(lambda: run(["nft", "delete", "table", "ip", self.nft_table]))

    def _restore_forward(self) -> None:
        # leave forwarding on while another test host still needs it; the last one restores
        others = [p for p in Path("/run/netns").glob("chestx-t*") if p.name != self.netns]
        if not others and FORWARD_ORIG.exists():
            Path("/proc/sys/net/ipv4/ip_forward").write_text(FORWARD_ORIG.read_text())
            FORWARD_ORIG.unlink()

    def _rootfs(self, tarball: Path) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        run(["tar", "--zstd", "--numeric-owner", "-xpf", str(tarball), "-C", str(self.root)])
        root = self.root
        (root / "etc/hostname").write_text(self.name + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n{self.ip} {self.name}\n"
            "::1 localhost ip6-localhost ip6-loopback\n"
        )
        chroot = ["chroot", str(root)]
        run(chroot + ["useradd", "--create-home", "--shell", "/bin/bash", LOGIN_USER])
        (root / f"etc/sudoers.d/90-{LOGIN_USER}").write_text(
            f"{LOGIN_USER} ALL=(ALL) NOPASSWD:ALL\n"
        )
        os.chmod(root / f"etc/sudoers.d/90-{LOGIN_USER}", 0o440)
        ssh_dir = root / "home" / LOGIN_USER / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        shutil.copy(self.key.with_suffix(".pub"), ssh_dir / "authorized_keys")
        run(chroot + ["chown", "-R", f"{LOGIN_USER}:{LOGIN_USER}", f"/home/{LOGIN_USER}/.ssh"])
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        run(chroot + ["ssh-keygen", "-A"])
        host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"{self.ip} {' '.join(host_key)}\n")
        self._copy_trust_and_pip_config()
        # apt and pip downloads are kept between runs on the CI machine. apt's archive folder
        # is the host's own (apt locks it, and several test hosts may run at once): it starts
        # with the cached packages and gives the new ones back when the host stops.
        for sub in ("apt-archives", "pip-cache"):
            (CACHE_DIR / sub / "partial").mkdir(parents=True, exist_ok=True)
        os.chmod(CACHE_DIR / "pip-cache", 0o1777)
        archives = root / "var/cache/apt/archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        for deb in (CACHE_DIR / "apt-archives").glob("*.deb"):
            try:
                os.link(deb, archives / deb.name)  # apt never rewrites a package file
            except OSError:
                shutil.copy2(deb, archives / deb.name)

    def _copy_trust_and_pip_config(self) -> None:
        """Make HTTPS and pip inside behave like on this machine (extra CAs, pip settings)."""
        root = self.root
        cas = list(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
        if cas:
            dest = root / "usr/local/share/ca-certificates"
            dest.mkdir(parents=True, exist_ok=True)
            for ca in cas:
                shutil.copy(ca, dest / ca.name)
            run(["chroot", str(root), "update-ca-certificates"])
        for conf in (Path("/etc/pip.conf"), Path("/etc/xdg/pip")):
            if conf.is_file():
                shutil.copy(conf, root / conf.relative_to("/"))
            elif conf.is_dir():
                shutil.copytree(conf, root / conf.relative_to("/"), dirs_exist_ok=True)
        lines = [
            f"{k}={v}"
            for k, v in sorted(os.environ.items())
            if k.startswith("PIP_") and k != "PIP_FIND_LINKS"
        ]
        # the shared pip download cache (bind-mounted below) makes re-runs quick
        lines.append("PIP_CACHE_DIR=/var/cache/chestx-pip")
        env_file = root / "etc/environment"
        env_file.write_text(env_file.read_text() if env_file.exists() else "")
        with env_file.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        pip_conf = root / "etc/pip.conf"
        text = pip_conf.read_text() if pip_conf.exists() else ""
        if "[global]" not in text:
            text = "[global]\n" + text
        text = text.replace("[global]\n", "[global]\ncache-dir = /var/cache/chestx-pip\n", 1)
        pip_conf.write_text(text)

    def _boot(self) -> None:
        cmd = [
            "systemd-nspawn",
            "-D",
            str(self.root),
            "-M",
            self.name,
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            # the host's firewall (ufw) manages the container's own network namespace only
            "--capability=CAP_NET_ADMIN",
            f"--network-namespace-path=/run/netns/{self.netns}",
            "--resolv-conf=copy-host",
            f"--bind={CACHE_DIR / 'pip-cache'}:/var/cache/chestx-pip",
        ]
        log = open(self.console_log, "w")  # noqa: SIM115 - lives as long as the container
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        self._cleanups.append(log.close)

    def ssh_cmd(self, user: str = LOGIN_USER) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=5",
            f"{user}@{self.ip}",
        ]

    def ssh(
        self, command: str, user: str = LOGIN_USER, check: bool = True
    ) -> subprocess.CompletedProcess:
        return run(self.ssh_cmd(user) + [command], check=check)

    def wait_for_ssh(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"systemd-nspawn exited; see {self.console_log}:\n"
                    + self.console_log.read_text()[-3000:]
                )
            if self.ssh("true", check=False).returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"no SSH on {self.ip} after {timeout}s; see {self.console_log}")


class GitServer:
    """A bare repository served over SSH at ssh://chestx-git@GATEWAY:PORT/<path>.

    Its authorized_keys starts empty: a key gets in only by being registered through the
    fake GitHub API, as a deploy key does on GitHub.
    """

    def __init__(self, listen_ip: str, source: Path, port: int = 2222):
        # outside pytest's private (0700) temporary folders: the git user must read it
        self.dir = WORK_ROOT / f"git-server-{os.getpid()}-{port}"
        self.listen_ip = listen_ip
        self.port = port
        self.source = Path(source)
        self.repo = self.dir / "chestx.git"
        self.authorized_keys = self.dir / "authorized_keys"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ssh://{GIT_USER}@{self.listen_ip}:{self.port}{self.repo}"

    @property
    def known_hosts_line(self) -> str:
        key = (self.dir / "host_key.pub").read_text().split()[:2]
        return f"[{self.listen_ip}]:{self.port} {' '.join(key)}"

    def _listeners(self) -> str:
        """``ss`` lines of whatever listens on this server's address and port."""
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{self.port}"], capture_output=True, text=True
        ).stdout
        return "\n".join(line for line in out.splitlines() if f"{self.listen_ip}:" in line)

    def __enter__(self) -> GitServer:
        # A git server left behind by a killed test run would answer in this one's place (the
        # readiness check below only sees that something listens), serving a deleted repository.
        taken = self._listeners()
        if taken:
            raise RuntimeError(
                f"{self.listen_ip}:{self.port} is already taken, probably by a git server left "
                f"over from a killed test run; stop it first:\n{taken}"
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        os.chmod(WORK_ROOT, 0o755)
        os.chmod(self.dir, 0o755)
        self._ensure_user()
        self.commit = self._make_repo()
        make_ssh_key(self.dir / "host_key", "chestx-git-server")
        self.authorized_keys.write_text("")
        os.chmod(self.authorized_keys, 0o644)
        config = self.dir / "sshd_config"
        config.write_text(f"""\
Port {self.port}
ListenAddress {self.listen_ip}
HostKey {self.dir / "host_key"}
PidFile {self.dir / "sshd.pid"}
AuthorizedKeysFile {self.authorized_keys}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {GIT_USER}
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
""")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.log = self.dir / "sshd.log"
        self._proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120  # a deadline on readiness, not a speed check
        while f"pid={self._proc.pid}," not in self._listeners():  # ours, not another's
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text(errors="replace")[-3000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"the git server's sshd is not listening:\n{log}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ensure_user(self) -> None:
        if subprocess.run(["id", GIT_USER], capture_output=True).returncode != 0:
            run(
                [
                    "useradd",
                    "--system",
                    "--create-home",
                    "--home-dir",
                    f"/var/lib/{GIT_USER}",
                    "--password",
                    "*",
                    "--shell",
                    "/usr/bin/git-shell",
                    GIT_USER,
                ]
            )

    def _make_repo(self) -> str:
        """Snapshot the checkout's files (tracked and untracked-not-ignored) as one commit."""
        files = run(
            [
                "git",
                "-C",
                str(self.source),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ]
        ).stdout.split("\0")
        tree = self.dir / "snapshot"
        shutil.rmtree(tree, ignore_errors=True)
        for rel in filter(None, files):
            src = self.source / rel
            if src.is_file():
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tree / rel)
        git = [
            "git",
            "-C",
            str(tree),
            "-c",
            "user.name=chestx-ci",
            "-c",
            "user.email=ci@chestx.invalid",
        ]
        run(["git", "init", "-q", "-b", "main", str(tree)])
        run(git + ["add", "-A"])
        run(git + ["commit", "-q", "-m", "snapshot for the deploy test"])
        shutil.rmtree(self.repo, ignore_errors=True)
        run(["git", "clone", "-q", "--bare", str(tree), str(self.repo)])
        shutil.rmtree(tree)
        commit = run(["git", "-C", str(self.repo), "rev-parse", "HEAD"]).stdout.strip()
        run(["chmod", "-R", "a+rX", str(self.dir)])
        run(["chown", "-R", f"{GIT_USER}:", str(self.repo)])  # git refuses others' repositories
        return commit


class FakeGitHubAPI:
    """GitHub's deploy-key endpoints (GET/POST /repos/OWNER/REPO/keys), nothing else."""

    def __init__(
        self, listen_ip: str, token: str, git: GitServer, owner: str, repo: str, port: int = 8880
    ):
        self.listen_ip, self.port, self.token, self.git = listen_ip, port, token, git
        self.path = f"/repos/{owner}/{repo}/keys"
        self.keys: list[dict] = []
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://{self.listen_ip}:{self.port}"

    def __enter__(self) -> FakeGitHubAPI:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                api.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != f"token {api.token}":
                    self._reply(401, {"message": "Bad credentials"})
                    return False
                if self.path.split("?")[0] != api.path:
                    self._reply(404, {"message": "Not Found"})
                    return False
                return True

            def do_GET(self):
                if self._authorised():
                    self._reply(200, api.keys)

            def do_POST(self):
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = " ".join(body["key"].split()[:2])
                if any(k["key"] == key for k in api.keys):
                    self._reply(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [{"message": "key is already in use"}],
                        },
                    )
                    return
                entry = {
                    "id": len(api.keys) + 1,
                    "key": key,
                    "title": body["title"],
                    "read_only": body.get("read_only", True),
                }
                api.keys.append(entry)
                with open(api.git.authorized_keys, "a") as fh:
                    fh.write(f"restrict {key} {body['title']}\n")
                self._reply(201, entry)

        self._server = http.server.ThreadingHTTPServer((self.listen_ip, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
