"""The files nvmet-p2p writes as root, handled so that no other file is ever touched.

nvmet-p2p runs as root and writes its **state directory** (lock, apply journal, managed set,
last-apply and degraded records, crash details), the **saved configuration** the boot unit
restores, and files a user names (``plan --out``, ``metrics --textfile``). A root process that
follows a symbolic link, opens a FIFO or truncates "its" lock writes wherever someone who could
plant a name there wanted. The rules, all in this module (the shell's own history directory
uses the same code):

* **Private directories** (:class:`PrivateDir`): the state directory is used only when it is a
  real directory (never a symlink: opened ``O_DIRECTORY|O_NOFOLLOW``, then ``fstat``) owned by
  root -- the user running nvmet-p2p -- and not writable by group or others. Anything else is
  refused with the command that fixes it. A missing one is created 0700 (its missing parents
  0755), only by a command that is about to write.
* **Files in it** are opened relative to the directory's descriptor with ``O_NOFOLLOW`` and
  ``O_NONBLOCK`` after an ``lstat``, and used only when ``fstat`` says they are regular files: a
  symlink, FIFO, device or directory in their place is refused (never followed, never waited
  on). Every read is bounded. A lock file is never truncated by a waiter, never followed, and
  never a file with a second hard link.
* **Writes are atomic and durable** (:func:`write_at`, :func:`write_file`): a new temporary file
  (``O_CREAT|O_EXCL``, mode set with ``fchmod``), ``fsync``, ``rename`` over the name, ``fsync``
  of the directory -- so after a power loss the name holds the old or the new content. An
  existing symlink, FIFO or device at the name is refused, an identical file is left alone.
  Backups (``FILE.1`` newest ... ``FILE.N``) are rotated by ``rename`` (a planted link is moved
  as a link, never followed) and made by a hard link of the old file, or a bounded copy when it
  has other links; nothing is ever ``chmod``-ed by name.
* **Missing parent directories** of a file are created 0755 at each level whatever the umask
  (``os.makedirs`` applies its mode to the last level only).
* **The host's refusals** -- ``EACCES``, ``EPERM``, ``EROFS``, ``ENOSPC``, ``EDQUOT`` -- are
  :class:`~nvmet_p2p.errors.HostError` with the fix ("run as root", "--state-dir DIR"), never
  an internal error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from nvmet_p2p.errors import HostError
from nvmet_p2p.safeload import LIMITS, DocumentError

#: errnos that are the host's condition, not nvmet-p2p's bug
HOST_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def host_fix(err: int | None, option: str | None = None) -> str:
    """What to do about ``err`` (one of :data:`HOST_ERRNOS`); ``option``: the command-line way
    around it (``--state-dir DIR``, another FILE)."""
    alt = f", or {option}" if option else ""
    if err in (errno.EACCES, errno.EPERM):
        return (f"run nvmet-p2p as root (it writes configfs, its state directory and the saved "
                f"configuration){alt}")
    if err == errno.EROFS:
        return f"the filesystem is mounted read-only{alt}"
    if err in (errno.ENOSPC, errno.EDQUOT):
        return f"the filesystem is full (or over quota): free some space{alt}"
    return option or "check the path"


def host_error(exc: OSError, path: str, option: str | None = None, *,
               doing: str = "cannot write") -> HostError:
    """:class:`HostError` for an ``OSError`` the host caused, naming ``path`` and the fix."""
    return HostError(f"{path}: {doing}: {exc.strerror or exc}; {host_fix(exc.errno, option)}")


@contextlib.contextmanager
def host_errors(path: str, option: str | None = None, doing: str = "cannot write"):
    """Turn the host's refusals (:data:`HOST_ERRNOS`) raised in the block into
    :class:`HostError`; every other ``OSError`` passes through."""
    try:
        yield
    except OSError as exc:
        if exc.errno in HOST_ERRNOS:
            raise host_error(exc, getattr(exc, "filename", None) or path, option,
                             doing=doing) from None
        raise


def make_dirs(path: str, mode: int = 0o755) -> None:
    """Create ``path`` and its missing parents, each level with ``mode`` (the umask can only
    make it tighter; ``os.makedirs`` gives the parents 0777 minus the umask)."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if not os.path.isdir(d):
                raise


