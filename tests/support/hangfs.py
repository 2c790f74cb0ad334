"""A pass-through FUSE filesystem that hangs on demand, as a dead NFS server does.

    hangfs.py BACKING MOUNTPOINT FLAG

Serves BACKING at MOUNTPOINT. While the file FLAG exists, every operation on the mount waits
until FLAG is removed. Runs in the foreground; SIGTERM unmounts and exits (pending operations
then fail with ENOTCONN). Used by tests/data_path.rs.
"""

import os
import sys
import time

from fuse import FUSE, FuseOSError, Operations


class HangFS(Operations):
    def __init__(self, root, flag):
        self.root = root
        self.flag = flag

    def __call__(self, op, *args):
        if op not in ("init", "destroy"):
            while os.path.exists(self.flag):
                time.sleep(0.02)
        try:
            return super().__call__(op, *args)
        except OSError as e:
            raise FuseOSError(e.errno) from e

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime",
                "st_mtime", "st_ctime", "st_blocks")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(13)

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def utimens(self, path, times=None):
        os.utime(self._p(path), times)

    def open(self, path, flags):
        return os.open(self._p(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        os.truncate(self._p(path), length)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)


if __name__ == "__main__":
    backing, mountpoint, flag = sys.argv[1:4]
    FUSE(HangFS(backing, flag), mountpoint, foreground=True)
