//! The simulator's own semantics: what survives a crash image and what does not.

use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use sluice_engine::io::Vfs;

use super::simfs::{CrashMode, Faults, SimFs, PAGE};

const LOSE_ALL: CrashMode = CrashMode {
    writeback: 0.0,
    torn: 0.0,
    torn_sector: false,
    dir_kept: 0.0,
};
const KEEP_ALL: CrashMode = CrashMode {
    writeback: 1.0,
    torn: 0.0,
    torn_sector: false,
    dir_kept: 1.0,
};

fn read_all(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
    let f = fs.open(Path::new(path), false).ok()?;
    let len = f.len().ok()? as usize;
    let mut buf = vec![0; len];
    let n = f.read_at(&mut buf, 0).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn unsynced_data_and_entries_are_lost_synced_survive() {
    let mut rng = StdRng::seed_from_u64(1);
    let fs = SimFs::new(7);
    fs.create_dir_all(Path::new("/db/s")).unwrap();
    let f = fs.open(Path::new("/db/s/a"), true).unwrap();
    f.write_all_at(b"hello", 0).unwrap();

    // Nothing synced: the directory entries themselves are gone.
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert!(!img.exists(Path::new("/db")));
    // With everything written back, all is there.
    let img = fs.crash_image(&mut rng, KEEP_ALL);
    assert_eq!(read_all(&img, "/db/s/a").unwrap(), b"hello");

    f.sync_data().unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.sync_dir(Path::new("/db")).unwrap();
    // File synced, but its entry in /db/s not: still lost.
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert!(img.exists(Path::new("/db/s")));
    assert!(!img.exists(Path::new("/db/s/a")));
    fs.sync_dir(Path::new("/db/s")).unwrap();
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert_eq!(read_all(&img, "/db/s/a").unwrap(), b"hello");

    // Overwrite without sync: the old bytes survive a crash that writes nothing back.
    f.write_all_at(b"J", 0).unwrap();
    assert_eq!(read_all(&fs, "/db/s/a").unwrap(), b"Jello");
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert_eq!(read_all(&img, "/db/s/a").unwrap(), b"hello");
    assert_eq!(fs.pending(), (1, 0));
}

#[test]
fn mapping_sees_later_writes_and_refuses_past_the_end() {
    let fs = SimFs::new(1);
    let f = fs.open(Path::new("/f"), true).unwrap();
    f.allocate(8192).unwrap();
    f.write_all_at(b"hello", 100).unwrap();
    let map = f.map(8192).unwrap();
    assert_eq!(&*map.read(100, 5).unwrap(), b"hello");
    f.write_all_at(b"J", 100).unwrap();
    assert_eq!(&*map.read(100, 5).unwrap(), b"Jello");
    assert!(map.read(8190, 5).is_err());
}

#[test]
fn grown_file_unwritten_pages_read_as_zeros_and_pages_tear() {
    let fs = SimFs::new(3);
    let f = fs.open(Path::new("/f"), true).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    f.write_all_at(&vec![0xAB; 4 * PAGE], 0).unwrap();
    let mut seen_torn = false;
    let mut seen_zero = false;
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mode = CrashMode {
            writeback: 0.3,
            torn: 0.4,
            torn_sector: true,
            dir_kept: 0.0,
        };
        let img = fs.crash_image(&mut rng, mode);
        let data = read_all(&img, "/f").unwrap();
        assert!(data.is_empty() || data.len() == 4 * PAGE);
        for page in data.chunks(PAGE) {
            let ab = page.iter().filter(|&&b| b == 0xAB).count();
            // Whatever reached the disk is a prefix of the page; the rest is zeros.
            assert!(page[..ab].iter().all(|&b| b == 0xAB));
            assert!(page[ab..].iter().all(|&b| b == 0));
            seen_torn |= ab > 0 && ab < PAGE;
            seen_zero |= ab == 0;
        }
    }
    assert!(seen_torn && seen_zero);
}

#[test]
fn rename_is_durable_only_after_the_directory_sync() {
    let mut rng = StdRng::seed_from_u64(5);
    let fs = SimFs::new(5);
    let tmp = fs.open(Path::new("/meta.tmp"), true).unwrap();
    tmp.write_all_at(b"v2", 0).unwrap();
    tmp.sync_data().unwrap();
    let old = fs.open(Path::new("/meta"), true).unwrap();
    old.write_all_at(b"v1", 0).unwrap();
    old.sync_data().unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.rename(Path::new("/meta.tmp"), Path::new("/meta"))
        .unwrap();
    assert_eq!(read_all(&fs, "/meta").unwrap(), b"v2");
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert_eq!(read_all(&img, "/meta").unwrap(), b"v1");
    assert!(img.exists(Path::new("/meta.tmp")));
    fs.sync_dir(Path::new("/")).unwrap();
    let img = fs.crash_image(&mut rng, LOSE_ALL);
    assert_eq!(read_all(&img, "/meta").unwrap(), b"v2");
    assert!(!img.exists(Path::new("/meta.tmp")));
}

#[test]
fn injected_faults() {
    let fs = SimFs::new(9);
    let f = fs.open(Path::new("/f"), true).unwrap();
    fs.set_faults(Faults {
        fail_sync_at: Some(1),
        sticky: false,
        capacity: Some(3 * PAGE as u64),
        short_write_at: Some(2),
    });
    f.write_all_at(b"a", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"b", 1).unwrap();
    let e = f.sync_data().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    // The failed sync marked the page clean: a later sync "succeeds" with nothing to do.
    f.sync_data().unwrap();
    assert_eq!(fs.pending().0, 0);
    let e = f.write_all_at(b"0123456789", 2).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(f.len().unwrap() < 12);
    let e = f.allocate(4 * PAGE as u64).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    f.allocate(2 * PAGE as u64).unwrap();
    assert_eq!(fs.counts().failed_syncs, 1);
    assert_eq!(fs.counts().short_writes, 1);
    assert_eq!(fs.counts().enospc, 1);
}

#[test]
fn a_rename_between_directories_is_never_half_done() {
    let fs = SimFs::new(11);
    fs.create_dir_all(Path::new("/a/x")).unwrap();
    fs.create_dir_all(Path::new("/b")).unwrap();
    fs.open(Path::new("/a/x/f"), true).unwrap();
    fs.sync_everything();
    fs.rename(Path::new("/a/x"), Path::new("/b/x")).unwrap();
    let (mut old, mut new) = (0, 0);
    for seed in 0..100 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mode = CrashMode {
            writeback: 0.0,
            torn: 0.0,
            torn_sector: false,
            dir_kept: 0.5,
        };
        let img = fs.crash_image(&mut rng, mode);
        let a = img.exists(Path::new("/a/x/f"));
        let b = img.exists(Path::new("/b/x/f"));
        assert!(a != b, "seed {seed}: /a/x {a}, /b/x {b}");
        old += usize::from(a);
        new += usize::from(b);
    }
    assert!(old > 0 && new > 0);
}
