"""What the sandbox shows and hides (the mount list, checked without starting bubblewrap)."""

from __future__ import annotations

import pytest

from rnn_course.grading.sandbox import SandboxError, SandboxSettings, bwrap_mounts


def pairs(arguments: list[str], option: str) -> list[str]:
    """The targets of every ``option`` (e.g. --tmpfs) in a bubblewrap argument list."""
    return [arguments[i + 1] if option == "--tmpfs" else arguments[i + 2]
            for i, argument in enumerate(arguments) if argument == option]


def test_private_folders_are_emptied_and_only_the_environment_comes_back(tmp_path):
    course, home = tmp_path / "course", tmp_path / "home"
    venv, python = course / ".venv", home / ".pyenv" / "versions" / "3.11"
    for folder in (course / "solutions", venv / "bin", python / "lib"):
        folder.mkdir(parents=True)
    arguments = bwrap_mounts(hidden=[str(course), str(home), "/tmp", "/nonexistent"],
                             bind_back=[str(venv), str(python), "/usr"], secrets=[str(course / "solutions")],
                             settings=SandboxSettings())
    assert arguments[:3] == ["--ro-bind", "/", "/"]
    assert set(pairs(arguments, "--tmpfs")) == {"/tmp", "/dev/shm"}  # course and home are inside /tmp here
    assert set(pairs(arguments, "--ro-bind")) == {"/", str(venv), str(python)}  # /usr is visible anyway
    # the folders leading to a bound folder inside an emptied one are made traversable (bwrap: 0700)
    text = " ".join(arguments)
    assert f"--perms 0755 --dir {home / '.pyenv'} --perms 0755 --dir {home / '.pyenv' / 'versions'} " \
           f"--ro-bind {python} {python}" in text
    assert text.index("--tmpfs /tmp") < text.index(f"--ro-bind {python}")
    assert f"--perms 0755 --dir {tmp_path} " in text


def test_nested_private_folders_are_emptied_once():
    hidden = pairs(bwrap_mounts(["/usr/lib", "/usr", "/"], [], [], SandboxSettings()), "--tmpfs")
    assert sorted(hidden) == ["/dev/shm", "/tmp", "/usr"]  # never "/" itself


def test_an_environment_that_would_show_a_secret_is_refused(tmp_path):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    with pytest.raises(SandboxError, match="would show"):
        bwrap_mounts([str(tmp_path)], [str(course)], [str(course / "solutions")], SandboxSettings())


def test_scratch_tmp_and_shared_memory_are_size_capped(tmp_path):
    arguments = bwrap_mounts(["/tmp"], [], [], SandboxSettings(tmp_mb=7))
    for target in ("/tmp", "/dev/shm"):
        index = arguments.index(target)
        assert arguments[index - 5:index] == ["--size", str(7 << 20), "--perms", "1777", "--tmpfs"]
