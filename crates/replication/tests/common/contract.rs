//! The replica client contract every backend passes (file, S3, Azure): one body, run by each
//! backend's test file against an empty replica.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ltx::{FileName, TxId};
use replication::Level;
use replication::{ClientError, ListOptions, ReadRange, ReplicaClient};

fn name(min: u64, max: u64) -> FileName {
    FileName::new(TxId(min), TxId(max))
}

fn seek(n: u64) -> ListOptions {
    ListOptions {
        seek: Some(TxId(n)),
        ..Default::default()
    }
}

const PRECISE: ListOptions = ListOptions {
    seek: None,
    precise_timestamps: true,
};

/// Writes, lists (levels, seek, precise CreatedAt), reads (every range kind), deletes and
/// probes through `c`, which must start empty.
pub async fn client_contract(c: &dyn ReplicaClient) {
    let what = c.describe();
    c.probe().await.unwrap();
    assert_eq!(c.levels().await.unwrap(), vec![], "{what}: not empty");
    assert!(
        c.list(Level::L0, ListOptions::default())
            .await
            .unwrap()
            .is_empty()
    );

    // A file streamed in several chunks keeps its bytes and its CreatedAt (ms precision).
    let l1 = Level::new(1).unwrap();
    let big = name(1, 3);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let ts = DateTime::<Utc>::from_timestamp_millis(1_700_000_000_123).unwrap();
    let chunks: Vec<Result<Bytes, ClientError>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let info = c
        .write(l1, big, futures::stream::iter(chunks).boxed(), ts)
        .await
        .unwrap();
    assert_eq!(
        (info.level, info.name, info.size),
        (l1, big, data.len() as u64)
    );
    let read = |r| c.read(l1, big, r);
    assert_eq!(read(ReadRange::Full).await.unwrap(), data, "{what}");
    assert_eq!(read(ReadRange::From(0)).await.unwrap(), data);
    assert_eq!(
        read(ReadRange::From(290_000)).await.unwrap(),
        data[290_000..]
    );
    assert_eq!(
        read(ReadRange::Suffix(32)).await.unwrap(),
        data[data.len() - 32..]
    );
    let bounded = ReadRange::Bounded {
        start: 100,
        end: 70_000,
    };
    assert_eq!(read(bounded).await.unwrap(), data[100..70_000]);
    let backwards = ReadRange::Bounded { start: 10, end: 5 };
    assert!(read(backwards).await.is_err(), "{what}: backwards range");
    assert!(read(ReadRange::From(400_000)).await.is_err(), "{what}");

    let listed = c.list(l1, PRECISE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name, listed[0].size), (big, data.len() as u64));
    assert_eq!(listed[0].created_at, ts, "{what}: precise CreatedAt");

    // Seek lists from a MinTXID on; every level that has a file is listed, ascending.
    for n in [1u64, 2, 3, 4, 9] {
        c.write_bytes(Level::L0, name(n, n), vec![n as u8; 200].into(), ts)
            .await
            .unwrap();
    }
    c.write_bytes(Level::SNAPSHOT, name(1, 9), Bytes::from_static(b"snap"), ts)
        .await
        .unwrap();
    let mins = |files: Vec<replication::LtxFileInfo>| {
        files.iter().map(|f| f.name.min.get()).collect::<Vec<_>>()
    };
    assert_eq!(
        mins(c.list(Level::L0, seek(3)).await.unwrap()),
        vec![3, 4, 9]
    );
    assert!(c.list(Level::L0, seek(10)).await.unwrap().is_empty());
    assert_eq!(
        c.levels().await.unwrap(),
        vec![Level::L0, l1, Level::SNAPSHOT],
        "{what}"
    );
    assert_eq!(c.list_all(ListOptions::default()).await.unwrap().len(), 7);

    // A missing file is NotFound; deleting it with others is not an error.
    let missing = name(7, 7);
    let e = c.read(l1, missing, ReadRange::Full).await.unwrap_err();
    assert!(e.is_not_found(), "{what}: {e}");
    c.delete(l1, &[big, missing]).await.unwrap();
    assert!(c.list(l1, ListOptions::default()).await.unwrap().is_empty());
    c.delete(Level::L0, &[name(1, 1), name(2, 2)])
        .await
        .unwrap();
    assert_eq!(
        mins(c.list(Level::L0, ListOptions::default()).await.unwrap()),
        vec![3, 4, 9]
    );
    c.delete(Level::L0, &[]).await.unwrap();

    // A conditional create writes a new name once; a second create of that name, whatever
    // its bytes, is AlreadyExists and leaves the first file as it was.
    let created = name(10, 12);
    let info = c
        .create_bytes(Level::L0, created, Bytes::from_static(b"first writer"), ts)
        .await
        .unwrap();
    assert_eq!(info.size, 12);
    let e = c
        .create_bytes(Level::L0, created, Bytes::from_static(b"second writer"), ts)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::AlreadyExists { .. }),
        "{what}: a second create of {created}: {e}"
    );
    assert_eq!(
        c.read(Level::L0, created, ReadRange::Full).await.unwrap(),
        Bytes::from_static(b"first writer"),
        "{what}"
    );
    let listed = c
        .list(
            Level::L0,
            ListOptions {
                seek: Some(TxId(10)),
                precise_timestamps: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{what}: {listed:?}");
    assert_eq!(
        listed[0].created_at, ts,
        "{what}: CreatedAt of a created file"
    );
    c.delete(Level::L0, &[created]).await.unwrap();
    c.probe().await.unwrap();
}

/// Writes a 12 MiB snapshot streamed in 1 MiB chunks (more than one 5 MiB part: a multipart
/// or block-list upload on object stores) and checks its bytes, size and precise CreatedAt.
pub async fn large_streamed_write(c: &dyn ReplicaClient) {
    let data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let chunks: Vec<Result<Bytes, ClientError>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let big = name(1, 7);
    let ts = DateTime::<Utc>::from_timestamp_millis(1_650_000_000_001).unwrap();
    let info = c
        .write(
            Level::SNAPSHOT,
            big,
            futures::stream::iter(chunks).boxed(),
            ts,
        )
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(c.read(Level::SNAPSHOT, big, ReadRange::Full).await.unwrap() == data);
    let precise = c.list(Level::SNAPSHOT, PRECISE).await.unwrap();
    assert_eq!((precise[0].size, precise[0].created_at), (info.size, ts));
}
