"""How one submission is confined: an identity of its own, a system-call filter, and its limits.

The only module that knows *how* a sandbox is confined (:mod:`.sandbox` knows *what* it shows):

* **identity**: every submission of a run gets a uid used by no other submission of that run
  (:class:`UidPool`, leased in blocks with ``flock`` so that two runs on one machine never share one);
  before a uid is used, whatever an earlier run left under it is removed (:func:`clean_uid`):
  processes, and the per-uid kernel keyrings, which outlive every namespace bubblewrap creates;
* **system calls**: a seccomp filter in the style of the container runtimes' default profiles
  (:data:`DENIED_SYSCALLS`, namespace flags to ``clone``, ``clone3`` answered with ENOSYS so that
  glibc falls back to ``clone``), compiled by libseccomp through ``pyseccomp`` and handed to
  bubblewrap (``--seccomp FD``), which installs it right before it starts the driver;
* **memory and processes per submission**: a cgroup of the grader's own (v1 or v2 memory
  controller, v1 pids controller) that holds every process of the submission, so that many
  processes together cannot pass ``--memory`` (:class:`SubmissionCgroup`). Where no cgroup can be
  used, the per-process limits of :mod:`.driver` remain, and :func:`enforcement` says so.

Nothing that comes out of a sandbox decides any of this.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import signal
import stat
import sys
import time
import uuid
from pathlib import Path

UID_BASE = int(os.environ.get("RNN_COURSE_SANDBOX_UID_BASE") or "61000")
"""First uid given to sandboxes (override with RNN_COURSE_SANDBOX_UID_BASE)."""
UID_BLOCK = 4096
"""Uids leased at a time: a run of up to this many submissions holds one lock."""
UID_BLOCKS = 64


class ConfinementError(RuntimeError):
    """A submission cannot be confined as promised (no uid free, a filter that cannot be built...)."""


# ---------------------------------------------------------------------------------------------
# Identity: a uid per submission
# ---------------------------------------------------------------------------------------------


def rootless() -> bool:
    """True when the grader runs as an ordinary user: each sandbox then gets a user namespace of its
    own instead of a uid of its own (only root can switch uids)."""
    return os.geteuid() != 0


def leases_uids(sandbox: bool) -> bool:
    """Whether each submission gets a uid of its own from a :class:`UidPool`: only sandboxed and
    as root (rootless, a user namespace of its own takes its place)."""
    return sandbox and not rootless()


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(part) for part in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def nproc_counted_per_namespace() -> bool:
    """Linux 5.14 and later count ``RLIMIT_NPROC`` per user namespace ("ucounts"): a sandbox in a user
    namespace of its own counts only its own processes, not all of its user's."""
    return _kernel_at_least(5, 14)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _in_container(proc: Path) -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    text = _read(proc / "1" / "cgroup") or ""
    return any(word in text for word in ("docker", "containerd", "kubepods", "libpod"))


def user_namespace_blocker(
    proc: Path = Path("/proc"), said: str = ""
) -> tuple[str, str]:
    """Why this machine refuses an ordinary user a user namespace, and the fix: (cause, fix).
    ``said``: bubblewrap's own error message."""
    if _read(proc / "sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 23.10 and later)",
            "let bubblewrap create them with an AppArmor profile: the README's 'Grading as an "
            "ordinary user' shows the five lines of /etc/apparmor.d/bwrap, loaded with "
            "`sudo apparmor_parser -r /etc/apparmor.d/bwrap`",
        )
    if _read(proc / "sys/kernel/unprivileged_userns_clone") == "0":
        return (
            "the kernel forbids unprivileged user namespaces "
            "(kernel.unprivileged_userns_clone = 0)",
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1` (and the same line in "
            "/etc/sysctl.d/ to keep it)",
        )
    limit = _read(proc / "sys/user/max_user_namespaces")
    if limit in ("0", "1") or "ENOSPC" in said:
        return (
            "no more user namespaces may be created here (user.max_user_namespaces = "
            f"{limit}, or this runs inside a sandbox or container that disabled nested ones)",
            "`sudo sysctl -w user.max_user_namespaces=15000` on the host, or grade outside the "
            "sandbox or container that disabled them",
        )
    if _in_container(proc):
        return (
            "this is a container whose seccomp or AppArmor profile (Docker's and Podman's "
            "default ones) blocks the namespaces bubblewrap needs",
            "start the container with `--security-opt seccomp=unconfined --security-opt "
            "apparmor=unconfined`, or grade as root in a container allowed to make namespaces",
        )
    return (
        "unknown (user namespaces are enabled by every setting this check knows)",
        "run `bwrap --unshare-user --ro-bind / / true` as this user to see the error, and check "
        "the machine's security modules (AppArmor, SELinux) and sysctls",
    )


