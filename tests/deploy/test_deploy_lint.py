"""Static checks of the Ansible code: ansible-lint (production profile), syntax, role docs."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from deploy_helpers import REPO, ansible_env, tool

PLAYBOOKS = [
    "site.yml",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "playbooks").glob("*.yml")),
]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
# lint and syntax checks must not ask AWS anything: use the static example inventory
STATIC_ENV = {"ANSIBLE_INVENTORY": str(REPO / "inventory" / "static-example")}


def test_ansible_lint_production_profile_passes():
    done = subprocess.run(
        [
            tool("ansible-lint"),
            "--profile",
            "production",
            "--strict",
            "--offline",
            "site.yml",
            "playbooks",
            "roles",
            "inventory",
        ],
        cwd=REPO,
        env=ansible_env(**STATIC_ENV),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_no_lint_skips_anywhere():
    assert (
        not (REPO / ".ansible-lint").exists()
        or "skip_list" not in (REPO / ".ansible-lint").read_text()
    )
    for path in list((REPO / "roles").rglob("*.yml")) + list((REPO / "playbooks").glob("*.yml")):
        assert "noqa" not in path.read_text(), f"{path} silences ansible-lint"


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook):
    done = subprocess.run(
        [tool("ansible-playbook"), "--syntax-check", playbook],
        cwd=REPO,
        env=ansible_env(**STATIC_ENV),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_site_only_imports_playbooks():
    plays = yaml.safe_load((REPO / "site.yml").read_text())
    assert all(set(p) <= {"name", "ansible.builtin.import_playbook", "tags"} for p in plays)
    tags = {t for p in plays for t in p["tags"]}
    assert {"provision", "configure", "deploy", "train", "tune", "teardown"} <= tags


def _default_comments(text: str) -> dict[str, list[str]]:
    """Each top-level variable of a defaults file -> the comment lines right above it."""
    lines = text.splitlines()
    comments = {}
    for i, line in enumerate(lines):
        match = re.match(r"^([a-z_0-9]+):", line)
        if match:
            j, block = i - 1, []
            while j >= 0 and lines[j].startswith("#"):
                block.insert(0, lines[j].lstrip("#").strip())
                j -= 1
            comments[match.group(1)] = block
    return comments


def test_default_comments_reads_the_block_right_above_each_variable():
    text = "---\n# Section.\n\n# First line\n#   indented\nx_a: 1\ny_b:\n  - 2\n# Own.\nz_c: 3\n"
    expected = {"x_a": ["First line", "indented"], "y_b": [], "z_c": ["Own."]}
    assert _default_comments(text) == expected


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_is_documented(role):
    """Every default has its own comment, a prefixed name and an argument_specs entry whose
    description is that comment, word for word (so neither can drift or be copied from a
    neighbour)."""
    defaults_text = (role / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(defaults_text) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert set(defaults) == set(options), "defaults/main.yml and meta/argument_specs.yml differ"
    comments = _default_comments(defaults_text)
    for name in defaults:
        assert name.startswith(role.name + "_"), f"{name} lacks the role prefix"
        assert options[name].get("type"), f"{name} has no type"
        assert comments[name], f"{name} has no comment of its own right above it"
        assert options[name].get("description") == comments[name], (
            f"{name}: argument_specs description differs from its defaults/main.yml comment"
        )
    for entry, spec in specs.items():  # other entry points (teardown) reuse the same words
        for name, option in spec["options"].items():
            assert option.get("description") == comments.get(name), f"{entry}: {name}"
    described = [tuple(comments[name]) for name in defaults]
    copied = {d for d in described if described.count(d) > 1}
    assert not copied, f"variables share a description: {copied}"
    for template in (role / "templates").rglob("*.j2") if (role / "templates").exists() else []:
        first = template.read_text().splitlines()[0]
        assert "{{ ansible_managed }}" in first, f"{template} does not start with ansible_managed"


def _handlers(role):
    path = role / "handlers" / "main.yml"
    if not path.exists():
        return []
    return yaml.safe_load(path.read_text()) or []


def test_handlers_notified_across_roles_are_listen_topics():
    """A role notifies another role's handler through a ``listen:`` topic, never by the
    handler's name, so renaming a handler cannot silently cut the link."""
    names = {role.name: {h["name"] for h in _handlers(role)} for role in ROLES}
    topics = set()
    for role in ROLES:
        for handler in _handlers(role):
            listen = handler.get("listen", [])
            topics.update([listen] if isinstance(listen, str) else listen)
    crossing = 0
    for role in ROLES:
        for path in (role / "tasks").glob("*.yml"):
            for task in _tasks(yaml.safe_load(path.read_text())):
                notify = task.get("notify", [])
                for target in [notify] if isinstance(notify, str) else notify:
                    if target in names[role.name]:
                        continue  # its own handler
                    crossing += 1
                    assert target in topics, f"{path}: notifies {target!r}, not a listen topic"
                    assert not any(target in n for n in names.values()), (
                        f"{path}: {target!r} is also a handler name"
                    )
    assert crossing, "no role notifies another's handler: this test checks nothing"