# ----------------------------------------------------------------------------------------------
# Reading and opening files relative to a directory descriptor
# ----------------------------------------------------------------------------------------------

def _lstat_at(dfd: int, name: str):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refuse(full: str, mode: int, what: str = "a regular file") -> HostError:
    return HostError(f"{full}: is {_kind(mode)}, not {what}; nvmet-p2p does not follow, read "
                     f"or replace it: remove it (or give another path)")


def open_regular_at(dfd: int, name: str, full: str, flags: int = _READ_FLAGS,
                    mode: int = 0o600) -> int | None:
    """A descriptor of the regular file ``name`` in the directory ``dfd`` (``O_NOFOLLOW``,
    ``O_NONBLOCK``; checked with ``lstat`` before and ``fstat`` after the open), or None when it
    does not exist (and ``flags`` has no ``O_CREAT``). A symlink or anything else that is not a
    regular file is refused (:class:`HostError`) without being opened or waited on."""
    st = _lstat_at(dfd, name)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise _refuse(full, st.st_mode)
    if st is None and not flags & os.O_CREAT:
        return None
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, mode, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(full, stat.S_IFLNK) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(full, st.st_mode)
    return fd


def read_fd(fd: int, limit: int, where: str) -> bytes:
    """At most ``limit`` bytes of an open regular file (else :class:`DocumentError`)."""
    chunks, total = [], 0
    while True:
        b = os.read(fd, min(1 << 20, limit + 1 - total))
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        total += len(b)
        if total > limit:
            raise DocumentError(f"is larger than the limit for this kind of file ({limit} bytes)",
                                where=where)


def read_at(dfd: int, name: str, full: str, limit: int) -> bytes | None:
    """The content of the regular file ``name`` (bounded), None when it does not exist."""
    fd = open_regular_at(dfd, name, full)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise DocumentError(f"is {size} bytes; the limit for this kind of file is {limit}",
                                where=full)
        return read_fd(fd, limit, full)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Atomic, durable writes
# ----------------------------------------------------------------------------------------------