def _lock_folder() -> Path:
    return Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


class UidPool:
    """Hands out a fresh uid for each submission of a run; the run's blocks stay locked until
    :meth:`release`, so a concurrent run takes other uids."""

    def __init__(self, base: int = UID_BASE):
        self.base = base
        self._handles: list = []
        self._next: int | None = None
        self._end = 0

    def _lease_block(self) -> None:
        for block in range(UID_BLOCKS):
            path = (
                _lock_folder()
                / f"rnn-course-sandbox-uids-{self.base + block * UID_BLOCK}.lock"
            )
            handle = open(path, "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self._handles.append((block, handle))
            self._next = self.base + block * UID_BLOCK
            self._end = self._next + UID_BLOCK
            return
        raise ConfinementError(
            f"no free block of sandbox uids from {self.base} (other runs hold all "
            f"{UID_BLOCKS} blocks of {UID_BLOCK})"
        )

    def lease(self) -> int:
        """A uid no other submission of this run has had, cleaned of what earlier runs left."""
        if self._next is None or self._next >= self._end:
            self._lease_block()
        uid = self._next
        self._next += 1
        clean_uid(uid)
        return uid

    def release(self) -> None:
        for _, handle in self._handles:
            handle.close()
        self._handles.clear()
        self._next = None


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    stack, found = [pid], []
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def processes_of(uid: int) -> list[int]:
    """PIDs of the processes whose real uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break  # a zombie holds nothing: its parent has only to reap it
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return found


def kill_processes_of(uid: int, timeout: float = 10.0) -> None:
    """Kill every process of ``uid`` and wait until none is left (ConfinementError if they stay)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_of(uid)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise ConfinementError(
                f"processes of sandbox uid {uid} would not end: {pids[:10]}"
            )
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def key_users() -> dict[int, str]:
    """Uids that hold kernel keys, from ``/proc/key-users`` (uid -> the line)."""
    try:
        lines = Path("/proc/key-users").read_text().splitlines()
    except OSError:
        return {}
    users = {}
    for line in lines:
        uid, _, rest = line.strip().partition(":")
        if uid.isdigit():
            users[int(uid)] = rest.strip()
    return users


KEYCTL, KEYCTL_CLEAR = 250, 7  # x86_64's keyctl(2) and its "clear a keyring" operation
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5


def clean_uid(uid: int) -> None:
    """Remove what a sandbox of an earlier run may have left under ``uid``: its processes and its
    keyrings (cleared as that uid, the only one allowed to). Files cannot be left: every folder a
    sandbox can write to is a private tmpfs that ends with it."""
    kill_processes_of(uid)
    if (
        _key_count(key_users().get(uid, "")) > 2
        and os.geteuid() == 0
        and os.uname().machine == "x86_64"
    ):
        syscall = ctypes.CDLL(
            None, use_errno=True
        ).syscall  # resolved before fork: the child only calls
        pid = os.fork()
        if pid == 0:  # the child: become the uid, clear its two keyrings, leave
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                for ring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
                    syscall(KEYCTL, KEYCTL_CLEAR, ring)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        deadline = (
            time.monotonic() + 10.0
        )  # unlinked keys are freed by the kernel's key collector, soon
        while _key_count(key_users().get(uid, "")) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)


def _key_count(line: str) -> int:
    """The number of keys in a /proc/key-users line ("usage nkeys/nikeys qnkeys/maxkeys ...")."""
    try:
        return int(line.split()[1].split("/")[0])
    except (IndexError, ValueError):
        return 0


def traces_on_host(
    uids: set[int], folders=("/tmp", "/var/tmp", "/dev/shm", "/run")
) -> dict[str, list]:
    """Anything of the given uids left on the host: processes, kernel keys, SysV IPC objects and
    files in the host's shared writable folders. Empty when nothing is left (used by the tests)."""
    found: dict[str, list] = {}
    processes = [pid for uid in uids for pid in processes_of(uid)]
    if processes:
        found["processes"] = processes
    # each uid that ever touched keys keeps its two (empty) per-user keyrings: anything more is a trace
    keys = {
        uid: line
        for uid, line in key_users().items()
        if uid in uids and _key_count(line) > 2
    }
    if keys:
        found["keys"] = sorted(keys.items())
    for kind in ("shm", "msg", "sem"):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        header = lines[0].split() if lines else []
        for line in lines[1:]:
            row = dict(zip(header, line.split()))
            if int(row.get("uid", -1)) in uids:
                found.setdefault("sysv", []).append((kind, line.strip()))
    for top in folders:
        for folder, subfolders, files in os.walk(top):
            reachable = []
            for name in subfolders + files:
                path = os.path.join(folder, name)
                try:
                    status = os.lstat(path)
                except OSError:
                    continue
                if status.st_uid in uids:
                    found.setdefault("files", []).append(path)
                if name in subfolders and _searchable_by(status, uids):
                    reachable.append(name)
            # A folder none of the uids may enter holds nothing they made: not walked
            # (the host's /tmp may hold 10^5 files in other users' private folders).
            subfolders[:] = reachable
    return found


