"""configure + deploy against a real Debian host with systemd, over real SSH.

A debootstrapped Debian (cached tarball) boots with ``systemd-nspawn --boot`` in a network
namespace of its own; the same ``site.yml`` a user runs configures and deploys it, with an
inventory pointing at it. The clone comes from a git repository served over SSH by the test
(the stand-in for GitHub, whose deploy-key API is faked too: the key the play generates on
the host is registered through it, and only registered keys may clone). The data set comes
through the local-archive path. Then the test checks the host (pytest-testinfra) and talks to
port 80 itself: form, prediction, headers, limits. A second run must change nothing.

Needs root, debootstrap, systemd-nspawn, nftables and network access to Debian's and PyPI's
package registries (through this machine's own connection): ``bash .ci/deploy-setup .venv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from deploy_helpers import (
    GITHUB_OWNER,
    GITHUB_REPO,
    REPO,
    TOKEN,
    XRAYS,
    ansible_env,
    app_source_vars,
    run_playbook,
)
from deploy_testhost import FakeGitHubAPI, GitServer, TestHost, make_ssh_key
from locked import APP, freeze_versions, locked_versions

from chestx import __version__

pytestmark = pytest.mark.slow

MAX_BODY = 2 * 1024 * 1024  # a smaller upload limit than the default, to test 413 quickly
TIMINGS: dict[str, float] = {}
SERVING = re.compile(r"is serving:\s+xray-pneumonia\.jpeg\s+->\s+(Normal|Abnormal)")


def _require_tools():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, systemd-nspawn)")
    missing = [
        t
        for t in ("debootstrap", "systemd-nspawn", "nft", "ip", "sshd", "git")
        if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
    ]
    if missing:
        pytest.fail(f"missing {missing}: run bash .ci/deploy-setup .venv")


def _http(
    url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None
):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _multipart(field: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    body += payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    _require_tools()
    work = tmp_path_factory.mktemp("deploy-host")
    os.chmod(work, 0o755)
    start = time.monotonic()
    with TestHost(work) as host:
        TIMINGS["host boot (incl. rootfs cache)"] = host.boot_seconds
        with (
            GitServer(host.gateway, REPO) as git,
            FakeGitHubAPI(host.gateway, TOKEN, git, GITHUB_OWNER, GITHUB_REPO) as api,
            # ssh's control socket: a Unix socket path holds 107 bytes at most, and pytest's
            # temporary folders (popen-gw0/ under xdist) leave too few
            tempfile.TemporaryDirectory(prefix="chestx-ssh-") as sockets,
        ):
            admin_key = make_ssh_key(work / "admin_ed25519", "alice@test")
            group_vars = {
                "chestx_ssh_cidr": f"{host.gateway}/32",
                "chestx_admin_users": [
                    {
                        "name": "alice",
                        "ssh_keys": [admin_key.with_suffix(".pub").read_text().strip()],
                    }
                ],
                **app_source_vars(git, api, work),
                "chestx_max_content_length": MAX_BODY,
            }
            model = REPO / "chestx" / "default_model" / "card.json"
            if not model.exists():  # the shipped model is not in this checkout: bring one
                group_vars["chestx_model_source"] = "controller"
                group_vars["chestx_model_dir"] = str(_tiny_model(work / "models" / "tiny"))
            # debugging hook: more group_vars as JSON, e.g. '{"gunicorn_log_level": "debug"}'
            group_vars.update(json.loads(os.environ.get("CHESTX_DEPLOY_TEST_EXTRA_VARS", "{}")))
            inventory = work / "inventory"
            (inventory / "group_vars").mkdir(parents=True)
            connection = {
                "ansible_host": host.ip,
                "ansible_user": "ubuntu",
                "ansible_ssh_private_key_file": str(host.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={host.known_hosts} -o StrictHostKeyChecking=yes"
                ),
            }
            hosts = {"chestx": {"hosts": {"testhost": connection}}}
            (inventory / "hosts.yml").write_text(json.dumps(hosts))
            (inventory / "group_vars" / "chestx.json").write_text(json.dumps(group_vars))
            ssh_config = work / "ssh_config"
            ssh_config.write_text(
                f"Host testhost\n  HostName {host.ip}\n  User ubuntu\n  IdentityFile {host.key}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {host.known_hosts}\n"
                "  StrictHostKeyChecking yes\n  BatchMode yes\n"
                # one connection for all checks: ufw rate-limits new SSH connections (6 in 30 s)
                f"  ControlMaster auto\n  ControlPath {sockets}/cm-%C\n  ControlPersist 120s\n"
            )
            env = ansible_env()
            args = ["-i", str(inventory), "site.yml", "--tags", "configure,deploy"]
            first = run_playbook(args, env)
            TIMINGS["first configure+deploy run"] = first.seconds
            yield {
                "host": host,
                "git": git,
                "api": api,
                "first": first,
                "args": args,
                "env": env,
                "ssh_config": ssh_config,
                "admin_key": admin_key,
                "work": work,
            }
    TIMINGS["whole deploy test"] = time.monotonic() - start
    print("\ndeploy test timings (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in TIMINGS.items()))


def _tiny_model(out: Path) -> Path:
    """A small untrained model directory made with chestx's own code (used only when the
    checkout has no shipped model yet)."""
    code = (
        "import sys, keras\n"
        "from chestx.models import build_model\n"
        "from chestx.modeldir import save_model\n"
        "keras.utils.set_random_seed(0)\n"
        "model = build_model('chestnet', 64, filters=(8, 16))\n"
        "card = {'name': 'tiny-deploy-test', 'version': '0.0-test', 'arch': 'chestnet',\n"
        "        'image_size': 64, 'intensity': 'clahe', 'threshold': 0.5,\n"
        "        'threshold_rule': 'fixed for tests'}\n"
        "save_model(model, sys.argv[1], card, h5=False)\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", code, str(out)], check=True, capture_output=True, cwd=REPO
    )
    return out


@pytest.fixture(scope="module")
def testinfra_host(deployed):
    import testinfra

    return testinfra.get_host("ssh://testhost", ssh_config=str(deployed["ssh_config"]), sudo=True)


def test_first_run_configures_and_deploys(deployed):
    first = deployed["first"]
    assert first.rc == 0, first.output[-6000:]
    assert first.recap()["testhost"]["failed"] == 0
    # the play's own end check went through port 80 and got a classification
    assert SERVING.search(first.output), first.output[-3000:]


def test_deploy_key_made_on_the_host_was_registered_and_used(deployed, testinfra_host):
    public = testinfra_host.file("/opt/chestx/.ssh/id_ed25519.pub").content_string.split()[:2]
    assert [k["key"] for k in deployed["api"].keys] == [" ".join(public)]
    assert deployed["api"].keys[0]["read_only"] is True
    key = testinfra_host.file("/opt/chestx/.ssh/id_ed25519")
    assert key.user == "chestx" and key.mode == 0o600
    head = testinfra_host.check_output("sudo -u chestx git -C /opt/chestx/src rev-parse HEAD")
    assert head == deployed["git"].commit
    known = testinfra_host.file("/opt/chestx/.ssh/known_hosts").content_string
    assert deployed["git"].known_hosts_line.split()[2] in known


def test_host_is_hardened(testinfra_host):
    sshd = testinfra_host.check_output("sshd -T")
    assert "permitrootlogin no" in sshd
    assert "passwordauthentication no" in sshd
    assert "kbdinteractiveauthentication no" in sshd
    ufw = testinfra_host.check_output("ufw status verbose")
    assert "Status: active" in ufw and "deny (incoming)" in ufw
    assert "22/tcp                     ALLOW IN    10.213." in ufw
    assert "80/tcp                     ALLOW IN    Anywhere" in ufw
    assert "443/tcp                    ALLOW IN    Anywhere" in ufw
    assert testinfra_host.package("unattended-upgrades").is_installed
    auto = testinfra_host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    sudoers = testinfra_host.file("/etc/sudoers.d/chestx-admins")
    assert sudoers.mode == 0o440


def test_admin_can_ssh_in_and_sudo(deployed):
    host = deployed["host"]
    cmd = [
        "ssh",
        "-i",
        str(deployed["admin_key"]),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={host.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    done = subprocess.run(
        cmd + [f"alice@{host.ip}", "sudo -n id -un"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "root"
    # root may not log in, not even with a key the host trusts
    done = subprocess.run(cmd + [f"root@{host.ip}", "true"], capture_output=True, text=True)
    assert done.returncode != 0


def test_service_runs_unprivileged_behind_nginx(testinfra_host):
    service = testinfra_host.service("chestx")
    assert service.is_running and service.is_enabled
    assert testinfra_host.service("nginx").is_running
    user = testinfra_host.user("chestx")
    assert user.shell == "/usr/sbin/nologin"
    masters = testinfra_host.process.filter(comm="gunicorn")
    assert masters and all(p.user == "chestx" for p in masters)
    # Gunicorn listens on loopback only; Nginx on port 80
    assert testinfra_host.socket("tcp://127.0.0.1:8000").is_listening
    assert not testinfra_host.socket("tcp://0.0.0.0:8000").is_listening
    assert testinfra_host.socket("tcp://0.0.0.0:80").is_listening
    env = testinfra_host.file("/etc/chestx/chestx.env")
    assert env.mode == 0o640
    assert f"CHESTX_MAX_CONTENT_LENGTH={MAX_BODY}" in env.content_string
    site = testinfra_host.file("/etc/nginx/sites-available/chestx.conf").content_string
    assert f"client_max_body_size {MAX_BODY};" in site
    assert testinfra_host.file("/opt/chestx/data/.chestx-dataset-ready").exists
    assert testinfra_host.file("/opt/chestx/data/chest_xray/train/NORMAL").is_directory
    journal = testinfra_host.check_output("journalctl -u chestx --no-pager -n 200")
    assert "chestx" in journal


def test_host_runs_exactly_the_locked_versions(deployed, testinfra_host):
    """The venv holds requirements/app.txt (exported from uv.lock) and nothing else, and
    /opt/chestx/installed.json records the commit, the lock's hash and the versions."""
    venv_python = "/opt/chestx/venv/bin/python"
    version = testinfra_host.check_output(
        f"{venv_python} -c 'import platform; print(platform.python_version())'"
    )
    expected = locked_versions(
        APP, {"python_full_version": version, "python_version": version.rsplit(".", 1)[0]}
    )
    installed = freeze_versions(testinfra_host.check_output(f"{venv_python} -m pip freeze --all"))
    installed.pop("pip")
    assert installed == expected
    record = json.loads(testinfra_host.file("/opt/chestx/installed.json").content_string)
    assert record["commit"] == deployed["git"].commit
    assert record["requested"] == "main"
    assert record["lock_sha256"] == hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()
    assert record["requirements_sha256"] == hashlib.sha256(APP.read_bytes()).hexdigest()
    versions = [line.split() for line in record["versions"]]
    assert versions[0] == ["chestx", __version__]
    assert ["keras", expected["keras"]] in [v[:2] for v in versions]
    assert ["keras-tuner", expected["keras-tuner"]] in [v[:2] for v in versions]
    assert ["tensorflow", expected["tensorflow-cpu"]] in [v[:2] for v in versions]


