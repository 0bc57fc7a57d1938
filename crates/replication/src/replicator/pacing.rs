//! Sync pacing: how long the sync task lets commits accumulate before the next sync, from
//! the write load and how long syncs take — only while nobody waits for a sync. A caller of
//! `wait_commit_synced` / `wait_commit_replicated` (a write answered with its position, a
//! synchronous write) makes the next sync start at once ([`super::shared::Shared::waiters`]);
//! writes answered at their commit leave the syncs paced, which keeps the replicator's CPU
//! (syncs, uploads, checkpoints) a small share of a loaded server's.

use std::time::Duration;

/// Shortest pause between two syncs under a steady write load (see the sync task): the first
/// commit after a quiet spell is synced at once, later ones are batched for at least this
/// long: short enough for a lag p99 near 50 ms on a lightly loaded server (at 200 commits a
/// second, a local sync of two commits every 10 ms costs little, and uploads stay one in
/// flight whatever the sync rate; against 25 ms the lag p50 fell from 24 to 15 ms in
/// `scripts/bench-replication`), while heavier loads stretch the gap below.
pub(crate) const MIN_SYNC_GAP: Duration = Duration::from_millis(10);
/// Longest pause between two syncs: reached under a heavy write load (at
/// [`HEAVY_WAL_RATE`]) or when syncs themselves get that slow. Litestream's default
/// `sync-interval`, so even then a commit is on the replica about as soon as with Litestream.
pub(crate) const MAX_SYNC_GAP: Duration = Duration::from_secs(1);
/// WAL bytes per second up to which syncs run [`MIN_SYNC_GAP`] apart (the benchmark's paced
/// 200 commits/s of one row each write about 2 MB/s).
pub(crate) const LIGHT_WAL_RATE: f64 = 4e6;
/// WAL bytes per second from which syncs run [`MAX_SYNC_GAP`] apart; in between the gap grows
/// linearly. Every sync, upload (and the replica's work on it) and checkpoint has a fixed
/// cost, and a longer gap folds the rewrites of hot pages into one page image: with the HTTP
/// write API at full speed (30–60 MB/s of WAL on a 2-core machine) 1 s gaps instead of
/// 200 ms (the shortest gap then) cut the L0 files from 7 to 3 a second and the uploaded bytes by 60 %, and the
/// throughput beside no replication rose from 0.85× to 0.92× (`scripts/bench-replication`).
pub(crate) const HEAVY_WAL_RATE: f64 = 16e6;

/// How long the WAL rate is measured over before [`sync_gap`] sees it. One sync's own rate is
/// noise at a light load: at 200 commits/s a 12 ms sync window holds 16–70 KB of WAL
/// (1.4–5.8 MB/s, however many pages the commits touched), and a window past
/// [`LIGHT_WAL_RATE`] stretched the next gap to 50–160 ms, the lag's tail (measured with the
/// `sync done` debug events in `scripts/bench-replication`).
pub(crate) const RATE_WINDOW: Duration = Duration::from_millis(250);

/// The WAL rate over the last [`RATE_WINDOW`] (or longer) of syncs, or over the window
/// under way once its bytes alone make a higher rate over a whole window.
///
/// The window under way counts as soon as its bytes divided by a whole [`RATE_WINDOW`]
/// pass the last complete window's rate: a lower bound of the rate it is heading for, so it
/// never reads a light load as heavier than a whole window would (the lag's tail above
/// stays away), while a heavy burst after a quiet spell (or at start-up) stretches the gap
/// within a few syncs instead of being synced every [`MIN_SYNC_GAP`] until its first window
/// ends: under the HTTP write load that was about 20 syncs, each its own upload (PUT), per
/// burst.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalRate {
    since: std::time::Instant,
    bytes: u64,
    rate: f64,
}

impl WalRate {
    pub(crate) fn new(now: std::time::Instant) -> WalRate {
        WalRate {
            since: now,
            bytes: 0,
            rate: 0.0,
        }
    }

    /// Counts a sync that read `wal_bytes` and ended at `now`; returns the rate (bytes per
    /// second) of the last complete window, or the window under way's bytes over a whole
    /// window if that is higher.
    pub(crate) fn add(&mut self, now: std::time::Instant, wal_bytes: u64) -> f64 {
        self.bytes += wal_bytes;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            self.rate = self.bytes as f64 / elapsed.as_secs_f64();
            self.bytes = 0;
            self.since = now;
            return self.rate;
        }
        self.rate.max(self.bytes as f64 / RATE_WINDOW.as_secs_f64())
    }
}