def _tasks(items):
    for task in items or []:
        if "block" in task:
            assert "name" in task, f"unnamed block: {task}"
            for key in ("block", "rescue", "always"):
                yield from _tasks(task.get(key))
        else:
            yield task


def test_every_task_is_named_and_uses_fqcn():
    for path in list((REPO / "roles").rglob("tasks/*.yml")) + list(
        (REPO / "roles").rglob("handlers/*.yml")
    ):
        for task in _tasks(yaml.safe_load(path.read_text())):
            assert "name" in task, f"unnamed task in {path}: {task}"
            modules = [k for k in task if "." in k]
            assert modules, f"{path}: {task['name']} does not use a fully qualified module"
            assert not any(k.endswith((".shell", ".raw")) for k in modules), (
                f"{path}: {task['name']}"
            )


def test_vault_example_decrypts_with_documented_password(tmp_path):
    password = tmp_path / "pass"
    password.write_text("chestx-example-only\n")
    example = REPO / "inventory" / "production" / "group_vars" / "all" / "vault.yml.example"
    assert example.read_text().startswith("$ANSIBLE_VAULT;"), "the example must be encrypted"
    done = subprocess.run(
        [tool("ansible-vault"), "view", "--vault-password-file", str(password), str(example)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
    )
    assert done.returncode == 0, done.stderr
    secrets = yaml.safe_load(done.stdout)
    assert set(secrets) == {"vault_kaggle_username", "vault_kaggle_key", "vault_github_token"}
    main = (REPO / "inventory" / "production" / "group_vars" / "all" / "main.yml").read_text()
    for name in secrets:  # indirection: the plain vars only refer to the vault ones
        assert f"{{{{ {name} | default('') }}}}" in main


def test_github_host_keys_match_published_fingerprints(tmp_path):
    known = REPO / "roles" / "app_code" / "files" / "github_known_hosts"
    done = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(known)], capture_output=True, text=True, check=True
    )
    fingerprints = {line.split()[1] for line in done.stdout.splitlines()}
    # https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints
    assert fingerprints == {
        "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        "SHA256:p2QAMXNIC1TJYWeIOttrVc98/R1BUFWu3/LiyKgUfQM",
        "SHA256:+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU",
    }


def test_nginx_body_limit_matches_the_app():
    nginx = yaml.safe_load((REPO / "roles/nginx/defaults/main.yml").read_text())
    gunicorn = yaml.safe_load((REPO / "roles/gunicorn/defaults/main.yml").read_text())
    expr = "{{ chestx_max_content_length | default(20971520) }}"
    assert nginx["nginx_client_max_body_size"] == gunicorn["gunicorn_max_content_length"] == expr
