//! Start-up memory: restarting on a large database whose newest L0 file holds every page
//! (the first file of a new replica) reads that file — locally and on the replica — page by
//! page, never whole. An allocation counter (this test binary's global allocator) records
//! the peak of live heap bytes while the replicator starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use replication::Level;
use replication::{CommitNotice, StartAction};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes now, and the peak is reset to them.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

const MIB: usize = 1 << 20;
/// Pages of the database, each holding one row of random (incompressible) bytes, so its full
/// L0 file is about as large as the database: 48 MiB.
const DB_PAGES: i64 = 12 * 1024;
/// Most heap a restart may add: far below one copy of the file.
const BOUND: usize = 12 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_streams_the_newest_l0_file_instead_of_reading_it_whole() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let url = file_url(&dir.join("replica"));
    // No checkpoint and no compaction while the test runs: the full first file stays the
    // newest L0 file on both sides.
    let yaml = format!(
        "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\nl0-retention: 1h\n\
         dbs:\n  - path: {}\n    monitor-interval: 1s\n    min-checkpoint-page-count: 1000000\n    \
         checkpoint-interval: 1h\n    replica:\n      url: {url}\n",
        db.display()
    );
    {
        let conn = wal_db(&db);
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        for _ in 0..DB_PAGES / 256 {
            insert(&conn, 256, 3500);
        }
    }
    let r = start_replicator(&yaml, &db).await.unwrap();
    assert_eq!(r.handle().start_action(), StartAction::NewReplica);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    let client = open_url(&url).await;
    let l0 = client.list(Level::L0, Default::default()).await.unwrap();
    let newest = l0.iter().max_by_key(|f| f.name.max).unwrap();
    assert!(
        newest.size > 32 * MIB as u64,
        "the newest L0 file should hold the whole database: {newest:?}"
    );

    let before = reset_peak();
    let r = start_replicator(&yaml, &db).await.unwrap();
    let peak = PEAK.load(Ordering::Relaxed);
    assert!(
        matches!(r.handle().start_action(), StartAction::Continued { .. }),
        "{:?}",
        r.handle().start_action()
    );
    r.shutdown().await.unwrap();
    let added = peak.saturating_sub(before);
    eprintln!(
        "start-up heap peak: {} KiB above the {} KiB live before",
        added >> 10,
        before >> 10
    );
    assert!(
        added < BOUND,
        "start-up added {} MiB of heap at its peak (bound {} MiB) with a {} MiB L0 file",
        added / MIB,
        BOUND / MIB,
        newest.size as usize / MIB
    );
}