/// The pause between the end of one sync and the start of the next under a steady load:
/// from the WAL bytes per second the last sync found (`wal_rate`, bytes synced over the time
/// since the sync before) and how long it took.
pub(crate) fn sync_gap(wal_rate: f64, last_took: Duration) -> Duration {
    let load = if wal_rate.is_nan() {
        0.0
    } else {
        ((wal_rate - LIGHT_WAL_RATE) / (HEAVY_WAL_RATE - LIGHT_WAL_RATE)).clamp(0.0, 1.0)
    };
    let by_load = MIN_SYNC_GAP + (MAX_SYNC_GAP - MIN_SYNC_GAP).mul_f64(load);
    by_load.max(last_took).min(MAX_SYNC_GAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_light_load_keeps_the_shortest_gap_whatever_one_sync_holds() {
        // The WAL bytes of consecutive syncs 12 ms apart at 200 commits/s (as logged).
        let syncs = [37080u64, 16480, 57680, 24720, 28840, 57680, 16480, 37080];
        let t0 = std::time::Instant::now();
        let mut rate = WalRate::new(t0);
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(12) * (i + 1);
            let r = rate.add(now, syncs[i as usize % syncs.len()]);
            assert_eq!(
                sync_gap(r, Duration::from_millis(1)),
                MIN_SYNC_GAP,
                "sync {i}"
            );
        }
        // Paced by one sync's own rate (as before), the third sync stretched the gap.
        let own: f64 = 57680.0 / 0.012;
        assert!(sync_gap(own, Duration::from_millis(1)) > MIN_SYNC_GAP * 5);
        // A heavy load is seen within a window or two.
        let mut rate = WalRate::new(t0);
        let mut last = 0.0;
        for i in 0..50u32 {
            last = rate.add(t0 + Duration::from_millis(12) * (i + 1), 400_000);
        }
        assert_eq!(sync_gap(last, Duration::from_millis(1)), MAX_SYNC_GAP);
    }

    #[test]
    fn a_heavy_burst_stretches_the_gap_before_its_first_window_ends() {
        // The start of the HTTP write load (`scripts/bench-replication`, durability): the
        // WAL bytes of its first syncs, 12 ms apart. Seen only once a whole window had
        // passed, the burst was synced every 12 ms for 250 ms: about 20 syncs, each its own
        // upload (one PUT each).
        let syncs = [
            16480u64, 107120, 103000, 177160, 103000, 214240, 173040, 667440,
        ];
        let t0 = std::time::Instant::now();
        let mut rate = WalRate::new(t0);
        let mut gap = MIN_SYNC_GAP;
        let mut at = t0;
        let mut n = 0;
        while gap < MAX_SYNC_GAP / 10 {
            assert!(n < syncs.len(), "the gap was still {gap:?} after {n} syncs");
            at += Duration::from_millis(12);
            gap = sync_gap(rate.add(at, syncs[n]), Duration::from_millis(1));
            n += 1;
        }
        // A quiet spell, then the same burst: seen as soon, not after a window.
        let mut at = at + Duration::from_secs(10);
        let mut gap = sync_gap(rate.add(at, 16480), Duration::from_millis(1));
        assert_eq!(gap, MIN_SYNC_GAP, "the first commit after a quiet spell");
        for (i, &bytes) in syncs.iter().enumerate() {
            at += Duration::from_millis(12);
            gap = sync_gap(rate.add(at, bytes), Duration::from_millis(1));
            if gap >= MAX_SYNC_GAP / 10 {
                break;
            }
            assert!(
                i + 1 < syncs.len(),
                "the gap was still {gap:?} after the burst"
            );
        }
    }

    #[test]
    fn sync_gap_grows_with_the_write_load() {
        let quick = Duration::from_millis(5);
        // Light loads (and no load) keep the shortest gap, so their lag stays low.
        assert_eq!(sync_gap(0.0, quick), MIN_SYNC_GAP);
        assert_eq!(sync_gap(2e6, quick), MIN_SYNC_GAP);
        assert_eq!(sync_gap(LIGHT_WAL_RATE, quick), MIN_SYNC_GAP);
        // In between, linear.
        let mid = sync_gap((LIGHT_WAL_RATE + HEAVY_WAL_RATE) / 2.0, quick);
        assert_eq!(mid, (MIN_SYNC_GAP + MAX_SYNC_GAP) / 2);
        assert!(sync_gap(8e6, quick) < sync_gap(12e6, quick));
        // Heavy loads batch for the longest gap, and never longer.
        assert_eq!(sync_gap(HEAVY_WAL_RATE, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(1e9, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(f64::INFINITY, quick), MAX_SYNC_GAP);
        assert_eq!(sync_gap(f64::NAN, quick), MIN_SYNC_GAP);
        // A slow sync stretches the gap to its own length, up to the longest gap.
        let slow = Duration::from_millis(450);
        assert_eq!(sync_gap(0.0, slow), slow);
        assert_eq!(sync_gap(0.0, Duration::from_secs(5)), MAX_SYNC_GAP);
    }
}
