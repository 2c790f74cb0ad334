//! Mounts the data-path tests put a store on: a size-limited tmpfs (a disk that fills) and a
//! FUSE mount that stops answering on demand, like a dead NFS server
//! (`tests/support/hangfs.py`). Both need root; unmounted when dropped.

use std::process::Command;
use std::time::Duration;

use super::require;

/// A memory filesystem (tmpfs of `size`, or ramfs without) mounted at a store directory: needs
/// root (CI runs as root); unmounted when dropped.
pub struct MemFs(pub std::path::PathBuf);

impl MemFs {
    pub fn mount(dir: &std::path::Path, fstype: &str, size: Option<&str>) -> Option<MemFs> {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("mount");
        cmd.args(["-t", fstype]);
        if let Some(size) = size {
            cmd.args(["-o", &format!("size={size}")]);
        }
        let ok = cmd
            .args([fstype, dir.to_str().unwrap()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        require(
            &format!("a {fstype} mount (root)"),
            ok.then(|| "ok".to_string()),
            "run the tests as root",
        )?;
        Some(MemFs(dir.to_path_buf()))
    }

    pub fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}"), self.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for MemFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A network filesystem that stops answering, played by a FUSE mount whose every operation
/// blocks while a flag file exists (tests/support/hangfs.py). Needs root and /dev/fuse; the
/// daemon is stopped and the mount removed when dropped.
pub struct HangFs {
    daemon: std::process::Child,
    pub mnt: std::path::PathBuf,
    pub backing: std::path::PathBuf,
    flag: std::path::PathBuf,
}

impl HangFs {
    pub fn mount(base: &std::path::Path) -> Option<HangFs> {
        let venv = super::venv()?;
        let fuse = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok();
        require(
            "FUSE (/dev/fuse, as root)",
            fuse.then(|| "ok".to_string()),
            "run the tests as root on a machine with /dev/fuse",
        )?;
        let (backing, mnt, flag) = (base.join("backing"), base.join("mnt"), base.join("hang"));
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hangfs.py");
        let log = std::fs::File::create(base.join("hangfs.log")).unwrap();
        let daemon = Command::new(venv.join("bin/python"))
            .args([
                script.as_ref(),
                backing.as_os_str(),
                mnt.as_os_str(),
                flag.as_os_str(),
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let fs = HangFs {
            daemon,
            mnt,
            backing,
            flag,
        };
        for _ in 0..100 {
            if fs.mounted() {
                return Some(fs);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "hangfs did not mount: {}",
            std::fs::read_to_string(base.join("hangfs.log")).unwrap_or_default()
        );
    }

    pub fn mounted(&self) -> bool {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mnt = self.mnt.to_string_lossy();
        mountinfo
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*mnt))
    }

    pub fn hang(&self, on: bool) {
        if on {
            std::fs::write(&self.flag, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.flag);
        }
    }
}

/// Lets the mount answer again when dropped: declared after the server, it runs before the
/// server is stopped, even when a test fails while the mount hangs (a process with a FUSE call
/// in flight cannot finish exiting until the daemon answers).
pub struct Unhang<'a>(pub &'a HangFs);

impl Drop for Unhang<'_> {
    fn drop(&mut self) {
        self.0.hang(false);
    }
}

impl Drop for HangFs {
    fn drop(&mut self) {
        self.hang(false);
        // On SIGTERM the daemon unmounts and exits.
        super::terminate(&mut self.daemon);
        if self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}