def _temp_at(dfd: int, name: str, mode: int) -> tuple[int, str]:
    for _ in range(100):
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC,
                         0o600, dir_fd=dfd)
        except FileExistsError:
            continue
        os.fchmod(fd, mode)
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", name)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _new_file_at(dfd: int, name: str, data: bytes, mode: int) -> str:
    """A temporary file in ``dfd`` holding ``data``, fsynced; returns its name."""
    fd, tmp = _temp_at(dfd, name, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    return tmp


def _rotate(dfd: int, name: str, backups: int) -> None:
    """``name.(i)`` -> ``name.(i+1)``, newest last: ``rename`` moves whatever is there (a
    planted symlink moves as a link, it is never followed)."""
    for i in range(backups - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{name}.{i}", f"{name}.{i + 1}", src_dir_fd=dfd, dst_dir_fd=dfd)


def _keep_backup(dfd: int, name: str, cur: int, st, mode: int, full: str) -> None:
    """Make the current file (open as ``cur``) ``name.1``: a hard link of it when it has no
    other link (its mode set on the descriptor), else a bounded copy; renamed into place."""
    tmp = f".{name}.1.{os.urandom(6).hex()}.tmp"
    linked = False
    if st.st_nlink == 1:
        try:
            os.fchmod(cur, mode)
            os.link(name, tmp, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            linked = True
        except OSError:
            linked = False
    if linked and os.stat(tmp, dir_fd=dfd, follow_symlinks=False).st_ino != st.st_ino:
        os.unlink(tmp, dir_fd=dfd)          # (the name was replaced meanwhile: copy instead)
        linked = False
    if not linked:
        os.lseek(cur, 0, os.SEEK_SET)
        tmp = _new_file_at(dfd, name + ".1", read_fd(cur, LIMITS["json"], full), mode)
    os.replace(tmp, f"{name}.1", src_dir_fd=dfd, dst_dir_fd=dfd)


def write_at(dfd: int, dirpath: str, name: str, data: str | bytes, mode: int = 0o600,
             backups: int = 0) -> str | None:
    """Write ``data`` to ``name`` in the directory ``dfd`` (its path ``dirpath``, for messages)
    atomically and durably; returns the backup's path when one was made. See the module
    docstring for the rules."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    full = os.path.join(dirpath, name)
    cur = open_regular_at(dfd, name, full)
    try:
        st = os.fstat(cur) if cur is not None else None
        if cur is not None and st.st_size == len(data) and read_fd(cur, len(data), full) == data:
            if stat.S_IMODE(st.st_mode) != mode and st.st_nlink == 1:
                os.fchmod(cur, mode)
            return None
        tmp = _new_file_at(dfd, name, data, mode)
        try:
            backup = None
            if cur is not None and backups > 0:
                _rotate(dfd, name, backups)
                _keep_backup(dfd, name, cur, st, mode, full)
                backup = full + ".1"
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)
        return backup
    finally:
        if cur is not None:
            os.close(cur)


def write_file(path: str, data: str | bytes, mode: int = 0o600, backups: int = 0,
               option: str | None = "give another file") -> str | None:
    """:func:`write_at` for a file a user names (the saved configuration, ``plan --out``,
    ``metrics --textfile``): missing parents are created 0755; the host's refusals are
    :class:`HostError` with ``option`` as the way around them."""
    path = os.path.abspath(path)
    d, name = os.path.split(path)
    with host_errors(path, option):
        make_dirs(d)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        try:
            return write_at(dfd, d, name, data, mode, backups)
        finally:
            os.close(dfd)


def read_file(path: str, limit: int) -> bytes | None:
    """The content of the regular file ``path`` (bounded; no symlink at its last component,
    nothing but a regular file), None when it does not exist."""
    path = os.path.abspath(path)
    d, name = os.path.split(path)
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return read_at(dfd, name, path, limit)
    finally:
        os.close(dfd)


# ----------------------------------------------------------------------------------------------
# Private directories
# ----------------------------------------------------------------------------------------------

class PrivateDir:
    """A directory only its owner writes (the state directory, the shell's history directory).

    ``owners``: the uids it may belong to (default: root and the user running nvmet-p2p);
    ``tighten``: a directory of the running user that is open to group or others is made 0700
    (the shell's choice for the user's own directory; :attr:`note` says so) instead of refused.
    ``option``: how to choose another one, for the messages.
    """

    def __init__(self, path: str, *, what: str = "state directory",
                 option: str | None = "give --state-dir DIR", owners: set[int] | None = None,
                 tighten: bool = False):
        self.path = os.path.abspath(path)
        self.what = what
        self.option = option
        self.owners = owners if owners is not None else {0, os.geteuid()}
        self.tighten = tighten
        self.note: str | None = None

    # -- the directory ---------------------------------------------------------------------
    def problem(self, st) -> str | None:
        """Why the directory with this ``fstat`` must not be used (with the fix), or None."""
        me = os.geteuid()
        if not stat.S_ISDIR(st.st_mode):
            return f"is {_kind(st.st_mode)}, not a directory"
        if st.st_uid not in self.owners:
            owner, chown = ("root", "root:root") if me == 0 else (f"uid {me}", str(me))
            return (f"belongs to uid {st.st_uid}, not to {owner} who runs nvmet-p2p: another user "
                    f"could change what nvmet-p2p reads and writes there. Fix: chown {chown} "
                    f"{self.path} && chmod 0700 {self.path} (after checking its files)")
        if st.st_mode & 0o022:
            return (f"is writable by {'group and others' if st.st_mode & 0o002 else 'its group'} "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}): another user could plant files "
                    f"there. Fix: chmod 0700 {self.path} (after checking its files)")
        return None

    def _refused(self, why: str) -> HostError:
        alt = f"; or {self.option}" if self.option else ""
        return HostError(f"{self.what} {self.path} {why}{alt}")

    def open(self, create: bool = False) -> int | None:
        """A descriptor of the directory after the checks, None when it does not exist (and
        ``create`` is false). :class:`HostError` when it is unsafe or cannot be opened."""
        with host_errors(self.path, self.option, "cannot use the " + self.what):
            if create and not os.path.lexists(self.path):
                make_dirs(os.path.dirname(self.path))
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.path, 0o700)
            try:
                fd = os.open(self.path, _DIR_FLAGS)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise self._refused(f"is {_kind(os.lstat(self.path).st_mode)}, not a "
                                        f"directory") from None
                raise
        st = os.fstat(fd)
        why = self.problem(st)
        if why and self.tighten and st.st_uid == os.geteuid() and stat.S_ISDIR(st.st_mode):
            try:
                os.fchmod(fd, 0o700)
            except OSError as exc:
                os.close(fd)
                raise self._refused(f"cannot be made private: {exc.strerror}") from None
            self.note = (f"{self.path} was open to others (mode {stat.S_IMODE(st.st_mode):04o}); "
                         f"made it 0700")
            why = None
        if why:
            os.close(fd)
            raise self._refused(why)
        return fd

    @contextlib.contextmanager
    def opened(self, create: bool = False):
        """:meth:`open` as a context (the descriptor, or None when missing and not created)."""
        fd = self.open(create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    # -- its files ---------------------------------------------------------------------------
    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read(self, name: str, limit: int) -> bytes | None:
        """A file's content (bounded), None when it or the directory does not exist."""
        with self.opened() as dfd:
            if dfd is None:
                return None
            with host_errors(self.file(name), self.option, "cannot read"):
                return read_at(dfd, name, self.file(name), limit)

    def exists(self, name: str) -> bool:
        """Is there an entry ``name`` (one ``lstat``; a missing directory: no)?"""
        if not os.path.lexists(self.path):
            return False
        with self.opened() as dfd:
            return dfd is not None and _lstat_at(dfd, name) is not None

    def write(self, name: str, data: str | bytes, mode: int = 0o600, backups: int = 0) -> str | None:
        """:func:`write_at` in the directory (created if missing)."""
        with self.opened(create=True) as dfd, host_errors(self.file(name), self.option):
            return write_at(dfd, self.path, name, data, mode, backups)

    def create_new(self, name: str, data: str | bytes, mode: int = 0o600) -> str | None:
        """A new file (``O_EXCL``, never an existing name), when the directory exists and is
        safe; its path, else None (for reports that must not fail: crash details)."""
        try:
            with self.opened() as dfd:
                if dfd is None:
                    return None
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC,
                             mode, dir_fd=dfd)
                try:
                    _write_all(fd, data.encode() if isinstance(data, str) else data)
                finally:
                    os.close(fd)
                return self.file(name)
        except (OSError, HostError):
            return None

    def remove(self, name: str) -> bool:
        """Remove the entry ``name`` durably (``unlink``, ``fsync`` of the directory); False
        when there was none."""
        with self.opened() as dfd:
            if dfd is None:
                return False
            with host_errors(self.file(name), self.option, "cannot remove"):
                try:
                    os.unlink(name, dir_fd=dfd)
                except FileNotFoundError:
                    return False
                os.fsync(dfd)
            return True

    def open_lock(self, name: str) -> int:
        """A read-write descriptor of the lock file ``name`` (created 0600 if missing, never
        truncated): a regular file with no other hard link, else :class:`HostError`."""
        with self.opened(create=True) as dfd, host_errors(self.file(name), self.option):
            fd = open_regular_at(dfd, name, self.file(name), os.O_RDWR | os.O_CREAT, 0o600)
            st = os.fstat(fd)
            if st.st_nlink != 1:
                os.close(fd)
                raise HostError(f"{self.file(name)}: has {st.st_nlink} hard links: it is not "
                                f"nvmet-p2p's own lock file; remove it")
            return fd