def _searchable_by(status: os.stat_result, uids: set[int]) -> bool:
    """Whether one of ``uids`` (each in its own group of the same number and no other)
    may pass through a folder with this status: the owner's, the group's or the others'
    search bit, whichever class applies, as the kernel checks it."""
    mode = status.st_mode
    if status.st_uid in uids:
        return bool(mode & stat.S_IXUSR)
    if status.st_gid in uids:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


# ---------------------------------------------------------------------------------------------
# System calls: a seccomp filter
# ---------------------------------------------------------------------------------------------

DENIED_SYSCALLS = (
    # per-uid kernel state outside every namespace: the keyrings
    "keyctl",
    "add_key",
    "request_key",
    # looking into or changing other processes and the kernel
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "perf_event_open",
    "bpf",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "syslog",
    "acct",
    "quotactl",
    # namespaces and mounts: the sandbox's shape is bubblewrap's, fixed before the filter is installed
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # the machine itself
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "personality",
    "vhangup",
    # io_uring runs system calls the filter would not see
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)
"""Denied with EPERM inside every sandbox, as Docker's and Podman's default profiles deny them."""

CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
"""``clone`` with any of these flags is denied; ``clone3`` (whose flags a filter cannot read) answers
ENOSYS, so that glibc falls back to ``clone``, as in the container runtimes' profiles."""


@functools.lru_cache(maxsize=1)
def seccomp_program() -> bytes:
    """The compiled filter (classic BPF, as ``bwrap --seccomp`` reads it), built once per process."""
    try:
        import pyseccomp as seccomp
    except ImportError as error:
        raise ConfinementError(
            "the system-call filter needs the pyseccomp package and libseccomp2 "
            f"(apt-get install libseccomp2): {error}"
        ) from None
    try:
        program = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in DENIED_SYSCALLS:
            try:
                program.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                continue  # not a system call on this architecture
        for flag in CLONE_NAMESPACE_FLAGS.values():
            program.add_rule(
                seccomp.ERRNO(errno.EPERM),
                "clone",
                seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag),
            )
        program.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        reader, writer = os.pipe()
        try:
            with os.fdopen(writer, "wb") as handle:
                program.export_bpf(handle)
            with os.fdopen(reader, "rb") as handle:
                return handle.read()
        finally:
            for fd in (reader, writer):
                try:
                    os.close(fd)
                except OSError:
                    pass
    except OSError as error:  # libseccomp2 missing or refusing
        raise ConfinementError(
            f"the system-call filter could not be built: {error}"
        ) from None


