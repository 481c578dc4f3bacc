//! Disk figures for the metrics endpoint: what a directory's files take, and what the file
//! system holding it has left. Read at scrape time (a directory listing and a `statvfs`), never
//! on the pipeline's threads.

use crate::storage::journal::format::parse_segment_file_name;
use std::io;
use std::path::Path;

/// The regular files directly in a directory: how many, how many are journal segments
/// (`NNNNNNNNNNNNNNNNNNNN.seg`), and their total length (segments are preallocated, so this is
/// what they hold on disk, not what is written in them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirUsage {
    pub files: u64,
    pub segments: u64,
    pub bytes: u64,
}

/// Sums the regular files directly in `dir` (not its subdirectories). A missing directory is
/// empty; a file removed while listing is skipped.
pub fn dir_usage(dir: &Path) -> io::Result<DirUsage> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirUsage::default()),
        Err(e) => return Err(e),
    };
    let mut usage = DirUsage::default();
    for entry in entries {
        let entry = entry?;
        let entry_name = entry.file_name();
        let Ok(metadata) = entry.metadata() else { continue };
        if metadata.is_file() {
            usage.files += 1;
            let name = entry_name.to_string_lossy();
            usage.segments += u64::from(parse_segment_file_name(&name).is_some());
            usage.bytes += metadata.len();
        }
    }
    Ok(usage)
}

/// The file system holding a path: its size and what an unprivileged writer can still use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    pub size_bytes: u64,
    pub free_bytes: u64,
}

/// `statvfs` of the file system holding `path`: blocks and available blocks times the
/// fragment size.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let fragment_bytes = u64::from(stat.f_frsize);
    Ok(DiskSpace {
        size_bytes: u64::from(stat.f_blocks).saturating_mul(fragment_bytes),
        free_bytes: u64::from(stat.f_bavail).saturating_mul(fragment_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_usage_counts_the_files_and_their_bytes_not_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("00000000000000000001.seg"), [0u8; 23]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), [0u8; 1000]).unwrap();
        assert_eq!(dir_usage(dir.path()).unwrap(), DirUsage { files: 2, segments: 1, bytes: 123 });
        assert_eq!(dir_usage(&dir.path().join("missing")).unwrap(), DirUsage::default());
    }

    #[test]
    fn disk_space_of_an_existing_directory_is_some_and_of_a_missing_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.free_bytes > 0 && space.free_bytes <= space.size_bytes, "{space:?}");
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }
}
