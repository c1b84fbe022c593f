"""What the sandbox shows and hides (the mount list, checked without starting bubblewrap; the fault and
cheat suite checks the same from inside real sandboxes)."""

from __future__ import annotations

import os

import pytest

from rnn_course.grading.sandbox import (
    SYSTEM_PATHS,
    SandboxError,
    SandboxSettings,
    bwrap_mounts,
)


def pairs(arguments: list[str], option: str) -> list[str]:
    """The targets of every ``option`` (e.g. --tmpfs) in a bubblewrap argument list."""
    return [
        arguments[i + 1] if option == "--tmpfs" else arguments[i + 2]
        for i, argument in enumerate(arguments)
        if argument == option
    ]


def test_only_the_system_and_the_environment_are_visible(tmp_path):
    course, home = tmp_path / "course", tmp_path / "home"
    venv, python = course / ".venv", home / ".pyenv" / "versions" / "3.11"
    for folder in (course / "solutions", venv / "bin", python / "lib"):
        folder.mkdir(parents=True)
    arguments = bwrap_mounts(
        hidden=[str(course), str(home), "/tmp", "/nonexistent"],
        bind_back=[str(venv), str(python), "/usr/lib"],
        secrets=[str(course / "solutions")],
        settings=SandboxSettings(),
    )
    system = [
        path
        for path in SYSTEM_PATHS
        if os.path.isdir(path) and not os.path.islink(path)
    ]
    assert (
        "/" not in pairs(arguments, "--ro-bind") and "--bind" not in arguments
    )  # an allow-list, all read-only
    assert "/usr" in system and "/etc" in system
    assert sorted(pairs(arguments, "--ro-bind")) == sorted(
        system + [str(venv), str(python)]
    )  # /usr/lib: in /usr
    assert set(pairs(arguments, "--tmpfs")) == {
        "/tmp",
        "/dev/shm",
    }  # course and home: under /tmp, never shown
    assert str(course / "solutions") not in arguments and str(course) not in pairs(
        arguments, "--ro-bind"
    )
    # the folders leading to a bound folder are made traversable (bwrap would make them 0700)
    text = " ".join(arguments)
    assert (
        f"--perms 0755 --dir {home / '.pyenv'} --perms 0755 --dir {home / '.pyenv' / 'versions'} "
        f"--ro-bind {python} {python}" in text
    )
    assert text.index("--tmpfs /tmp") < text.index(f"--ro-bind {python}")
    assert "--dir /tmp " not in text  # the sandbox's own /tmp stays as it is (1777)


def test_private_folders_inside_system_folders_are_emptied_once():
    hidden = ["/usr/share/doc", "/usr/share", "/usr", "/", "/srv", "/nonexistent"]
    assert sorted(
        pairs(bwrap_mounts(hidden, [], [], SandboxSettings()), "--tmpfs")
    ) == ["/dev/shm", "/tmp", "/usr/share"]
    # (/usr itself is the system and stays; /srv is not shown at all, so there is nothing to empty)


def test_an_environment_that_would_show_a_secret_is_refused(tmp_path):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    with pytest.raises(SandboxError, match="would show"):
        bwrap_mounts(
            [str(tmp_path)],
            [str(course)],
            [str(course / "solutions")],
            SandboxSettings(),
        )


def test_scratch_tmp_and_shared_memory_are_size_capped(tmp_path):
    arguments = bwrap_mounts(["/tmp"], [], [], SandboxSettings(tmp_mb=7))
    for target in ("/tmp", "/dev/shm"):
        index = arguments.index(target)
        assert arguments[index - 5 : index] == [
            "--size",
            str(7 << 20),
            "--perms",
            "1777",
            "--tmpfs",
        ]
