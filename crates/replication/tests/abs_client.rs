//! The Azure Blob Storage client against a real emulator (Azurite): the client contract with
//! an account key and with a SAS token, Litestream's blob layout (`<path>/ltx/<level>/<name>`)
//! and `litestreamtimestamp` metadata read back with a separate store, block-list uploads
//! larger than a part, and probes that fail with the cause named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::abs_key_target as key_target;
use common::contract::{client_contract, large_streamed_write};
use futures::TryStreamExt;
use ltx::{FileName, TxId};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as Key;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use replication::Level;
use replication::{AbsTarget, ReplicaTarget, Secret};
use replication::{ClientError, ClientOptions, ListOptions, ReadRange, open_client};
use replication::{ReplicaClient, ReplicaMetrics};
use testkit::Azurite;

async fn client(target: AbsTarget, metrics: Option<ReplicaMetrics>) -> Arc<dyn ReplicaClient> {
    let options = ClientOptions {
        metrics,
        ..Default::default()
    };
    open_client(&ReplicaTarget::Abs(target), &options)
        .await
        .unwrap()
}

/// A plain `object_store` view of the container, to look at what the client wrote.
fn raw_store(az: &Azurite, container: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        MicrosoftAzureBuilder::new()
            .with_account(&az.account)
            .with_access_key(&az.account_key)
            .with_container_name(container)
            .with_endpoint(az.endpoint.clone())
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn abs_client_contract_with_account_key() {
    let Some(az) = testkit::require_azurite("abs_client_contract_with_account_key") else {
        return;
    };
    let container = az.create_container("abs-contract-key");
    let registry = prometheus::Registry::new();
    let metrics = ReplicaMetrics::register(&registry).unwrap();
    let c = client(key_target(&az, &container, "db"), Some(metrics)).await;
    assert_eq!(
        c.describe(),
        format!("abs://devstoreaccount1@{container}/db")
    );
    client_contract(c.as_ref()).await;
    // Operations are counted under replica_type="abs".
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"litestream_replica_operation_total{operation="PUT",replica_type="abs"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn abs_client_contract_with_sas_token_and_no_account_name() {
    let test = "abs_client_contract_with_sas_token_and_no_account_name";
    let Some(az) = testkit::require_azurite(test) else {
        return;
    };
    // A SAS token scoped to one container, as users hand them out; the test's own prefix
    // inside it keeps it apart from other tests.
    let prefix = testkit::unique_name("abs-contract-sas");
    let target = AbsTarget {
        account_name: None,
        account_key: None,
        sas_token: Some(Secret(format!("?{}", az.container_sas_token))),
        container: az.sas_container.clone(),
        path: format!("{prefix}/nested/db"),
        endpoint: Some(format!("{}/", az.endpoint)),
    };
    client_contract(client(target, None).await.as_ref()).await;
}

#[tokio::test]
async fn abs_layout_and_metadata_are_litestreams() {
    let Some(az) = testkit::require_azurite("abs_layout_and_metadata_are_litestreams") else {
        return;
    };
    let container = az.create_container("abs-layout");
    // `path: mydb/` in a config (a leading `/` is rejected at load: Litestream would write
    // `/mydb/ltx/…`, which object_store cannot); Litestream writes `mydb/ltx/<level>/<name>`.
    let c = client(key_target(&az, &container, "mydb/"), None).await;
    let ts = DateTime::<Utc>::from_timestamp_millis(1_764_124_536_930).unwrap();
    let (a, b) = (
        FileName::new(TxId(1), TxId(1)),
        FileName::new(TxId(1), TxId(2)),
    );
    c.write_bytes(Level::L0, a, bytes::Bytes::from_static(b"zero"), ts)
        .await
        .unwrap();
    c.write_bytes(Level::SNAPSHOT, b, bytes::Bytes::from_static(b"nine"), ts)
        .await
        .unwrap();

    let raw = raw_store(&az, &container);
    let mut keys: Vec<String> = raw
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "mydb/ltx/0/0000000000000001-0000000000000001.ltx",
            "mydb/ltx/9/0000000000000001-0000000000000002.ltx",
        ]
    );
    let head = raw
        .get_opts(
            &Key::from(keys[0].as_str()),
            GetOptions::new().with_head(true),
        )
        .await
        .unwrap();
    let stamp = head
        .attributes
        .get(&Attribute::Metadata("litestreamtimestamp".into()))
        .map(|v| v.to_string());
    // Go's RFC3339Nano in UTC: trailing zeros of the fraction trimmed.
    assert_eq!(stamp.as_deref(), Some("2025-11-26T02:35:36.93Z"));

    // Other names are not LTX files or levels: S3-style `0000`, padded `09`, temp files.
    for junk in [
        "mydb/ltx/0/0000000000000002-0000000000000002.ltx.tmp",
        "mydb/ltx/0/0000000000000002-000000000000000A.ltx",
        "mydb/ltx/09/0000000000000001-0000000000000002.ltx",
        "mydb/0000/0000000000000003-0000000000000003.ltx",
        "mydb/ltx/0/sub/0000000000000004-0000000000000004.ltx",
    ] {
        raw.put(&Key::from(junk), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    assert_eq!(c.levels().await.unwrap(), vec![Level::L0, Level::SNAPSHOT]);
    let l0 = c.list(Level::L0, ListOptions::default()).await.unwrap();
    assert_eq!(l0.iter().map(|f| f.name).collect::<Vec<_>>(), vec![a]);
    assert_eq!(
        c.read(Level::SNAPSHOT, b, ReadRange::Full).await.unwrap(),
        &b"nine"[..]
    );
}

/// The access tier Azurite reports for a blob, and whether it was set explicitly (not
/// inferred from the account default).
async fn access_tier(az: &Azurite, container: &str, key: &str) -> (Option<String>, bool) {
    let url = format!("{}/{container}/{key}?{}", az.endpoint, az.sas_token);
    let r = reqwest::Client::new().head(&url).send().await.unwrap();
    assert!(r.status().is_success(), "HEAD {url}: {}", r.status());
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    (
        header("x-ms-access-tier"),
        header("x-ms-access-tier-inferred").as_deref() != Some("true"),
    )
}

#[tokio::test]
async fn abs_uploads_set_the_hot_access_tier() {
    let test = "abs_uploads_set_the_hot_access_tier";
    let Some(az) = testkit::require_azurite(test) else {
        return;
    };
    let container = az.create_container("abs-tier");
    let c = client(key_target(&az, &container, "db"), None).await;
    let ts = Utc::now();
    let small = FileName::new(TxId(1), TxId(1));
    let large = FileName::new(TxId(2), TxId(2));
    c.write_bytes(Level::L0, small, bytes::Bytes::from_static(b"x"), ts)
        .await
        .unwrap();
    // Larger than a part: a block list upload, which sets the tier on its own.
    c.write_bytes(Level::L0, large, bytes::Bytes::from(vec![7u8; 6 << 20]), ts)
        .await
        .unwrap();
    for name in [small, large] {
        let key = format!("db/ltx/0/{name}");
        assert_eq!(
            access_tier(&az, &container, &key).await,
            (Some("Hot".to_string()), true),
            "{key}"
        );
    }
}

#[tokio::test]
async fn abs_block_list_upload_keeps_bytes_and_metadata() {
    let test = "abs_block_list_upload_keeps_bytes_and_metadata";
    let Some(az) = testkit::require_azurite(test) else {
        return;
    };
    let container = az.create_container("abs-blocks");
    let c = client(key_target(&az, &container, "big"), None).await;
    // Larger than the 5 MiB part size: goes up as blocks and a block list, streamed.
    large_streamed_write(c.as_ref()).await;
}

#[tokio::test]
async fn abs_probe_names_a_missing_container_and_a_wrong_key() {
    let test = "abs_probe_names_a_missing_container_and_a_wrong_key";
    let Some(az) = testkit::require_azurite(test) else {
        return;
    };
    let missing = client(
        key_target(&az, "no-such-container-for-sqlite-rest", "db"),
        None,
    )
    .await;
    let e = missing.probe().await.unwrap_err().to_string();
    assert!(
        e.contains("abs://devstoreaccount1@no-such-container-for-sqlite-rest/db")
            && (e.contains("ContainerNotFound") || e.contains("404") || e.contains("not found")),
        "{e}"
    );

    let container = az.create_container("abs-wrong-key");
    let mut wrong = key_target(&az, &container, "db");
    // A valid base64 key that is not the account's.
    wrong.account_key = Some(Secret(format!("{}==", "A".repeat(86))));
    let e = client(wrong, None)
        .await
        .probe()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("403") || e.contains("AuthorizationFailure"),
        "{e}"
    );

    // An unreachable endpoint fails with the connection error, not a hang.
    let mut closed = key_target(&az, &container, "db");
    closed.endpoint = Some(format!(
        "http://127.0.0.1:{}/devstoreaccount1",
        testkit::free_port()
    ));
    let e = client(closed, None).await.probe().await.unwrap_err();
    match &e {
        ClientError::Backend { message, .. } => {
            assert!(message.to_lowercase().contains("connect"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn abs_client_needs_an_account_name_without_endpoint_or_sas() {
    let target = AbsTarget {
        container: "c".into(),
        path: "db".into(),
        ..AbsTarget::default()
    };
    let e = open_client(&ReplicaTarget::Abs(target.clone()), &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("account-name") && e.contains("abs://c/db"),
        "{e}"
    );
    let with_endpoint = AbsTarget {
        endpoint: Some("http://127.0.0.1:1/acct".into()),
        account_key: Some(Secret("a2V5".into())),
        ..target
    };
    let e = open_client(&ReplicaTarget::Abs(with_endpoint), &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("account-name"), "{e}");
    // A key that is not base64 is named as the setting to check.
    let bad_key = AbsTarget {
        account_name: Some("acct".into()),
        account_key: Some(Secret("not base64!".into())),
        ..AbsTarget::default()
    };
    let e = open_client(&ReplicaTarget::Abs(bad_key), &Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("account-key"), "{e}");
}
