//! What lies under a replica path, before anything reads it as a replica: LTX files (ours
//! and Litestream 0.5's), a Litestream 0.3 backup (`generations/`), the few files Litestream
//! and sqlite-rest leave beside them, or something else — which is refused by name, never
//! taken for an empty replica (a new database would then start next to the user's data).
//!
//! Recognised at the top of a replica path:
//! - the level directories: `ltx/` (file and Azure replicas), `0000`…`0009` (S3);
//! - `generations/` (Litestream 0.3);
//! - `lock.json` (the lease object Litestream's S3 leaser writes);
//! - `.sqlite-rest-probe*` (our reachability probe, if a crash left one);
//! - `lost+found/` on a file replica (a file system mounted at the replica path).
//!
//! [`ReplicaContents::format_for`] picks the backup a restore reads when both formats are
//! there, as Litestream 0.5 does: a TXID target reads LTX; otherwise the Litestream 0.3
//! backup only if it is newer (for a timestamp: if its best snapshot is newer than the best
//! LTX snapshot).

use chrono::{DateTime, Utc};

use crate::client::object::ObjectFlavor;
use crate::client::{ClientError, DirEntry, EntryKind, ListOptions, ReplicaClient};
use crate::level::{Level, LtxFileInfo};
use crate::restore::RestoreTarget;
use crate::target::ReplicaKind;
use crate::v03::{self, GENERATIONS_DIR, V03Listing};

/// The object Litestream's S3 leaser writes at the replica root.
const LITESTREAM_LOCK: &str = "lock.json";
/// The prefix of our probe's file or object.
const PROBE_PREFIX: &str = ".sqlite-rest-probe";
/// How many foreign names an error lists.
const NAMES_SHOWN: usize = 5;

/// Content under a replica path that neither Litestream nor sqlite-rest writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "found {} under {replica}: not a Litestream replica. A replica path holds only what \
     Litestream and sqlite-rest write there ({expected}, or a Litestream 0.3 backup's \
     `generations/`); nothing was read or changed. Point the replication config at an empty \
     path or at this database's replica, or move the other files away",
    names(found)
)]
pub struct ForeignContent {
    pub replica: String,
    /// The unrecognised top-level names (directories end with `/`).
    pub found: Vec<String>,
    /// What the level directories are called on this backend.
    pub expected: &'static str,
}

fn names(found: &[String]) -> String {
    let mut shown: Vec<String> = found
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("`{n}`"))
        .collect();
    if found.len() > NAMES_SHOWN {
        shown.push(format!("and {} more", found.len() - NAMES_SHOWN));
    }
    shown.join(", ")
}

/// Errors of [`inspect`].
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Foreign(#[from] ForeignContent),
}

/// Everything a replica path holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaContents {
    /// Every LTX file of every level (as [`ReplicaClient::list_all`]).
    pub ltx: Vec<LtxFileInfo>,
    /// The Litestream 0.3 backup (empty when there is none).
    pub v03: V03Listing,
}

/// The backup format a restore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ltx,
    V03,
}

impl ReplicaContents {
    /// Neither LTX files nor a Litestream 0.3 backup.
    pub fn is_empty(&self) -> bool {
        self.ltx.is_empty() && self.v03.is_empty()
    }

    /// Which backup a restore to `target` reads (see the module docs).
    pub fn format_for(&self, target: RestoreTarget) -> Format {
        if self.v03.is_empty() {
            return Format::Ltx;
        }
        if self.ltx.is_empty() {
            return Format::V03;
        }
        match target {
            RestoreTarget::TxId(_) => Format::Ltx,
            RestoreTarget::Latest => {
                let ltx = newest(self.ltx.iter().map(|f| f.created_at));
                let v03 = self.v03.time_bounds().map(|(_, hi)| hi);
                if v03 > ltx { Format::V03 } else { Format::Ltx }
            }
            RestoreTarget::Timestamp(ts) => {
                let ltx = newest(
                    self.ltx
                        .iter()
                        .filter(|f| f.level == Level::SNAPSHOT && f.created_at < ts)
                        .map(|f| f.created_at),
                );
                match self.v03.best_snapshot(Some(ts)) {
                    Some(s) if ltx.is_none_or(|l| s.created_at > l) => Format::V03,
                    _ => Format::Ltx,
                }
            }
        }
    }

    /// The oldest and newest CreatedAt of anything on the replica (both formats).
    pub fn time_bounds(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let ltx = self.ltx.iter().map(|f| (f.created_at, f.created_at));
        ltx.chain(self.v03.time_bounds())
            .reduce(|(lo, hi), (l, h)| (lo.min(l), hi.max(h)))
    }
}

fn newest(times: impl Iterator<Item = DateTime<Utc>>) -> Option<DateTime<Utc>> {
    times.max()
}

/// True for a top-level entry that Litestream or sqlite-rest writes (see the module docs).
pub(crate) fn recognised(kind: ReplicaKind, entry: &DirEntry) -> bool {
    let name = entry.name.as_str();
    if name.starts_with(PROBE_PREFIX) {
        return true;
    }
    match entry.kind {
        EntryKind::File => name == LITESTREAM_LOCK,
        EntryKind::Dir => {
            name == GENERATIONS_DIR
                || match ObjectFlavor::of(kind) {
                    Some(flavor) if !flavor.ltx_segment => flavor.parse_level_dir(name).is_some(),
                    _ => name == "ltx" || (kind == ReplicaKind::File && name == "lost+found"),
                }
        }
    }
}

/// What the level directories are called on a backend (for messages).
fn expected_levels(kind: ReplicaKind) -> &'static str {
    match ObjectFlavor::of(kind) {
        Some(flavor) if !flavor.ltx_segment => "the level directories `0000`…`0009`",
        _ => "`ltx/`",
    }
}

