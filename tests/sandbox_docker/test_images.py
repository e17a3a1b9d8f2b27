"""Images without a registry: content-hash tags, the env layer installed offline, listing, disk check."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import docker.errors
import pytest

from sandbox import labels
from sandbox.base_image import base_image_tag, default_mirror
from sandbox.docker import DockerSandbox
from sandbox.env_image import ENV_DIR, ensure_env_image, env_image_tag, requirement_lines
from sandbox.images import ImageBuildError, check_free_disk, list_images


def _write_wheel(directory: Path, name: str = "mmx_demo", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so the env layer test needs no index at all."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: mmx-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def test_base_tags_are_content_hashes_of_the_recipe():
    assert base_image_tag("bookworm") == base_image_tag("bookworm")
    assert base_image_tag("bookworm").startswith("mmx-agent-base:bookworm-")
    assert base_image_tag("bullseye") != base_image_tag("bookworm")
    with pytest.raises(ImageBuildError, match="unknown suite"):
        base_image_tag("sid")


def test_env_tags_depend_on_base_and_locked_requirements():
    tag = env_image_tag("sha256:aaa", ["a==1", "b==2"])
    assert tag == env_image_tag("sha256:aaa", ["a==1", "b==2"])
    assert tag != env_image_tag("sha256:bbb", ["a==1", "b==2"])
    assert tag != env_image_tag("sha256:aaa", ["a==1", "b==3"])
    assert requirement_lines("# lock\na==1  # why\n\nb==2\n") == ["a==1", "b==2"]


def test_the_mirror_comes_from_apt_sources(tmp_path):
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert default_mirror((str(tmp_path),), str(tmp_path / "none")) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert default_mirror((str(tmp_path / "none"),), str(one_line)) == "http://old.example/debian"
    assert default_mirror((str(tmp_path / "none"),), str(tmp_path / "none")) == "http://deb.debian.org/debian"


def test_the_free_disk_check_fails_early_and_clearly(docker_client, tmp_path):
    with pytest.raises(ImageBuildError, match=r"not enough free disk to build thing: .* GiB free on"):
        check_free_disk(docker_client, 1 << 60, scratch_dir=str(tmp_path), what="thing")


def test_an_env_layer_installs_wheels_with_no_network_and_is_reused(docker_client, base_image, tmp_path):
    _write_wheel(tmp_path)
    requirements = ["mmx-demo==1.0"]
    pip_args = ["--no-index", "--find-links", str(tmp_path)]
    base_id = docker_client.images.get(base_image).id
    expected = env_image_tag(base_id, requirements, pip_args)
    try:
        docker_client.images.remove(expected, force=True)  # so this run really builds it
    except docker.errors.ImageNotFound:
        pass
    messages: list[str] = []
    try:
        tag = ensure_env_image(
            docker_client, requirements, base=base_image, pip_args=pip_args, progress=messages.append
        )
        assert tag == expected
        image = docker_client.images.get(tag)
        assert image.labels[labels.KIND] == "env" and image.labels[labels.PARENT] == base_id
        assert not image.attrs["Config"]["OpenStdin"]  # nothing of the build sandbox leaks into the image
        with DockerSandbox.create(tag, client=docker_client) as sandbox:
            result = sandbox.exec(
                "python3 -c 'import mmx_demo, sys; print(mmx_demo.VALUE, sys.prefix)'; ls /tmp"
            )
            assert result.output == f"42 {ENV_DIR}\n"  # and the wheelhouse is gone
        # Same base, same lock: the existing image is reused.
        messages.clear()
        assert (
            ensure_env_image(
                docker_client, requirements, base=base_image, pip_args=pip_args, progress=messages.append
            )
            == tag
        )
        assert any("reusing" in m for m in messages)
        listed = {s.tag: s for s in list_images(docker_client)}
        assert listed[base_image].kind == "base" and listed[base_image].size > 100e6
        assert listed[tag].kind == "env" and 0 < listed[tag].layer_size < listed[tag].size
    finally:
        docker_client.images.remove(expected, force=True)
