"""Copy mode against a hostile model, on the real engine: forged programs in the container, symbolic
links to host paths, changes to .git, a full disk, sparse files and too many files. Canaries on the
host (tracked files, .git, a directory outside the workspace) must come through untouched."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from sandbox import labels
from sandbox.base import SandboxError
from sandbox.docker import DockerSandbox, Limits
from sandbox.workspace import open_workspace_sandbox
from tests.sandbox_docker.forged import BACKDOOR, forged_image

__all__ = ["forged_image"]  # a fixture


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def project(tmp_path):
    """A git repository with a tracked file, an ignored secret, and a canary directory beside it."""
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "app.py").write_text("print('app')\n")
    (repo / ".gitignore").write_text(".env\n")
    (repo / ".env").write_text("SECRET=1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("canary\n")
    return repo, outside


def test_forged_programs_in_the_container_change_nothing_beyond_the_real_changes(
    project, forged_image, docker_client
):
    repo, outside = project
    git_before = _digest_tree(repo / ".git")
    with open_workspace_sandbox(repo, image=forged_image, client=docker_client) as sandbox:
        sandbox.exec("echo 'real change' > notes.txt")
        # The forgeries are live: the container's own git prints the backdoor diff.
        assert BACKDOOR in sandbox.exec("git diff").output
        assert "python3" in sandbox.exec("cat /tmp/forged-ran").output  # the helper itself went through it
        diff = sandbox.sync_back()
        assert BACKDOOR not in diff and "+real change" in diff
    assert (repo / "app.py").read_text() == "print('app')\n"
    assert (repo / "notes.txt").read_text() == "real change\n"
    assert _digest_tree(repo / ".git") == git_before
    assert _digest_tree(outside) == {"canary.txt": hashlib.sha256(b"canary\n").hexdigest()}


def test_changes_to_git_never_reach_the_host(project, base_image, docker_client):
    repo, _ = project
    git_before = _digest_tree(repo / ".git")
    with open_workspace_sandbox(repo, image=base_image, client=docker_client) as sandbox:
        result = sandbox.exec(
            "git config core.fsmonitor 'touch /tmp/pwned' && "
            "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/post-checkout && "
            "echo change >> app.py && git -c user.name=m -c user.email=m@m commit -qam model && "
            "mkdir -p sub/.git && echo '[core]' > sub/.git/config && echo x > sub/file"
        )
        assert result.exit_code == 0, result.output
        diff = sandbox.sync_back()
    assert ".git/" not in diff
    assert (repo / "sub" / "file").read_text() == "x\n" and not (repo / "sub" / ".git").exists()
    assert (repo / "app.py").read_text() == "print('app')\nchange\n"
    assert _digest_tree(repo / ".git") == git_before


def test_symbolic_links_to_host_paths_stay_links(project, base_image, docker_client):
    repo, outside = project
    passwd = Path("/etc/passwd").read_bytes()
    with open_workspace_sandbox(repo, image=base_image, client=docker_client) as sandbox:
        script = (
            f"ln -s /etc/passwd passwd && ln -s {outside} out && ln -s ../outside up && "
            # A link to a host directory, then writes through it: they land in the container's own
            # /tmp, never in the export.
            f"mkdir -p {outside} 2>/dev/null; echo pwned > out/canary.txt; echo pwned > out/new.txt; "
            "rm app.py && ln -s /etc/shadow app.py"
        )
        sandbox.exec(script)
        diff = sandbox.sync_back()
    assert "new file mode 120000" in diff
    assert Path(repo / "passwd").readlink() == Path("/etc/passwd")
    assert Path(repo / "out").readlink() == outside
    assert Path(repo / "app.py").readlink() == Path("/etc/shadow")
    assert Path("/etc/passwd").read_bytes() == passwd
    assert _digest_tree(outside) == {"canary.txt": hashlib.sha256(b"canary\n").hexdigest()}


def test_a_sparse_file_bigger_than_the_disk_is_refused_before_the_host_disk_sees_it(
    project, base_image, docker_client
):
    repo, _ = project
    limits = Limits(disk="64m", files=1000)
    with open_workspace_sandbox(repo, image=base_image, limits=limits, client=docker_client) as sandbox:
        made = sandbox.exec("truncate -s 1G huge.bin && echo edit >> app.py && du -k huge.bin")
        assert made.exit_code == 0 and made.output.split()[0] == "0"  # 1 GB that takes no space
        store = sandbox._store.directory
        with pytest.raises(SandboxError, match="larger than|more than"):
            sandbox.sync_back()
        assert sorted(p.name for p in store.iterdir()) == ["store.git"]  # the partial export is gone
        assert (repo / "app.py").read_text() == "print('app')\n"  # all or nothing
        sandbox.exec("rm huge.bin")
        assert "+edit" in sandbox.sync_back()  # the run goes on
    assert (repo / "app.py").read_text() == "print('app')\nedit\n" and not (repo / "huge.bin").exists()


def test_the_disk_quota_holds_and_a_full_disk_is_only_enospc(project, base_image, docker_client):
    repo, _ = project
    limits = Limits(disk="64m", files=2000)
    with open_workspace_sandbox(repo, image=base_image, limits=limits, client=docker_client) as sandbox:
        for target in ("/workspace/fill", "/tmp/fill"):
            full = sandbox.exec(f"dd if=/dev/zero of={target} bs=1M count=200; rm {target}")
            assert "No space left on device" in full.output and not full.oom_killed
        many = sandbox.exec('python3 -c \'import os\nfor i in range(5000): open(f"f{i}", "w").close()\'')
        assert many.exit_code != 0 and "No space left on device" in many.output
        for path in ("/fill", "/usr/fill", "/var/tmp/fill", "/etc/fill", "/dev/shm/../fill"):
            denied = sandbox.exec(f"echo x > {path}")
            assert denied.exit_code != 0, path
        assert sandbox.exec("rm -f f* && echo still working").output == "still working\n"
        # Nothing reached the container's own layer, which lives on the host's disk, but the mount
        # point the engine made for the workspace.
        assert [(c.path, c.kind) for c in sandbox.changed_files()] == [("/workspace", "added")]
        mounts = sandbox.exec("grep -E ' /(workspace|tmp) ' /proc/mounts").output.splitlines()
        assert [line.split()[1:3] for line in mounts] == [["/workspace", "tmpfs"], ["/tmp", "tmpfs"]]


def test_a_workspace_larger_than_the_disk_is_refused_before_copying(tmp_path, base_image, docker_client):
    workspace = tmp_path / "big"
    workspace.mkdir()
    (workspace / "data.bin").write_bytes(b"x" * (2 << 20))

    def mine() -> set[str]:
        containers = docker_client.api.containers(all=True, filters=labels.PROJECT_FILTER)
        return {c["Id"] for c in containers if c["Labels"].get(labels.OWNER) == labels.owner_id()}

    before = mine()
    with pytest.raises(SandboxError, match="does not fit the sandbox's disk"):
        open_workspace_sandbox(workspace, image=base_image, limits=Limits(disk="1m"), client=docker_client)
    assert mine() <= before  # the sandbox was removed


def test_the_sandbox_user_has_no_privileges(project, base_image, docker_client):
    repo, _ = project
    with open_workspace_sandbox(repo, image=base_image, client=docker_client) as sandbox:
        assert sandbox.exec("id -u").output == "65534\n"
        assert sandbox.exec("stat -c %u /workspace/app.py").output == "65534\n"
        status = sandbox.exec("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status").output.split()
        assert status == ["CapEff:", "0000000000000000", "CapBnd:", "0000000000000000", "NoNewPrivs:", "1"]
        for command in (
            "mount -t tmpfs none /tmp",
            "chown 0:0 /workspace/app.py",
            "unshare -Ur true",
            "su -c true",
            "touch /usr/bin/x",
        ):
            assert sandbox.exec(command + " </dev/null").exit_code != 0, command


def test_the_images_root_user_has_no_capabilities_either(base_image, docker_client):
    with DockerSandbox.create(base_image, client=docker_client) as sandbox:  # as eval containers run
        assert sandbox.exec("id -u").output == "0\n"
        assert "CapEff:\t0000000000000000" in sandbox.exec("grep CapEff /proc/self/status").output
        assert sandbox.exec("mount -t tmpfs none /mnt").exit_code != 0
        assert sandbox.exec("chown 65534 /workspace").exit_code != 0
        assert sandbox.exec("mknod /tmp/null c 1 3").exit_code != 0
        assert sandbox.exec("touch /etc/root-may-write-its-own-files").exit_code == 0
