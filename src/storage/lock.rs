//! One data directory, one ferry: an exclusive lock on `<data>/.lock`, held for the life of the process, with the
//! holder's pid written in it so that the next process can say who holds it.
//!
//! Two servers on one directory destroy each other's uploads (each one's startup sweep removes the other's temp
//! files), and `ferry fsck --repair` must not move files under a running server. The lock is `flock(LOCK_EX |
//! LOCK_NB)`, taken through std's `File::try_lock` (flock on Linux): no unsafe code and no extra crate. The kernel
//! drops it when the process ends, however it ends, so a crash never leaves a stale lock behind; the pid in the
//! file is only for the message.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{self, Read, Write},
    path::Path,
};

use crate::error::IoContext;

/// Held for as long as it lives; the kernel releases the lock when the file is closed.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `data_dir` (which must exist) for this process, or says which process holds it. The error for a
    /// held lock is `ResourceBusy`, with a message meant to follow "cannot use data directory <dir>: ".
    pub fn acquire(data_dir: &Path) -> io::Result<DataDirLock> {
        let path = data_dir.join(".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // the holder may be between truncating and writing its pid: then there is no pid to name
                let holder = match file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<u32>().ok()) {
                    Some(pid) => format!("another ferry (pid {pid})"),
                    None => "another ferry".to_owned(),
                };
                return Err(io::Error::new(io::ErrorKind::ResourceBusy, format!("{holder} is using it")));
            }
            Err(TryLockError::Error(err)) => return Err(err).context(|| format!("locking {}", path.display())),
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .context(|| format!("writing {}", path.display()))?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(err.to_string(), format!("another ferry (pid {}) is using it", std::process::id()));
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