def test_form_and_prediction_through_port_80(deployed):
    base = f"http://{deployed['host'].ip}"
    status, headers, body = _http(base + "/")
    assert status == 200
    assert b"<form" in body and b'name="image"' in body
    assert (
        headers.get_all("Content-Security-Policy")
        and len(headers.get_all("Content-Security-Policy")) == 1
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "nginx/" not in headers.get("Server", "")

    status, _, body = _http(base + "/readyz")
    assert status == 200

    for label in ("PNEUMONIA", "NORMAL"):
        image = sorted((XRAYS / label).glob("*.jpeg"))[-1]
        body, content_type = _multipart("image", image.name, image.read_bytes())
        status, headers, reply = _http(
            base + "/predict",
            data=body,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        assert status == 200, reply[:500]
        result = json.loads(reply)
        assert result["result"] in ("Normal", "Abnormal")
        assert 0.0 <= result["probability"] <= 1.0
        assert "threshold" in result and "model" in result


def test_limits_and_private_endpoints(deployed):
    base = f"http://{deployed['host'].ip}"
    body, content_type = _multipart("image", "big.jpeg", b"\xff" * (MAX_BODY + 1024))
    status, _, _ = _http(base + "/predict", data=body, headers={"Content-Type": content_type})
    assert status == 413  # refused by Nginx before it reaches Gunicorn
    status, _, _ = _http(base + "/metrics")
    assert status == 403  # Prometheus metrics are for the host itself only


def test_second_run_changes_nothing(deployed):
    second = run_playbook(deployed["args"], deployed["env"])
    TIMINGS["second (idempotence) run"] = second.seconds
    assert second.rc == 0, second.output[-6000:]
    assert second.changed() == 0, second.changed_tasks()
    assert SERVING.search(second.output)


def test_train_and_tune_on_the_host(deployed):
    """playbooks/train.yml and playbooks/tune.yml on the deployed host, tiny budgets."""
    artifacts = deployed["work"] / "artifacts"
    extra = {
        "chestx_artifacts_dir": str(artifacts),
        "chestx_train_run": "quick",
        "chestx_train_args": [
            "--arch",
            "cnn",
            "--epochs",
            "1",
            "--limit",
            "24",
            "--image-size",
            "64",
        ],
        "chestx_tune_space": "hyperparams/smoke.yaml",
        "chestx_tune_run": "smoke",
        "chestx_tune_args": ["--max-trials", "1", "--epochs", "1", "--limit", "24"],
    }
    args = ["-i", deployed["args"][1], "site.yml", "--tags", "train,tune", "-e", json.dumps(extra)]
    run = run_playbook(args, deployed["env"])
    TIMINGS["train + tune run"] = run.seconds
    assert run.rc == 0, run.output[-6000:]
    card = json.loads((artifacts / "models" / "quick" / "card.json").read_text())
    assert card["image_size"] == 64
    assert (artifacts / "models" / "quick" / "model.keras").stat().st_size > 0
    tuning = artifacts / "tuning" / "smoke"
    assert (tuning / "leaderboard.txt").read_text().strip()
    assert json.loads((tuning / "best" / "card.json").read_text())["image_size"] == 64
    assert (tuning / "report.png").read_bytes()[:4] == b"\x89PNG"
    # a finished run is not repeated
    again = run_playbook(args, deployed["env"])
    assert again.rc == 0, again.output[-6000:]
    assert again.changed() == 0, again.changed_tasks()