def seccomp_fd() -> int:
    """A file descriptor holding the compiled filter, for ``bwrap --seccomp FD`` (the caller closes it)."""
    fd = os.memfd_create("rnn-course-seccomp")
    os.write(fd, seccomp_program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# ---------------------------------------------------------------------------------------------
# Memory and processes per submission: a cgroup
# ---------------------------------------------------------------------------------------------


def _own_cgroups() -> dict[str, str]:
    """The grader's own cgroup paths: controller (or "" for v2) -> path inside its hierarchy."""
    paths = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _mounts() -> dict[str, str]:
    """Cgroup mount points: controller (or "" for the v2 hierarchy) -> mount point."""
    mounts = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        if " - " not in line:
            continue
        before, after = line.split(" - ", 1)
        kind, _, options = after.split()[:3]
        mount_point = before.split()[4]
        if kind == "cgroup2":
            mounts.setdefault("", mount_point)
        elif kind == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids"):
                    mounts.setdefault(option, mount_point)
    return mounts


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _parents() -> dict[str, tuple[str, Path]]:
    """Where this process may make submission cgroups: "memory" / "pids" -> (version, folder)."""
    own, mounts = _own_cgroups(), _mounts()
    found: dict[str, tuple[str, Path]] = {}
    for controller in ("memory", "pids"):
        if controller in mounts and controller in own:
            folder = Path(mounts[controller] + own[controller].rstrip("/"))
            if _writable_dir(folder):
                found[controller] = ("v1", folder)
    if "" in mounts and "" in own and ("memory" not in found or "pids" not in found):
        folder = Path(mounts[""] + own[""].rstrip("/"))
        if folder.name.startswith("rnn-course-grader-"):  # see enable_v2_delegation
            folder = folder.parent
        try:  # v2: children get only the controllers enabled in the parent's subtree_control
            available = (folder / "cgroup.subtree_control").read_text().split()
        except OSError:
            available = []
        for controller in ("memory", "pids"):
            if (
                controller in available
                and controller not in found
                and _writable_dir(folder)
            ):
                found[controller] = ("v2", folder)
    return found


def enable_v2_delegation() -> bool:
    """Where this process owns a cgroup v2 folder (``systemd-run --user --scope -p Delegate=yes``,
    or one an administrator delegated) whose memory and pids controllers are available but not yet
    enabled for children: move this process into a leaf child and enable them, so that each
    submission's cgroup can be made beside it (v2 allows controllers only in cgroups without
    processes of their own). Returns True when it enabled them; does nothing as root."""
    own, mounts = _own_cgroups(), _mounts()
    if not rootless() or "" not in mounts or "" not in own or own[""] == "/":
        return False
    folder = Path(mounts[""] + own[""].rstrip("/"))
    try:
        available = (folder / "cgroup.controllers").read_text().split()
        enabled = (folder / "cgroup.subtree_control").read_text().split()
        members = (folder / "cgroup.procs").read_text().split()
    except OSError:
        return False
    wanted = [c for c in ("memory", "pids") if c in available and c not in enabled]
    if not wanted or not _writable_dir(folder) or members != [str(os.getpid())]:
        return False  # nothing to enable, not ours, or other processes share it
    leaf = folder / f"rnn-course-grader-{os.getpid()}"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        (folder / "cgroup.subtree_control").write_text(
            " ".join(f"+{c}" for c in wanted)
        )
    except OSError:
        try:
            (folder / "cgroup.procs").write_text(str(os.getpid()))
            leaf.rmdir()
        except OSError:
            pass
        return False
    return True


def memory_cgroup_problem() -> str | None:
    """Why no cgroup can hold a submission's memory here, or None when one can."""
    if sys.platform != "linux":
        return "cgroups exist only on Linux"
    if "memory" not in _parents():
        if rootless():
            return (
                "no cgroup is delegated to you (a systemd user session, or a cgroup folder an "
                "administrator gave you once: see the README's 'Grading as an ordinary user')"
            )
        return "no memory controller in this process's cgroup (v1 or v2) that it may write to"
    return None


class SubmissionCgroup:
    """One submission's cgroup(s): memory (v1 or v2) and, where there is one, pids. Every process
    the sandbox starts stays in it; the grader reads its out-of-memory kills and kills what is left."""

    def __init__(self, folders: dict[str, tuple[str, Path]]):
        self.folders = folders  # controller -> (version, folder)

    @classmethod
    def create(
        cls, memory_bytes: int, processes: int | None
    ) -> SubmissionCgroup | None:
        """Make the cgroup with its limits, or return None where none can be used."""
        if memory_cgroup_problem():
            return None
        name = f"rnn-course-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        made: dict[str, tuple[str, Path]] = {}
        group = cls(made)
        try:
            for controller, (version, parent) in _parents().items():
                folder = next(
                    (f for v, f in made.values() if v == version == "v2"), None
                )
                if folder is None:
                    folder = parent / name
                    folder.mkdir()
                made[controller] = (version, folder)
            version, folder = made["memory"]
            if version == "v1":
                (folder / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (
                    folder / "memory.memsw.limit_in_bytes"
                ).exists():  # swap counted too, where it is
                    (folder / "memory.memsw.limit_in_bytes").write_text(
                        str(memory_bytes)
                    )
            else:
                (folder / "memory.max").write_text(str(memory_bytes))
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
            if processes and "pids" in made:
                (made["pids"][1] / "pids.max").write_text(str(processes))
        except OSError:
            group.remove()
            return None
        return group

    @property
    def procs_files(self) -> list[str]:
        """The files a new process writes its pid into to join (one per hierarchy)."""
        return sorted(
            {str(folder / "cgroup.procs") for _, folder in self.folders.values()}
        )

    def oom_kills(self) -> int:
        """Processes the kernel killed for passing the memory limit (0 where it does not say)."""
        version, folder = self.folders["memory"]
        name = "memory.oom_control" if version == "v1" else "memory.events"
        try:
            for line in (folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def peak_bytes(self) -> int | None:
        version, folder = self.folders["memory"]
        try:
            name = "memory.max_usage_in_bytes" if version == "v1" else "memory.peak"
            return int((folder / name).read_text())
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        found = set()
        for _, folder in self.folders.values():
            try:
                found |= {
                    int(pid) for pid in (folder / "cgroup.procs").read_text().split()
                }
            except (OSError, ValueError):
                pass
        return sorted(found)

    def kill_all(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def remove(self) -> None:
        self.kill_all()
        for _, folder in sorted(
            set(self.folders.values()), key=lambda pair: str(pair[1]), reverse=True
        ):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def remove_stale_cgroups() -> list[str]:
    """Remove submission cgroups that a dead grading process left (a worker killed mid-run, by a
    person, the OOM killer or a lost Dask node): those named after a process that no longer
    exists. Whatever still runs in them is killed first. Returns the folders removed."""
    removed = []
    for _, parent in set(_parents().values()):
        for folder in parent.glob("rnn-course-*-*"):
            owner = folder.name.split("-")[2]
            if not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue  # not a submission cgroup, or its grader still runs
            version = "v2" if (folder / "cgroup.controllers").exists() else "v1"
            SubmissionCgroup({"memory": (version, folder)}).remove()
            if not folder.exists():
                removed.append(str(folder))
    return removed


JOIN_CGROUP = 'for file in $RNN_COURSE_CGROUP_PROCS; do echo $$ > "$file" || exit 125; done; exec "$@"'
"""Run by /bin/sh before bubblewrap: the process joins the submission's cgroup, then becomes bwrap,
so that everything the sandbox starts is inside it from the first instruction on."""


def enforcement(memory_mb: int, processes: int, sandbox: bool) -> list[str]:
    """One line per protection: what a run enforces and how (printed at the start and at the end)."""
    if not sandbox:
        return [
            "confinement: none (--no-sandbox): student code runs with your rights; memory, CPU time and "
            "file size are limited per process only"
        ]
    cgroups = _parents() if not memory_cgroup_problem() else {}
    if rootless():
        lines = [
            "identity: rootless (you are not root): each submission runs in a user namespace of its "
            "own (with its own PID, IPC, network, mount and UTS namespaces), as your uid outside; "
            "nothing it makes outlives those namespaces",
        ]
    else:
        lines = [
            "identity: a uid of its own for each submission (from "
            f"{UID_BASE}), cleaned of processes and keyrings before use",
        ]
    lines.append(
        f"system calls: a seccomp filter denies {len(DENIED_SYSCALLS)} calls (keyrings, ptrace, bpf, "
        "mount, unshare/setns, namespace flags to clone, io_uring, ...)"
    )
    if "memory" in cgroups:
        lines.append(
            f"memory: {memory_mb} MiB for all processes of a submission together (cgroup "
            f"{cgroups['memory'][0]} memory controller), and per process (RLIMIT_AS)"
        )
    else:
        lines.append(
            f"memory: {memory_mb} MiB per process only (RLIMIT_AS), so a submission's processes "
            f"together may use more: {memory_cgroup_problem()}"
        )
    if rootless():
        counted = (
            "RLIMIT_NPROC, which the kernel counts in the submission's own user namespace, so "
            "one submission's fork bomb cannot stop another's sandbox"
            if nproc_counted_per_namespace()
            else "RLIMIT_NPROC, which this kernel (before Linux 5.14) counts over all your "
            "processes: one submission's fork bomb can keep another's sandbox from starting"
        )
    else:
        counted = "RLIMIT_NPROC of its own uid"
    if "pids" in cgroups:
        lines.append(
            f"processes: {processes} per submission (cgroup {cgroups['pids'][0]} pids controller, "
            f"and {counted})"
        )
    else:
        lines.append(f"processes: {processes} per submission ({counted})")
    lines.append(
        "CPU time, file size, open files: per process (setrlimit); wall clock: the grader's own"
    )
    return lines


__all__ = [
    "UID_BASE",
    "ConfinementError",
    "SubmissionCgroup",
    "UidPool",
    "clean_uid",
    "descendants",
    "enforcement",
    "leases_uids",
    "memory_cgroup_problem",
    "nproc_counted_per_namespace",
    "processes_of",
    "remove_stale_cgroups",
    "rootless",
    "seccomp_fd",
    "seccomp_program",
    "traces_on_host",
    "user_namespace_blocker",
]
