"""Run a command under the restrictions of systemd/station-edge.service that can be applied on a
machine whose PID 1 is not systemd (a container): ``python sandbox_exec.py SPEC.json -- CMD...``,
started as root inside ``unshare --mount --propagation private``.

SPEC (JSON): ``state`` (the one writable directory, StateDirectory=), ``config_dir`` (read-only),
``uid``/``gid`` (User=/Group=), ``hide`` (the home directories ProtectHome= empties), ``allow``
(the syscall names SystemCallFilter= leaves, as ``systemd-analyze syscall-filter`` expands them),
``families`` (RestrictAddressFamilies=).

What it applies, in order, then ``execv``:

- ProtectSystem=strict: every mount remounted read-only (but /proc and /dev);
  PrivateTmp=: fresh tmpfs on /tmp and /var/tmp; ProtectHome=: the ``hide`` directories
  replaced by an empty read-only tmpfs (the others stay read-only, as ProtectHome=read-only);
  the state dir bound read-write and the config dir read-only at their own paths (re-created
  inside the private /tmp when they live there, as in the tests), and the ``keep`` paths (the
  installation, when a CI clone lives under /tmp; /opt on a gateway) bound back read-only;
- CapabilityBoundingSet= (empty): every capability dropped from the bounding set;
- User=/Group=, no supplementary groups; NoNewPrivileges=yes;
- SystemCallFilter= / SystemCallErrorNumber=EPERM / SystemCallArchitectures=native: a libseccomp
  allow list (default action EPERM; libseccomp kills foreign-architecture calls);
- RestrictAddressFamilies=: socket() allowed only for the listed families (others EPERM);
- MemoryDenyWriteExecute=yes: mmap() with PROT_WRITE|PROT_EXEC, mprotect() adding PROT_EXEC: EPERM.

Not applied here (they need systemd or cgroup control): DevicePolicy=/DeviceAllow=, ProtectClock=,
ProtectKernel*=, RestrictNamespaces=, ProtectProc=, MemoryMax=, WatchdogSec=.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import socket
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ = 4, 7
PROT_WRITE, PROT_EXEC = 2, 4


def SCMP_ACT_ERRNO(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if x is None else x.encode() for x in (src, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")


def _mounts() -> list[tuple[str, int]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")
            opts = parts[5].split(",")
            flags = (MS_NOSUID if "nosuid" in opts else 0) | (MS_NODEV if "nodev" in opts else 0)
            flags |= MS_NOEXEC if "noexec" in opts else 0
            out.append((point, flags))
    return out


def protect_file_system(state: str, config_dir: str, hide: list[str], keep: list[str]) -> None:
    state_fd, config_fd = os.open(state, os.O_PATH), os.open(config_dir, os.O_PATH)
    keep_fds = [(path, os.open(path, os.O_PATH)) for path in keep]
    for point, flags in sorted(_mounts(), key=lambda m: len(m[0])):
        if point.startswith(("/proc", "/dev")):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EINVAL):
                raise
    for tmp in ("/tmp", "/var/tmp"):
        _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for home in hide:
        if os.path.isdir(home):
            _mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=0755")
    os.makedirs(state, exist_ok=True)
    _mount(f"/proc/self/fd/{state_fd}", state, None, MS_BIND)
    _mount(None, state, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)  # the one writable place
    os.makedirs(config_dir, exist_ok=True)  # (under the private /tmp in the tests)
    _mount(f"/proc/self/fd/{config_fd}", config_dir, None, MS_BIND)
    _mount(None, config_dir, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path, fd in keep_fds:  # the installation, when it lives in /tmp (a CI clone): read-only
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    os.close(state_fd)
    os.close(config_fd)


def drop_privileges(uid: int, gid: int) -> None:
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")


def install_seccomp(allow: list[str], families: list[str]) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)
    ]  # fmt: skip
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_ERRNO(errno.EPERM))
    if not ctx:
        raise OSError("seccomp_init failed")

    def rule(name: str, *conds: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a syscall on this architecture
        arr = (ArgCmp * max(1, len(conds)))(*[ArgCmp(*c) for c in conds])
        rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, len(conds), arr)
        if rc < 0:
            raise OSError(-rc, f"seccomp rule {name}: {os.strerror(-rc)}")

    special = {"socket", "mmap", "mmap2", "mprotect", "pkey_mprotect"}
    for name in sorted(set(allow) - special):
        rule(name)
    for fam in families:
        rule("socket", (0, SCMP_CMP_EQ, int(getattr(socket, fam)), 0))
    wx = PROT_WRITE | PROT_EXEC
    for name in ("mmap", "mmap2"):
        if name in allow:
            for ok in (0, PROT_WRITE, PROT_EXEC):
                rule(name, (2, SCMP_CMP_MASKED_EQ, wx, ok))
    for name in ("mprotect", "pkey_mprotect"):
        if name in allow:
            rule(name, (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")


def main() -> None:
    split = sys.argv.index("--")
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    argv = sys.argv[split + 1 :]
    protect_file_system(spec["state"], spec["config_dir"], spec["hide"], spec.get("keep", []))
    drop_privileges(spec["uid"], spec["gid"])
    os.chdir(spec["state"])
    install_seccomp(spec["allow"], spec["families"])
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