/// Lists what the replica path holds; fails with `ForeignContent` when anything at its
/// top is not recognised. With `precise`, LTX CreatedAt comes from the backend's metadata
/// (timestamp restores).
pub async fn inspect(
    client: &dyn ReplicaClient,
    precise: bool,
) -> Result<ReplicaContents, InspectError> {
    let kind = client.kind();
    let top = client.list_dir("").await?;
    let found: Vec<String> = top
        .iter()
        .filter(|e| !recognised(kind, e))
        .map(|e| match e.kind {
            EntryKind::Dir => format!("{}/", e.name),
            EntryKind::File => e.name.clone(),
        })
        .collect();
    if !found.is_empty() {
        return Err(ForeignContent {
            replica: client.describe(),
            found,
            expected: expected_levels(kind),
        }
        .into());
    }
    let ltx = client
        .list_all(ListOptions {
            seek: None,
            precise_timestamps: precise,
        })
        .await?;
    let has_generations = top
        .iter()
        .any(|e| e.kind == EntryKind::Dir && e.name == GENERATIONS_DIR);
    let v03 = if has_generations {
        v03::list(client).await?
    } else {
        V03Listing::default()
    };
    Ok(ReplicaContents { ltx, v03 })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Duration;
    use ltx::{FileName, TxId};

    use super::*;
    use crate::v03::{Generation, V03Snapshot};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_800_000_000 + s)
    }

    fn ltx(level: u8, t: i64) -> LtxFileInfo {
        LtxFileInfo {
            level: Level::new(level).unwrap(),
            name: FileName::new(TxId(1), TxId(1)),
            size: 200,
            created_at: at(t),
        }
    }

    fn contents(ltx: Vec<LtxFileInfo>, v03_snapshot_at: Option<i64>) -> ReplicaContents {
        let mut v03 = V03Listing::default();
        if let Some(t) = v03_snapshot_at {
            v03.generations.push(Generation(1));
            v03.snapshots.push(V03Snapshot {
                generation: Generation(1),
                index: 0,
                size: 100,
                created_at: at(t),
            });
        }
        ReplicaContents { ltx, v03 }
    }

    #[test]
    fn the_newer_format_is_restored_as_litestream_05_chooses() {
        assert!(contents(Vec::new(), None).is_empty());
        assert_eq!(
            contents(Vec::new(), Some(0)).format_for(RestoreTarget::Latest),
            Format::V03
        );
        assert_eq!(
            contents(vec![ltx(0, 5)], None).format_for(RestoreTarget::Latest),
            Format::Ltx
        );
        let both = contents(vec![ltx(9, 10), ltx(0, 20)], Some(15));
        assert_eq!(both.format_for(RestoreTarget::Latest), Format::Ltx);
        assert_eq!(both.format_for(RestoreTarget::TxId(TxId(1))), Format::Ltx);
        // At 16 the best 0.3 snapshot (15) is newer than the best LTX snapshot (10).
        assert_eq!(
            both.format_for(RestoreTarget::Timestamp(at(16))),
            Format::V03
        );
        assert_eq!(
            both.format_for(RestoreTarget::Timestamp(at(12))),
            Format::Ltx
        );
        let v03_newer = contents(vec![ltx(9, 10)], Some(15));
        assert_eq!(v03_newer.format_for(RestoreTarget::Latest), Format::V03);
        assert_eq!(both.time_bounds(), Some((at(10), at(20))));
    }

    fn entry(name: &str, kind: EntryKind) -> DirEntry {
        DirEntry {
            name: name.to_string(),
            kind,
            size: 0,
            created_at: None,
        }
    }

    #[test]
    fn what_litestream_and_sqlite_rest_write_is_recognised() {
        use EntryKind::{Dir, File};
        for (kind, name, k, ok) in [
            (ReplicaKind::File, "ltx", Dir, true),
            (ReplicaKind::File, "ltx", File, false),
            (ReplicaKind::File, "generations", Dir, true),
            (ReplicaKind::File, "lost+found", Dir, true),
            (ReplicaKind::File, ".sqlite-rest-probe-12", File, true),
            (ReplicaKind::File, "lock.json", File, true),
            (ReplicaKind::File, "0000", Dir, false),
            (ReplicaKind::File, "notes.txt", File, false),
            (ReplicaKind::S3, "0000", Dir, true),
            (ReplicaKind::S3, "0009", Dir, true),
            (ReplicaKind::S3, "000a", Dir, false),
            (ReplicaKind::S3, "9", Dir, false),
            (ReplicaKind::S3, "ltx", Dir, false),
            (ReplicaKind::S3, "lost+found", Dir, false),
            (ReplicaKind::S3, "generations", Dir, true),
            (ReplicaKind::S3, ".sqlite-rest-probe", File, true),
            (ReplicaKind::S3, "lock.json", File, true),
            (ReplicaKind::Abs, "ltx", Dir, true),
            (ReplicaKind::Abs, "0000", Dir, false),
        ] {
            assert_eq!(
                recognised(kind, &entry(name, k)),
                ok,
                "{kind:?} {name} {k:?}"
            );
        }
    }

    #[test]
    fn the_refusal_names_what_it_found() {
        let f = ForeignContent {
            replica: "file:///r".into(),
            found: (0..7).map(|i| format!("f{i}")).collect(),
            expected: "`ltx/`",
        };
        let text = f.to_string();
        assert!(
            text.starts_with("found `f0`, `f1`, `f2`, `f3`, `f4`, and 2 more under file:///r: not a Litestream replica"),
            "{text}"
        );
    }
}
